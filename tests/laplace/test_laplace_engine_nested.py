"""Nested models in the Laplace engine: the quadrature room's one-point adaptive value, exact gradients, unit scores.

For nested levels the one-point adaptive rule of likelihood/quadrature, with
the nodes at the joint posterior mode, is the joint Laplace approximation
(tests/likelihood/test_adaptive_accuracy.py checks it against a dense joint
Laplace), so the two engines, written independently, must agree. Covered:
every family and link of the quadrature gradient tests, correlated slopes,
three levels, loadings with B and Gamma across levels, mixed responses with
a heteroscedastic gaussian equation, and the count and censored families
(negative binomial, zero inflation, censoring, composite links).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlmrun.likelihood.engine import Engine
from mlmrun.likelihood.laplace.objective import LaplaceEngine
from tests.laplace.laplace_engine_models import central_gradient
from tests.likelihood import test_count_censored_gradients as counts
from tests.likelihood.test_adaptive_accuracy import readapted
from tests.likelihood.test_adaptive_gradient import FAMILIES, STRUCTURES, family_body, make_model, random_free


def _model(folder: Path, key: str):
    if key in STRUCTURES:
        return make_model(folder, STRUCTURES[key], key, points=3)
    if key in FAMILIES:
        return make_model(folder, family_body(key), key)
    return counts.make_model(folder, key)


def _free(model, key: str, seed: int) -> np.ndarray:
    return counts.random_free(model, seed) if key in counts.MODELS else random_free(model, seed)


KEYS = sorted(STRUCTURES) + sorted(FAMILIES) + sorted(counts.MODELS)


@pytest.mark.parametrize("key", KEYS)
def test_value_equals_the_one_point_adaptive_rule(tmp_path: Path, key: str) -> None:
    model = _model(tmp_path, key)
    engine = LaplaceEngine(model)
    for seed in (5, 6):
        free = _free(model, key, seed)
        _, want = readapted(model, free, (1,) * len(model.nested_levels))
        assert engine.loglik(free) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("key", sorted(STRUCTURES) + sorted(counts.MODELS))
def test_gradient_equals_central_differences(tmp_path: Path, key: str) -> None:
    model = _model(tmp_path, key)
    engine = LaplaceEngine(model)
    free = _free(model, key, 1)
    value, grad = engine.loglik_gradient(free)
    fd = central_gradient(engine.loglik, free)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(fd).max())),
                               err_msg=f"{key}: {model.partable.free_names()}")


@pytest.mark.parametrize("key", ["three_level", "factor_B_Gamma", "ordinal_logit", "zinb2"])
def test_unit_scores_sum_to_the_gradient(tmp_path: Path, key: str) -> None:
    model = _model(tmp_path, key)
    engine = LaplaceEngine(model)
    free = _free(model, key, 2)
    scores = engine.unit_scores(free)
    assert isinstance(engine, Engine)
    top = model.levels[model.nested_levels[-1]]
    assert scores.shape == (top.n_units, engine.n_free)
    _, grad = engine.loglik_gradient(free)
    np.testing.assert_allclose(scores.sum(axis=0), grad, atol=1e-6 * max(1.0, float(np.abs(grad).max())))
    assert np.linalg.matrix_rank(scores) == min(scores.shape)


def test_describe_names_levels_and_factorisation(tmp_path: Path) -> None:
    model = _model(tmp_path, "three_level")
    text = LaplaceEngine(model).describe()
    assert "unit (12 x 1)" in text and "top (4 x 1)" in text and "blocked elimination" in text
