"""Posterior modes and curvature SDs of a three-level model against a dense joint optimisation in the test.

Classes within schools, a binomial logit response, a class intercept and a correlated school intercept and
slope. The joint log posterior of all standardised disturbances u is maximised here with scipy (BFGS), and
its negated Hessian A' W A + I is formed densely (A: the design of u, W: n p (1 - p) at the mode); the
latent variables' modes are L u^ and their SDs the square roots of diag(L H^-1 L').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import optimize
from scipy.special import expit, log_expit

from mlmrun.compile.matrices import model_matrices
from mlmrun.pipeline import prepare
from mlmrun.postest.units import unit_predictions
from mlmrun.results import FitResult
from tests.conftest import write_spec

SPEC = """\
name: nested_modes
data: {path: nested.csv}
levels:
  - {name: class, id: c}
  - {name: school, id: s}
responses:
  - {name: y, family: binomial, trials: n}
fixed: "y ~ x"
random:
  - {level: class, terms: [1]}
  - {level: school, terms: [1, x], covariance: unstructured}
"""


def _model(tmp_path: Path):
    rng = np.random.default_rng(11)
    school = np.repeat(np.arange(4), 18)
    cls = np.repeat(np.arange(12), 6)
    x = rng.normal(size=school.size)
    n = rng.integers(1, 6, school.size)
    y = rng.binomial(n, expit(-0.2 + 0.5 * x + rng.normal(0, 0.6, 12)[cls] + rng.normal(0, 0.5, 4)[school]))
    lines = "".join(f"{c},{s},{float(a)!r},{b},{m}\n" for c, s, a, b, m in zip(cls, school, x, y, n, strict=True))
    (tmp_path / "nested.csv").write_text("c,s,x,y,n\n" + lines)
    model = prepare(write_spec(tmp_path, SPEC)).model
    values = model.partable.start_values
    for name, v in {"Intercept": -0.1, "x": 0.4, "sd(_cons)@class": 0.7, "sd(_cons)@school": 0.6,
                    "sd(x)@school": 0.4, "corr(x,_cons)@school": 0.5}.items():
        values[model.partable.index(name)] = v
    return model, values, cls, school, x, y, n


def test_three_level_modes_and_curvature_sds_equal_a_dense_joint_optimisation(tmp_path: Path) -> None:
    model, values, cls, school, x, y, n = _model(tmp_path)
    mm = model_matrices(model, values)
    Lc, Ls = mm.L[0], mm.L[1]
    A = np.zeros((len(y), 12 + 8))
    A[np.arange(len(y)), cls] = Lc[0, 0]
    z = np.column_stack([np.ones(len(y)), x])
    for j in range(2):
        A[np.arange(len(y)), 12 + 2 * school + j] = z @ Ls[:, j]
    fixed = model.X @ mm.beta

    def negative(u: np.ndarray) -> tuple[float, np.ndarray]:
        nu = fixed + A @ u
        ll = np.sum(y * log_expit(nu) + (n - y) * log_expit(-nu)) - 0.5 * u @ u
        return -ll, -(A.T @ (y - n * expit(nu)) - u)

    u = optimize.minimize(negative, np.zeros(20), jac=True, method="BFGS", options={"gtol": 1e-12}).x
    p = expit(fixed + A @ u)
    cov = np.linalg.inv(A.T @ ((n * p * (1 - p))[:, None] * A) + np.eye(20))
    preds = {pr.level: pr for pr in unit_predictions(FitResult(model, values, model.partable.pack(values), None, 0.0, "ML",
                                                               {}, True, 0, 0, 0.0), "mode")}
    np.testing.assert_allclose(preds["class"].mean[:, 0], Lc[0, 0] * u[:12], atol=1e-7)
    np.testing.assert_allclose(preds["class"].sd[:, 0], Lc[0, 0] * np.sqrt(np.diag(cov)[:12]), atol=1e-7)
    for s in range(4):
        block = slice(12 + 2 * s, 14 + 2 * s)
        np.testing.assert_allclose(preds["school"].mean[s], Ls @ u[block], atol=1e-7)
        np.testing.assert_allclose(preds["school"].sd[s], np.sqrt(np.diag(Ls @ cov[block, block] @ Ls.T)), atol=1e-7)
