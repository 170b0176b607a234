"""Fits with residual structures against models that are the same in another form (exercise data).

- exchangeable residuals (correlation > 0) are a random intercept plus independent residuals:
  same maximum (restricted) likelihood, corr(e) = var(_cons) / (var(_cons) + var(Residual));
- independent residuals `by` a column are `variance_by` that column (one SD per category); their LR test
  is against the regression with one residual SD (sd(_cons) and four more SDs: 5 df);
- AR(1) over integer times is exponential over the same times (rho^|t - s| either way), gaps included
  (days 0, 4, 6, 8, 12), which also checks that lags are time differences, not row distances;
- standard errors of an exponential fit against the inverse Hessian of a dense per-subject likelihood.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from mlmrun.estimate.gaussian_fit import fit_gaussian
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult
from tests.conftest import SPECS

BASE = """name: ex
data: {{path: {data}}}
levels:
  - {{name: id, id: id}}
responses:
  - {response}
fixed: "strength ~ C(program) * C(day)"
{random}estimation: {{method: {method}}}
"""


def _fit(tmp_path: Path, name: str, response: str, random: str = "", method: str = "ML") -> FitResult:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BASE.format(data=SPECS / "data" / "exercise.csv", response=response, random=random,
                                method=method))
    fit = fit_gaussian(prepare(path, allow_outside_data=True).model)
    assert fit.converged, fit.warnings
    return fit


def _value(fit: FitResult, name: str) -> float:
    return float(fit.values[list(fit.model.partable.names).index(name)])


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_exchangeable_residuals_equal_a_random_intercept(tmp_path: Path, method: str) -> None:
    exch = _fit(tmp_path, "exch", "{name: strength, family: gaussian, residuals: {structure: exchangeable}}",
                method=method)
    ri = _fit(tmp_path, "ri", "{name: strength, family: gaussian}", "random:\n  - {level: id, terms: [1]}\n", method)
    assert exch.loglik == pytest.approx(ri.loglik, abs=1e-6)
    var_u, var_e = _value(ri, "sd(_cons)@id") ** 2, _value(ri, "sd(Residual)") ** 2
    assert _value(exch, "corr(e)") == pytest.approx(var_u / (var_u + var_e), rel=1e-4)
    assert _value(exch, "sd(e)") ** 2 == pytest.approx(var_u + var_e, rel=1e-4)


def test_independent_residuals_by_a_column_equal_variance_by(tmp_path: Path) -> None:
    by = _fit(tmp_path, "by", "{name: strength, family: gaussian, residuals: {structure: independent, by: day}}",
              "random:\n  - {level: id, terms: [1]}\n")
    vb = _fit(tmp_path, "vb", "{name: strength, family: gaussian, variance_by: day}",
              "random:\n  - {level: id, terms: [1]}\n")
    assert by.loglik == pytest.approx(vb.loglik, abs=1e-6)
    for day in (0, 4, 6, 8, 12):
        assert _value(by, f"sd(e)[day={day}]") == pytest.approx(_value(vb, f"sd(Residual:day={day})"), rel=1e-4)
    assert by.extras["lr_test"]["df"] == 5  # against the homoscedastic regression, as Stata's residuals(, by())


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_ar1_over_integer_times_with_gaps_equals_exponential(tmp_path: Path, method: str) -> None:
    ar = _fit(tmp_path, "ar", "{name: strength, family: gaussian, residuals: {structure: ar, time: day}}",
              method=method)
    ex = _fit(tmp_path, "exp", "{name: strength, family: gaussian, residuals: {structure: exponential, time: day}}",
              method=method)
    assert ar.loglik == pytest.approx(ex.loglik, abs=1e-6)
    assert _value(ar, "phi1") == pytest.approx(_value(ex, "rho"), rel=1e-4)
    assert _value(ar, "sd(e)") == pytest.approx(_value(ex, "sd(e)"), rel=1e-4)


def test_exponential_standard_errors_match_a_dense_hessian(tmp_path: Path) -> None:
    """SEs of rho and sd(e) against the inverse Hessian of a dense likelihood with beta profiled by GLS.

    (The inverse of the profiled Hessian is the (sd, rho) block of the full inverse Hessian.)
    """
    fit = _fit(tmp_path, "exp", "{name: strength, family: gaussian, residuals: {structure: exponential, time: day}}")
    model = fit.model
    names = list(model.partable.names)
    frame = pd.read_csv(SPECS / "data" / "exercise.csv")
    assert np.allclose(frame["strength"].to_numpy(), model.y)
    groups = [np.flatnonzero(frame["id"].to_numpy() == i) for i in np.unique(frame["id"])]
    day = frame["day"].to_numpy(float)
    X, y = model.X, model.y

    def profiled_loglik(theta: np.ndarray) -> float:
        sd, rho = theta
        covs = [sd**2 * rho ** np.abs(day[g][:, None] - day[g][None, :]) for g in groups]
        inv = [np.linalg.inv(c) for c in covs]
        xtvx = sum(X[g].T @ vi @ X[g] for g, vi in zip(groups, inv, strict=True))
        xtvy = sum(X[g].T @ vi @ y[g] for g, vi in zip(groups, inv, strict=True))
        beta = np.linalg.solve(xtvx, xtvy)
        return sum(multivariate_normal(X[g] @ beta, c).logpdf(y[g]) for g, c in zip(groups, covs, strict=True))

    theta = np.array([_value(fit, "sd(e)"), _value(fit, "rho")])
    h = np.array([1e-3 * theta[0], 1e-4])
    def f(i: int, j: int, di: float, dj: float) -> float:
        t = theta.copy()
        t[i] += di
        t[j] += dj
        return profiled_loglik(t)

    H = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            H[i, j] = (f(i, j, h[i], h[j]) - f(i, j, h[i], -h[j]) - f(i, j, -h[i], h[j])
                       + f(i, j, -h[i], -h[j])) / (4 * h[i] * h[j])
    dense_se = np.sqrt(np.diag(np.linalg.inv(-H)))
    se = fit.se()
    assert se[names.index("sd(e)")] == pytest.approx(dense_se[0], rel=2e-3)
    assert se[names.index("rho")] == pytest.approx(dense_se[1], rel=2e-3)


def test_unstructured_cholesky_coordinates_round_trip_and_jacobian() -> None:
    """The optimiser's Cholesky coordinates of an unstructured residual: natural <-> factor, and d natural / d factor."""
    from mlmrun.estimate.gaussian_params import ResidualChol

    T = 4
    pairs = np.array([(a, b) for a in range(T) for b in range(a + 1, T)])
    rc = ResidualChol(np.arange(T), np.arange(len(pairs)), pairs, np.zeros(T * (T + 1) // 2, dtype=int))
    log_sd = np.log([1.2, 0.7, 2.0, 1.1])
    corr = np.array([0.5, 0.3, -0.2, 0.6, 0.1, 0.4])
    lam = rc.coordinates(log_sd, corr)
    assert np.allclose(rc.natural(lam), np.concatenate([log_sd, corr]), atol=1e-12)
    J = rc.jacobian(lam)
    for j in range(len(lam)):
        up, down = lam.copy(), lam.copy()
        up[j] += 1e-6
        down[j] -= 1e-6
        assert np.allclose(J[:, j], (rc.natural(up) - rc.natural(down)) / 2e-6, atol=1e-7)
