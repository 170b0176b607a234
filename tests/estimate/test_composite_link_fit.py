"""specs/composite.yaml (composite link, counts from two additive sources) against an independent fit.

The independent computation: the marginal log likelihood of
y_ij ~ Poisson(exp(b0 + b1 x_ij + u_j) + exp(g0 + g1 w_ij)), u_j ~ N(0, sd^2), integrated per
cluster by a dense trapezoidal rule over u (1601 points over +-10 SD), and maximised by
scipy.optimize from the simulation's truth. Our adaptive-quadrature fit must reach the same
maximum (log likelihood to 1e-5, estimates to 1e-3, a hundredth of their SEs) and recover the
truth (tools/make_composite_sim.py) within 2.5 SE.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special, stats

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult
from tests.conftest import SPECS

pytestmark = pytest.mark.reference

NAMES = ["Intercept", "x", "composite1(Intercept)", "composite1(w)", "sd(_cons)@cluster"]
TRUTH = [0.5, 0.6, 0.3, 0.8, 0.6]


@cache
def fit() -> FitResult:
    return estimate(prepare(SPECS / "composite.yaml").model)


def brute_force_loglik(theta: np.ndarray, data: pd.DataFrame) -> float:
    b0, b1, g0, g1, sd = theta
    u = np.linspace(-10 * sd, 10 * sd, 1601)
    mu = np.exp(b0 + b1 * data["x"].to_numpy()[:, None] + u) + np.exp(g0 + g1 * data["w"].to_numpy())[:, None]
    y = data["y"].to_numpy()[:, None]
    rows = y * np.log(mu) - mu - special.gammaln(y + 1.0)  # the Poisson log pmf
    codes = pd.factorize(data["cluster"])[0]
    per_cluster = np.zeros((codes.max() + 1, len(u)))
    np.add.at(per_cluster, codes, rows)
    a = per_cluster + stats.norm.logpdf(u, 0.0, sd)
    top = a.max(axis=1, keepdims=True)
    return float((top[:, 0] + np.log(integrate.trapezoid(np.exp(a - top), u, axis=1))).sum())


def ours(f: FitResult) -> np.ndarray:
    pt = f.model.partable
    return np.array([f.values[pt.index(n)] for n in NAMES])


@pytest.mark.slow
def test_composite_link_matches_an_independent_maximum_likelihood_fit() -> None:
    f = fit()
    assert f.converged, f.warnings
    data = pd.read_csv(SPECS / "data" / "composite_sim.csv")
    assert f.loglik == pytest.approx(brute_force_loglik(ours(f), data), abs=1e-5)

    def neg(t: np.ndarray) -> float:
        return -brute_force_loglik(np.append(t[:4], np.exp(t[4])), data)

    start = np.append(TRUTH[:4], np.log(TRUTH[4]))
    res = optimize.minimize(neg, start, method="BFGS", options={"gtol": 1e-7})
    independent = np.append(res.x[:4], np.exp(res.x[4]))
    assert -res.fun == pytest.approx(f.loglik, abs=1e-5)
    np.testing.assert_allclose(ours(f), independent, atol=1e-3)


def test_composite_link_recovers_the_truth() -> None:
    f = fit()
    se = f.se()
    idx = [f.model.partable.index(n) for n in NAMES]
    for name, i, true in zip(NAMES, idx, TRUTH, strict=True):
        assert abs(f.values[i] - true) < 2.5 * se[i], (name, f.values[i], se[i])
    check = f.extras["point_check"]["loglik"]
    assert abs(check["30"] - check["20"]) < 1e-4
