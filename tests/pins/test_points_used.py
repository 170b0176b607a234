"""`points: k` means a k-point Gauss-Hermite rule, in the rule the plan builds and in the likelihood computed.

A k-point rule for N(0, 1) integrates x^d exactly for d <= 2k - 1 and not x^2k (E x^2k = (2k-1)!!
differs from the rule's sum by k! ...). The rule object the integration plan builds for a spec is
checked on those moments, and the log likelihood mlmrun reports at fixed parameters is checked
against the k-point sum computed here from numpy's hermegauss, both for plain Gauss-Hermite (ghq)
and for adaptive quadrature (nodes at the posterior mode, scaled by the curvature, found here by
Newton's method), and shown to differ from the k - 1 and k + 1 point sums. So the points reported in
results (fit.integration) are the points used: a rule with one point fewer, or one more, fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

from mlmrun import prepare
from mlmrun.likelihood.quadrature.plan import integration_plan
from tests.pins.fixed import fit_fixed, logsumexp, write_case

INTERCEPT, SLOPE, SD0, SD1, CORR = 0.4, 0.3, 0.9, 0.5, 0.2


def counts(seed: int = 5) -> pd.DataFrame:
    """8 subjects x 3 Poisson counts with a covariate t."""
    rng = np.random.default_rng(seed)
    rows = [{"subject": s, "t": t, "y": int(rng.poisson(np.exp(0.4 + 0.9 * rng.normal() * (t == 0) + 0.3 * t)))}
            for s in range(8) for t in (-1.0, 0.0, 1.0)]
    return pd.DataFrame(rows)


def double_factorial_moment(d: int) -> float:
    """E[x^d] for x ~ N(0, 1)."""
    return 0.0 if d % 2 else float(np.prod(np.arange(d - 1, 0, -2)))


def unit_loglik(frame: pd.DataFrame, u0: np.ndarray, u1: np.ndarray | None = None) -> np.ndarray:
    """sum over a subject's rows of log f(y | u), for arrays of u values (rows on the last axis)."""
    y, t = frame["y"].to_numpy(), frame["t"].to_numpy()
    nu = INTERCEPT + SLOPE * t + u0[..., None] + (0.0 if u1 is None else u1[..., None] * t)
    return np.sum(y * nu - np.exp(nu) - gammaln(y + 1), axis=-1)


def ghq_1d(frame: pd.DataFrame, k: int) -> float:
    x, w = np.polynomial.hermite_e.hermegauss(k)
    logw = np.log(w / np.sqrt(2 * np.pi))
    return sum(float(logsumexp(unit_loglik(g, SD0 * x) + logw, axis=0)) for _, g in frame.groupby("subject"))


def ghq_2d(frame: pd.DataFrame, k: int) -> float:
    x, w = np.polynomial.hermite_e.hermegauss(k)
    grid = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    logw = np.log(np.outer(w, w).reshape(-1) / (2 * np.pi))
    cov = np.array([[SD0**2, CORR * SD0 * SD1], [CORR * SD0 * SD1, SD1**2]])
    u = grid @ np.linalg.cholesky(cov).T
    return sum(float(logsumexp(unit_loglik(g, u[:, 0], u[:, 1]) + logw, axis=0))
               for _, g in frame.groupby("subject"))


def agq_1d(frame: pd.DataFrame, k: int) -> float:
    """Adaptive k-point rule in the standardised u: nodes m + c x_r, m the posterior mode, c = (-h'')^-1/2."""
    x, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / np.sqrt(2 * np.pi)
    total = 0.0
    for _, g in frame.groupby("subject"):
        y, t = g["y"].to_numpy(), g["t"].to_numpy()
        m = 0.0
        for _ in range(100):
            mean = np.exp(INTERCEPT + SLOPE * t + SD0 * m)
            grad, curv = SD0 * np.sum(y - mean) - m, SD0**2 * np.sum(mean) + 1.0
            m += grad / curv
            if abs(grad) < 1e-14:
                break
        c = 1.0 / np.sqrt(SD0**2 * np.sum(np.exp(INTERCEPT + SLOPE * t + SD0 * m)) + 1.0)
        u = m + c * x
        log_terms = unit_loglik(g, SD0 * u) - 0.5 * u**2 + 0.5 * x**2 + np.log(w * c)
        total += float(logsumexp(log_terms, axis=0))
    return total


RANDOM_1D = """
levels:
  - {name: subject, id: subject}
responses:
  - {name: y, family: poisson, link: log}
fixed: "y ~ t"
random:
  - {level: subject, terms: [1]}
"""
RANDOM_2D = RANDOM_1D.replace("terms: [1]}", "terms: [1, t], covariance: unstructured}")
FIX_1D = {"Intercept": INTERCEPT, "t": SLOPE, "sd(_cons)@subject": SD0}
FIX_2D = {**FIX_1D, "sd(t)@subject": SD1, "corr(t,_cons)@subject": CORR}


def assert_uses_k_points(ours: float, reference, k: int) -> None:
    target = reference(k)
    assert ours == pytest.approx(target, rel=1e-11, abs=0), (k, ours, target)
    for other in (k - 1, k + 1):
        assert abs(reference(other) - target) > 1e-7, f"{k} and {other} points are indistinguishable here"


@pytest.mark.parametrize("k", [2, 3, 5])
def test_plain_rule_with_k_points_is_used_and_reported(tmp_path: Path, k: int) -> None:
    frame = counts()
    body = RANDOM_1D + f"estimation: {{integration: {{method: ghq, points: {k}}}}}\n"
    fit = fit_fixed(write_case(tmp_path, frame, body, FIX_1D))
    assert fit.integration == {"method": "ghq", "points": k}
    assert_uses_k_points(fit.loglik, lambda n: ghq_1d(frame, n), k)


@pytest.mark.parametrize("k", [2, 4])
def test_adaptive_rule_with_k_points_is_used_and_reported(tmp_path: Path, k: int) -> None:
    frame = counts()
    body = RANDOM_1D + f"estimation: {{integration: {{method: adaptive, points: {k}}}}}\n"
    fit = fit_fixed(write_case(tmp_path, frame, body, FIX_1D))
    assert fit.integration == {"method": "adaptive", "points": k}
    assert_uses_k_points(fit.loglik, lambda n: agq_1d(frame, n), k)


def test_two_dimensional_plain_rule_is_the_k_by_k_product(tmp_path: Path) -> None:
    frame = counts()
    body = RANDOM_2D + "estimation: {integration: {method: ghq, points: 4}}\n"
    fit = fit_fixed(write_case(tmp_path, frame, body, FIX_2D))
    assert fit.integration == {"method": "ghq", "points": 4}
    assert_uses_k_points(fit.loglik, lambda n: ghq_2d(frame, n), 4)


@pytest.mark.parametrize("k", [1, 2, 3, 6, 10])
def test_planned_rule_integrates_degree_2k_minus_1_exactly_and_not_2k(tmp_path: Path, k: int) -> None:
    body = RANDOM_2D + f"estimation: {{integration: {{method: adaptive, points: {k}}}}}\n"
    path = write_case(tmp_path, counts(), body, FIX_2D)
    (rule,) = integration_plan(prepare(path).model).rules
    assert rule.points == k and rule.dim == 2
    w = np.exp(rule.log_weights)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    x = rule.nodes
    for d in range(2 * k):
        for axis in (0, 1):
            terms = w * x[:, axis] ** d
            assert float(np.sum(terms)) == pytest.approx(double_factorial_moment(d), rel=1e-9,
                                                         abs=1e-12 * max(1.0, float(np.sum(np.abs(terms))))), (k, d)
        mixed = w * x[:, 0] ** d * x[:, 1] ** (2 * k - 1 - d)
        scale = max(1.0, float(np.sum(np.abs(mixed))))  # odd moments are sums of large cancelling terms
        assert float(np.sum(mixed)) == pytest.approx(
            double_factorial_moment(d) * double_factorial_moment(2 * k - 1 - d), abs=1e-12 * scale)
    top = float(np.sum(w * x[:, 0] ** (2 * k)))
    assert abs(top - double_factorial_moment(2 * k)) > 0.5, (k, top)
