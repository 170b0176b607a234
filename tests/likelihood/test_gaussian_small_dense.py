"""The dense path for few random effects (likelihood/gaussian/small_dense.py) against the block path and differences.

Models with at most DENSE_SMALL_MAX random effects are evaluated with dense
matrices; the block elimination of likelihood/sparse is the reference: both
must give the same profiled criterion, GLS beta, profiled sigma and gradient
on the model matrices (ML and REML, sigma profiled or not), at random
parameter values. A small factor model with free loadings, B and Gamma (every
term of the dense adjoint) is also checked against central differences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmrun.likelihood.gaussian.small_dense as small_dense
from mlmrun.compile.matrices import model_matrices, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import profiled
from mlmrun.likelihood.gaussian.gradient import profiled_gradient
from mlmrun.pipeline import prepare
from tests.conftest import SPECS, write_spec
from tests.likelihood.test_gaussian_gradient import STRUCTURAL, assert_gradient, central, consistent_values


@pytest.fixture(scope="module")
def small_structural(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three items on a person factor f and a cluster factor g, f on g (B) and on w (Gamma): 48 loading columns."""
    folder = tmp_path_factory.mktemp("small_dense")
    rng = np.random.default_rng(3)
    rows = []
    for cluster in range(4):
        g = rng.normal(0, 0.7)
        for person in range(3):
            w = rng.normal()
            f = 0.6 * g + 0.5 * w + rng.normal()
            for item, lam in {"a": 1.0, "b": 0.8, "c": 1.2}.items():
                x = rng.normal()
                rows.append({"cluster": cluster, "person": f"{cluster}-{person}", "item": item, "w": w, "x": x,
                             "y": 0.3 * x + lam * f + 0.5 * g + rng.normal(0, 0.7)})
    (folder / "data").mkdir()
    pd.DataFrame(rows).to_csv(folder / "data" / "factor.csv", index=False)
    return write_spec(folder, STRUCTURAL.replace("variance_by: item", ""))


def load(case: str, small_structural: Path) -> CompiledModel:
    return prepare(small_structural if case == "structural" else SPECS / f"{case}.yaml").model


CASES = ["sleepstudy", "penicillin", "pig_crossed", "productivity", "pig_intercept", "structural"]


def evaluate(model: CompiledModel, values: np.ndarray, reml: bool, profile_sigma: bool, dense: bool,
             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(small_dense, "DENSE_SMALL_MAX", 64 if dense else 0)
    design = GaussianDesign(model)
    assert (small_dense.dense_small(design) is not None) == dense
    mats = model_matrices(model, values)
    prof, grad = profiled_gradient(design, mats, reml=reml, profile_sigma=profile_sigma)
    return prof, values_gradient(model, values, grad), profiled(design, mats, reml=reml, profile_sigma=profile_sigma)


@pytest.mark.parametrize("profile_sigma", [False, True])
@pytest.mark.parametrize("reml", [False, True], ids=["ML", "REML"])
@pytest.mark.parametrize("case", CASES)
def test_dense_path_matches_block_elimination(case: str, reml: bool, profile_sigma: bool, small_structural: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    model = load(case, small_structural)
    for seed in range(2):
        values = consistent_values(model, seed)
        if profile_sigma:  # relative scale: unit residual SD (what the optimiser passes)
            values[model.partable.rows_of("residual")] = 1.0
        d_prof, d_grad, d_dev = evaluate(model, values, reml, profile_sigma, True, monkeypatch)
        b_prof, b_grad, b_dev = evaluate(model, values, reml, profile_sigma, False, monkeypatch)
        assert d_prof.deviance == pytest.approx(b_prof.deviance, rel=1e-11, abs=1e-9)
        assert d_dev.deviance == pytest.approx(b_dev.deviance, rel=1e-11, abs=1e-9)
        np.testing.assert_allclose(d_prof.beta, b_prof.beta, rtol=1e-9, atol=1e-10)
        if profile_sigma:
            assert d_prof.sigma == pytest.approx(b_prof.sigma, rel=1e-10)
        np.testing.assert_allclose(d_prof.xtvx, b_prof.xtvx, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(d_grad, b_grad, rtol=1e-8, atol=1e-8 * max(1.0, float(np.max(np.abs(b_grad)))))


@pytest.mark.parametrize("reml", [False, True], ids=["ML", "REML"])
def test_dense_gradient_with_loadings_b_and_gamma_matches_central_differences(
        reml: bool, small_structural: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load("structural", small_structural)
    design = GaussianDesign(model)
    assert small_dense.dense_small(design) is not None
    pt = model.partable
    beta_free = pt.frame["free"].to_numpy()[model.beta_rows]
    other = np.setdiff1d(np.arange(pt.n_free), beta_free[beta_free > 0] - 1)
    values = consistent_values(model, 4)
    free = pt.pack(values)

    def loglik(x: np.ndarray) -> float:
        return -0.5 * profiled(design, model_matrices(model, pt.unpack(x)), reml=reml, profile_sigma=False).deviance

    _, grad = profiled_gradient(design, model_matrices(model, values), reml=reml, profile_sigma=False)
    analytic = pt.jacobian(free).T @ values_gradient(model, values, grad)
    assert_gradient(analytic[other], central(loglik, free)[other])
