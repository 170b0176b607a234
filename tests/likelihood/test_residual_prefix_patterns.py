"""Clusters observed for different lengths of one series share a single factor of R; the likelihood and its
gradient still match the dense computation of tests/likelihood/test_residual_structures_dense.py.

Every cluster has times 1..k (k = 2..5), so each pattern's R is a leading block of the longest pattern's R
(residual_structures.ResidualPlan._share_prefixes): one factorisation serves every pattern.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.compile.matrices import model_matrices
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import exact_loglik, profiled
from tests.likelihood import test_residual_structures_dense as dense


def _prefix_data(seed: int = 5, big: bool = False) -> pd.DataFrame:
    """12 clusters with times 1..k (2-4 rows) in 4 higher units, each cluster's rows in time order (a pattern is
    a sequence of times in data order); ts = t, and tr fixed per time."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(12):
        size = int(rng.integers(2, 5)) if c else 4
        for t in range(1, size + 1):
            rows.append(dict(id=c + 1, hi=c % 4 + 1, t=t, ts=t, tr=1.37 * t, grp=c % 2 + 1, rowgrp=t % 2 + 1,
                             x=float(rng.normal()), y=float(rng.normal() + 0.3 * t)))
    shuffled = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)
    return shuffled.sort_values("t", kind="stable").reset_index(drop=True)  # clusters interleaved, times in order


KINDS = ["ar2_gaps", "exchangeable", "unstructured", "exponential", "ma2", "toeplitz2", "banded1", "independent_by"]


@pytest.fixture
def prefix_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(dense, "_data", _prefix_data)

    def build(kind: str):
        model, values, frame, v, random = dense._model(tmp_path, kind)
        plan = GaussianDesign(model).residual
        assert [b.time.shape[0] for b in plan.shared] == [1] and plan.batches[0].time.shape[0] > 1
        return model, values, frame, v, random
    return build


@pytest.mark.parametrize("kind", KINDS)
def test_shared_prefix_factor_matches_the_dense_multivariate_normal(prefix_model, kind: str) -> None:
    model, values, frame, v, random = prefix_model(kind)
    ml, reml = dense._dense(kind, random, frame, v)
    assert exact_loglik(model, values) == pytest.approx(ml, rel=1e-9, abs=1e-9)
    ours = -0.5 * profiled(GaussianDesign(model), model_matrices(model, values), reml=True,
                           profile_sigma=False).deviance
    assert ours == pytest.approx(reml, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reml", [False, True])
def test_shared_prefix_gradient_matches_differences(prefix_model, kind: str, reml: bool) -> None:
    model, values, _, _, _ = prefix_model(kind)
    dense.assert_residual_gradient_matches_differences(model, values, reml)
