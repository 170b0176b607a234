"""The SEs' forward differences start from the optimiser's gradient in phi carried to the natural coordinates
(estimate/gaussian_se.half_gradient_from_phi) instead of one more likelihood evaluation.

Checked away from the optimum (where the gradient is far from zero) against central differences of the
unprofiled criterion deviance/2 (beta profiled, sigma a parameter) over the natural coordinates, for the shipped
ovary models (AR(2) residuals, ML and REML), a correlated random slope with an AR(1) residual, and a model
with log-linear residual SDs; and at the optimum, the covariance of a fit against one whose differences start
from an evaluated gradient.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mlmrun.compile.matrices import model_matrices
from mlmrun.estimate import estimate
from mlmrun.estimate.gaussian_fit import Objective
from mlmrun.estimate.gaussian_params import GaussianParams
from mlmrun.estimate.gaussian_se import half_gradient_from_phi
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import profiled
from mlmrun.pipeline import prepare
from tests.likelihood import test_residual_clustered_path as clustered_case

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _check(model, shift: np.ndarray) -> None:
    reml = model.spec.estimation.method == "REML"
    design, params = GaussianDesign(model), GaussianParams(model)
    obj = Objective(model, design, params, reml)
    fit = estimate(model)
    sigma = float(np.exp(fit.free[params.residual_idx[0]])) if params.profile_sigma else 1.0
    phi = params.phi_from_free(fit.free, sigma) + shift
    res = obj.fit(phi)
    dev, g_phi = obj.value_and_grad(phi)
    assert res is not None and np.max(np.abs(g_phi)) > 1.0
    free = params.free_vector(phi, res.sigma if res.sigma is not None else 1.0, res.beta)
    idx = np.array([j for j in range(params.n_free) if j not in set(params.beta_idx)], dtype=int)

    def half(x: np.ndarray) -> float:
        f = free.copy()
        f[idx] = x
        mats = model_matrices(model, model.partable.unpack(f))
        return 0.5 * profiled(design, mats, reml=reml, profile_sigma=False).deviance

    assert half(free[idx]) == pytest.approx(0.5 * dev, rel=1e-12)
    ours = half_gradient_from_phi(params, free, idx, g_phi)
    for j in range(len(idx)):
        h = 1e-5 * max(abs(free[idx][j]), 1.0)
        up, down = free[idx].copy(), free[idx].copy()
        up[j] += h
        down[j] -= h
        fd = (half(up) - half(down)) / (2 * h)
        assert ours[j] == pytest.approx(fd, rel=1e-6, abs=1e-6), model.partable.free_names()[idx[j]]


@pytest.mark.parametrize("spec", ["ovary_ar2", "ovary_ar2_reml"])
def test_gradient_from_phi_matches_differences_of_the_unprofiled_criterion(spec: str) -> None:
    _check(prepare(SPECS / f"{spec}.yaml").model, np.array([0.05, -0.04, 0.2]))


def test_gradient_from_phi_with_a_cholesky_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _, _, _ = clustered_case._model(tmp_path, "ar1", "slope", "pattern blocks", monkeypatch)
    params = GaussianParams(model)
    assert params.chol
    _check(model, 0.1 * np.ones(params.n_phi))


def test_gradient_from_phi_with_log_linear_residual_sds() -> None:
    model = prepare(SPECS / "hsced.yaml").model
    params = GaussianParams(model)
    _check(model, 0.05 * np.ones(params.n_phi))


def test_ovary_covariance_matches_differences_from_an_evaluated_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    model = prepare(SPECS / "ovary_ar2_reml.yaml").model
    shortcut = estimate(model)
    fit_module = sys.modules["mlmrun.estimate.gaussian_fit"]
    original = fit_module.covariance
    monkeypatch.setattr(fit_module, "covariance", lambda *args: original(*args[:8]))  # no gradient handed over
    evaluated = estimate(model)
    assert shortcut.n_evaluations == evaluated.n_evaluations - 1
    se_a, se_b = np.sqrt(np.diag(shortcut.cov_free)), np.sqrt(np.diag(evaluated.cov_free))
    assert np.allclose(se_a, se_b, rtol=1e-7, atol=0.0)
