"""A 3-level model with two correlated latent variables at each of the two upper levels, against brute force.

Pupils (rows) in classes in schools; a random intercept and a random slope on z per class
(unstructured 2x2 covariance), a random intercept and a random slope on x per school
(unstructured 2x2). The marginal likelihood is computed here by nested tensor-product
Gauss-Hermite quadrature with 28 x 28 points per level, NOT adaptive (no modes, no
curvatures, none of mlmrun's matrices or rules: numpy's hermegauss and a Cholesky factor
of each level's covariance written out below), and compared with mlmrun's adaptive
quadrature at the same fixed parameter values through the public pipeline. A wrong
normalising constant of a two-dimensional level (log 2 pi, log|C| or the weight ratio),
a wrong covariance map or a wrong link in any family shows up as a difference far above
the 1e-7 relative tolerance (6e-6 absolute here); the brute force itself agrees with a 24 x 24
rule to 1e-8 relative (checked), and mlmrun's 12-point adaptive value agrees with it to about 1e-9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, gammaln, log_expit

from tests.pins.fixed import fit_fixed, logsumexp, write_case

pytestmark = pytest.mark.slow  # about 4 s of brute force per test

CLASS_SD, CLASS_CORR = (0.8, 0.5), 0.3
SCHOOL_SD, SCHOOL_CORR = (0.9, 0.6), -0.4
BETA_X = -0.4


def pupils(seed: int) -> pd.DataFrame:
    """3 schools x 2 classes x 4 pupils with covariates x (school slope) and z (class slope)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(3):
        for c in range(2):
            for _ in range(4):
                rows.append({"school": f"s{s}", "klass": f"c{c}", "x": round(rng.normal(), 3),
                             "z": round(rng.normal(), 3), "k": int(rng.integers(0, 4)), "trials": 3,
                             "o": int(rng.integers(0, 3))})
    frame = pd.DataFrame(rows)
    frame.loc[:2, "o"] = [0, 1, 2]  # every category observed
    return frame


def normal_nodes(sd: tuple[float, float], corr: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product Gauss-Hermite nodes (R, 2) for N(0, Sigma) and their log weights (R,)."""
    x, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / np.sqrt(2.0 * np.pi)
    cov = np.array([[sd[0] ** 2, corr * sd[0] * sd[1]], [corr * sd[0] * sd[1], sd[1] ** 2]])
    grid = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1).reshape(-1, 2)
    logw = np.log(np.outer(w, w)).reshape(-1)
    return grid @ np.linalg.cholesky(cov).T, logw


def brute_force(frame: pd.DataFrame, row_loglik, points: int) -> float:
    """log of prod_schools int prod_classes int prod_rows f(y | eta) dPhi(u_class) dPhi(u_school)."""
    us, logw_s = normal_nodes(SCHOOL_SD, SCHOOL_CORR, points)
    uc, logw_c = normal_nodes(CLASS_SD, CLASS_CORR, points)
    total = 0.0
    for _, school in frame.groupby("school"):
        per_node = np.zeros(len(us))
        for _, klass in school.groupby("klass"):
            x, z = klass["x"].to_numpy(), klass["z"].to_numpy()
            school_part = us[:, 0, None] + us[:, 1, None] * x  # (Rs, rows)
            class_part = uc[:, 0, None] + uc[:, 1, None] * z  # (Rc, rows)
            eta = BETA_X * x + school_part[:, None, :] + class_part[None, :, :]
            ll = row_loglik(klass, eta).sum(axis=-1)  # (Rs, Rc)
            per_node += logsumexp(ll + logw_c, axis=1)
        total += float(logsumexp(per_node + logw_s, axis=0))
    return total


def covariance_fix(intercept: dict[str, float]) -> dict[str, float]:
    return {**intercept, "x": BETA_X,
            "sd(_cons)@klass": CLASS_SD[0], "sd(z)@klass": CLASS_SD[1], "corr(z,_cons)@klass": CLASS_CORR,
            "sd(_cons)@school": SCHOOL_SD[0], "sd(x)@school": SCHOOL_SD[1], "corr(x,_cons)@school": SCHOOL_CORR}


LEVELS = """
levels:
  - {name: klass, id: klass, within_parent: true}
  - {name: school, id: school}
"""
RANDOM = """
random:
  - {level: klass, terms: [1, z], covariance: unstructured}
  - {level: school, terms: [1, x], covariance: unstructured}
estimation: {method: ML, integration: {method: adaptive, points: 12}}
"""


def binomial_loglik(intercept: float):
    def f(rows: pd.DataFrame, eta: np.ndarray) -> np.ndarray:
        k, n = rows["k"].to_numpy(), rows["trials"].to_numpy()
        nu = intercept + eta
        coef = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
        return coef + k * log_expit(nu) + (n - k) * log_expit(-nu)
    return f


def ordinal_loglik(cuts: tuple[float, float]):
    def f(rows: pd.DataFrame, eta: np.ndarray) -> np.ndarray:
        y = rows["o"].to_numpy()
        upper = np.where(y == 2, 1.0, expit(np.array(cuts)[np.minimum(y, 1)] - eta))
        lower = np.where(y == 0, 0.0, expit(np.array(cuts)[np.maximum(y - 1, 0)] - eta))
        with np.errstate(divide="ignore"):  # far-out nodes where both probabilities round to 1 carry no weight
            return np.log(upper - lower)
    return f


def check(frame: pd.DataFrame, ours: float, row_loglik) -> None:
    fine, coarse = brute_force(frame, row_loglik, 28), brute_force(frame, row_loglik, 24)
    assert fine == pytest.approx(coarse, rel=1e-8), "the brute force itself has not converged"
    assert ours == pytest.approx(fine, rel=1e-7), (ours, fine)


def test_three_level_binomial_two_latent_per_level_matches_brute_force(tmp_path: Path) -> None:
    frame = pupils(1)
    body = LEVELS + "responses:\n  - {name: k, family: binomial, link: logit, trials: trials}\n" \
        'fixed: "k ~ x"\n' + RANDOM
    fit = fit_fixed(write_case(tmp_path, frame, body, covariance_fix({"Intercept": 0.2})))
    assert fit.integration == {"method": "adaptive", "points": 12}
    check(frame, fit.loglik, binomial_loglik(0.2))


def test_three_level_ordinal_two_latent_per_level_matches_brute_force(tmp_path: Path) -> None:
    frame = pupils(2)
    body = LEVELS + "responses:\n  - {name: o, family: ordinal, link: logit}\n" 'fixed: "o ~ 0 + x"\n' + RANDOM
    fit = fit_fixed(write_case(tmp_path, frame, body, covariance_fix({"cut1": -0.5, "cut2": 0.7})))
    check(frame, fit.loglik, ordinal_loglik((-0.5, 0.7)))
