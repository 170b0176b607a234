"""EB means, modes and marginal means from mlmrun.postest against independent numerical integration.

The posterior of a herd's intercept b given its rows is prop. to prod_i Binomial(y_i | n_i, expit(x_i'beta + b))
N(b | 0, sd^2); its mean and SD are integrated here with scipy's adaptive quad, its mode found by scipy's
bounded scalar minimiser and the curvature SD by a central second difference. The marginal mean of a row is
the integral of n expit(xb + s t) phi(t) dt (quad again), and for a Poisson log link with a correlated random
slope exp(xb + s^2 / 2), s^2 = z' Sigma z built here from the parameter table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy.special import expit, gammaln, log_expit

from mlmrun.compile.matrices import model_matrices
from mlmrun.estimate import estimate
from mlmrun.likelihood.quadrature.plan import GIB, integration_plan
from mlmrun.pipeline import prepare
from mlmrun.postest import units
from mlmrun.postest.rows import row_predictions
from mlmrun.postest.units import unit_predictions
from mlmrun.results import FitResult
from tests.conftest import SPECS, write_spec


@pytest.fixture(scope="module", params=["cbpp.yaml", "cbpp_laplace.yaml"])
def cbpp_fit(request: pytest.FixtureRequest) -> FitResult:
    return estimate(prepare(SPECS / request.param).model)


def _herd_posterior(fit: FitResult):
    model = fit.model
    mm = model_matrices(model, fit.values)
    fixed = model.X @ mm.beta + model.offset
    y, n = model.y, model.trials
    coef = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
    sd = fit.values[model.partable.index("sd(_cons)@herd")]

    def log_post(rows: np.ndarray, b: float) -> float:
        nu = fixed[rows] + b
        return float(np.sum(y[rows] * log_expit(nu) + (n[rows] - y[rows]) * log_expit(-nu) + coef[rows])
                     - 0.5 * (b / sd) ** 2)

    return model.levels[0].codes, log_post, fixed, sd


def test_posterior_means_and_sds_equal_direct_integration_after_adaptive_and_laplace_fits(cbpp_fit: FitResult) -> None:
    codes, log_post, _, _ = _herd_posterior(cbpp_fit)
    pred = unit_predictions(cbpp_fit, "mean")[0]
    for c in range(len(pred.units)):
        rows = np.flatnonzero(codes == c)
        peak = optimize.minimize_scalar(lambda b, r=rows: -log_post(r, b), bounds=(-10, 10), method="bounded").x
        top = log_post(rows, peak)

        def moment(k: int, r: np.ndarray = rows, top: float = top, peak: float = peak) -> float:
            return integrate.quad(lambda b: b**k * np.exp(log_post(r, b) - top), -15, 15, points=[peak],
                                  epsabs=0, epsrel=1e-10, limit=200)[0]

        mean = moment(1) / moment(0)
        sd = np.sqrt(moment(2) / moment(0) - mean**2)
        assert pred.mean[c, 0] == pytest.approx(mean, abs=1e-6)
        assert pred.sd[c, 0] == pytest.approx(sd, abs=1e-6)


def test_posterior_modes_and_curvature_sds_equal_direct_optimisation(cbpp_fit: FitResult) -> None:
    codes, log_post, _, _ = _herd_posterior(cbpp_fit)
    pred = unit_predictions(cbpp_fit, "mode")[0]
    for c in range(len(pred.units)):
        rows = np.flatnonzero(codes == c)
        res = optimize.minimize_scalar(lambda b, r=rows: -log_post(r, b), bounds=(-10, 10), method="bounded",
                                       options={"xatol": 1e-11})
        h = 1e-4
        curvature = -(log_post(rows, res.x + h) - 2 * log_post(rows, res.x) + log_post(rows, res.x - h)) / h**2
        assert pred.mean[c, 0] == pytest.approx(res.x, abs=1e-7)
        assert pred.sd[c, 0] == pytest.approx(1 / np.sqrt(curvature), abs=1e-6)


def test_binomial_marginal_mean_is_the_integral_over_the_random_intercept(cbpp_fit: FitResult) -> None:
    model = cbpp_fit.model
    _, _, fixed, sd = _herd_posterior(cbpp_fit)
    eb = unit_predictions(cbpp_fit, "mean")[0].mean[model.levels[0].codes]
    rp = row_predictions(model, cbpp_fit.values, eb)
    np.testing.assert_allclose(rp.xb, fixed, rtol=1e-12)
    for i in range(model.n):
        want = model.trials[i] * integrate.quad(lambda t, i=i: expit(fixed[i] + sd * t) * np.exp(-t * t / 2)
                                                / np.sqrt(2 * np.pi), -np.inf, np.inf, epsabs=1e-13)[0]
        assert rp.mu_marginal[i] == pytest.approx(want, rel=1e-9)
    assert np.all(np.abs(rp.mu_marginal - model.trials * expit(fixed)) > 0)  # not the inverse link of xb


POISSON_SLOPE = """\
name: poisson_slope
data: {path: counts.csv}
levels:
  - {name: group, id: g}
responses:
  - {name: y, family: poisson}
fixed: "y ~ x"
random:
  - {level: group, terms: [1, x], covariance: unstructured}
"""


def test_poisson_marginal_mean_with_a_correlated_random_slope_is_exp_xb_plus_half_the_variance(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), 6)
    x = rng.normal(size=g.size)
    y = rng.poisson(np.exp(0.3 + 0.2 * x + rng.normal(0, 0.5, 12)[g]))
    (tmp_path / "counts.csv").write_text("g,x,y\n" + "".join(f"{a},{float(b)!r},{c}\n" for a, b, c in zip(g, x, y, strict=True)))
    model = prepare(write_spec(tmp_path, POISSON_SLOPE)).model
    pt = model.partable
    values = pt.start_values
    chosen = {"Intercept": 0.4, "x": -0.3, "sd(_cons)@group": 0.7, "sd(x)@group": 0.5, "corr(x,_cons)@group": -0.6}
    for name, v in chosen.items():
        values[pt.index(name)] = v
    rp = row_predictions(model, values, np.zeros((model.n, 2)))
    cov = np.array([[0.49, -0.6 * 0.7 * 0.5], [-0.6 * 0.7 * 0.5, 0.25]])
    z = np.column_stack([np.ones(model.n), x])
    xb = 0.4 - 0.3 * x
    np.testing.assert_allclose(rp.xb, xb, rtol=1e-12)
    np.testing.assert_allclose(rp.mu_marginal, np.exp(xb + 0.5 * np.einsum("ij,jk,ik->i", z, cov, z)), rtol=1e-10)
    np.testing.assert_allclose(rp.resid_pearson, (y - np.exp(xb)) / np.sqrt(np.exp(xb)), rtol=1e-10)
    dev = 2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / np.exp(xb)), 0) - (y - np.exp(xb)))
    np.testing.assert_allclose(rp.resid_deviance, np.sign(y - np.exp(xb)) * np.sqrt(dev), rtol=1e-10)


def test_posterior_means_after_a_laplace_fit_use_fewer_points_when_the_memory_budget_requires(monkeypatch) -> None:
    model = prepare(SPECS / "cbpp_laplace.yaml").model
    plan = integration_plan(model)
    assert units.eb_plan(model, plan).points == (30,) and units.eb_plan(model, plan).method == "adaptive"
    monkeypatch.setattr(units, "plan_memory", lambda candidate, sizes: candidate.points[0] * GIB // 2)
    assert units.eb_plan(model, plan).points == (8,)  # 4 GiB budget: 8 points need 4 GiB
    monkeypatch.setattr(units, "plan_memory", lambda candidate, sizes: candidate.points[0] * GIB)
    assert units.eb_plan(model, plan).points == (5,)  # never below the points the Laplace fit started with
    adaptive = integration_plan(prepare(SPECS / "cbpp.yaml").model)
    assert units.eb_plan(model, adaptive) is adaptive
