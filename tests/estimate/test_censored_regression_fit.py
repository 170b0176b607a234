"""Censored gaussian regression with left, right and interval censoring against an independent ML fit.

Data simulated in the test: y* = 1 + 0.5 x + e, e ~ N(0, 1.2^2); observed exactly, left-censored
at -0.5, right-censored at 2.5, or (every fourth row) only as the interval between the
neighbouring half-integers. The independent fit maximises the censored log likelihood written with
scipy.stats.norm (logcdf, logsf, cdf differences) by scipy.optimize; ours must reach the same
maximum (log likelihood to 1e-6, estimates to 1e-4) with the same SEs (inverse numeric Hessian of
the independent likelihood, to 1e-3 relative).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.conftest import write_spec


def simulated() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    n = 400
    x = rng.normal(size=n)
    ystar = 1.0 + 0.5 * x + rng.normal(0.0, 1.2, n)
    left, right = ystar < -0.5, ystar > 2.5
    interval = (np.arange(n) % 4 == 0) & ~left & ~right
    lo = np.where(left, -0.5, np.where(right, 2.5, np.where(interval, np.floor(ystar * 2) / 2, ystar)))
    hi = np.where(interval, lo + 0.5, lo)
    return pd.DataFrame({"x": x, "lo": lo, "hi": hi, "left": left.astype(int), "right": right.astype(int)})


def independent_loglik(theta: np.ndarray, d: pd.DataFrame) -> float:
    b0, b1, log_s = theta
    s = np.exp(log_s)
    mu = b0 + b1 * d["x"].to_numpy()
    lo, hi = d["lo"].to_numpy(), d["hi"].to_numpy()
    left, right = d["left"].to_numpy() == 1, d["right"].to_numpy() == 1
    exact = (lo == hi) & ~left & ~right
    ll = np.where(exact, stats.norm.logpdf(lo, mu, s), 0.0)
    ll = np.where(left, stats.norm.logcdf((lo - mu) / s), ll)
    ll = np.where(right, stats.norm.logsf((lo - mu) / s), ll)
    inner = ~exact & ~left & ~right
    with np.errstate(divide="ignore"):
        ll = np.where(inner, np.log(stats.norm.cdf((hi - mu) / s) - stats.norm.cdf((lo - mu) / s)), ll)
    return float(ll.sum())


def test_left_right_and_interval_censoring_match_an_independent_fit(tmp_path: Path) -> None:
    d = simulated()
    assert d["left"].sum() > 20 and d["right"].sum() > 20 and (d["hi"] > d["lo"]).sum() > 50
    (tmp_path / "data").mkdir()
    d.to_csv(tmp_path / "data" / "c.csv", index=False)
    spec = write_spec(tmp_path, "name: intreg\ndata: {path: data/c.csv}\n"
                                "responses:\n  - {name: lo, family: gaussian, censoring: {left: left, right: right, "
                                "upper: hi}}\nfixed: \"lo ~ x\"\n")
    fit = estimate(prepare(spec).model)
    assert fit.converged
    def neg(t: np.ndarray) -> float:
        value = independent_loglik(t, d)
        return -value if np.isfinite(value) else 1e300

    res = optimize.minimize(neg, np.array([1.0, 0.5, 0.0]), method="BFGS", options={"gtol": 1e-8})
    assert fit.loglik == pytest.approx(-res.fun, abs=1e-6)
    pt = fit.model.partable
    ours = np.array([fit.values[pt.index("Intercept")], fit.values[pt.index("x")],
                     np.log(fit.values[pt.index("sd(Residual)")])])
    np.testing.assert_allclose(ours, res.x, atol=1e-4)
    h = 1e-4
    hess = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            ei, ej = np.eye(3)[i] * h, np.eye(3)[j] * h
            hess[i, j] = (independent_loglik(res.x + ei + ej, d) - independent_loglik(res.x + ei - ej, d)
                          - independent_loglik(res.x - ei + ej, d) + independent_loglik(res.x - ei - ej, d)) / (4 * h * h)
    se_indep = np.sqrt(np.diag(np.linalg.inv(-hess)))
    se = fit.se()
    ours_se = np.array([se[pt.index("Intercept")], se[pt.index("x")],
                        se[pt.index("sd(Residual)")] / fit.values[pt.index("sd(Residual)")]])
    np.testing.assert_allclose(ours_se, se_indep, rtol=1e-3)
