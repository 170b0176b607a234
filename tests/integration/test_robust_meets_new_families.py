"""Robust standard errors of the families with per-row parameter columns (censored gaussian here): they crashed
(exit 3) before; now the sandwich equals one written here from per-row scores of the censored likelihood."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.conftest import SPECS, write_spec

TOBIT = """\
name: tobit_robust
data: {path: tobit_sim.csv}
responses:
  - {name: y, family: gaussian, censoring: {left: censored}}
fixed: "y ~ x"
estimation: {method: ML, vce: robust}
"""


def row_loglik(theta: np.ndarray, x: np.ndarray, y: np.ndarray, left: np.ndarray) -> np.ndarray:
    b0, b1, s = theta
    z = (y - b0 - b1 * x) / s
    return np.where(left, norm.logcdf(z), norm.logpdf(z) - np.log(s))


def test_robust_tobit_standard_errors_equal_the_sandwich_of_row_scores(tmp_path: Path) -> None:
    data = pd.read_csv(SPECS / "data" / "tobit_sim.csv")
    data.to_csv(tmp_path / "tobit_sim.csv", index=False)
    prepared = prepare(write_spec(tmp_path, TOBIT))
    fit = estimate(prepared.model)
    names = list(prepared.model.partable.names)
    theta = np.array([fit.values[names.index(n)] for n in ("Intercept", "x", "sd(Residual)")])
    x, y, left = data["x"].to_numpy(), data["y"].to_numpy(), data["censored"].to_numpy() == 1
    h = 1e-5
    scores = np.zeros((len(y), 3))
    for k in range(3):
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        scores[:, k] = (row_loglik(up, x, y, left) - row_loglik(down, x, y, left)) / (2 * h)
    H = np.zeros((3, 3))
    for k in range(3):
        step = np.zeros(3)
        step[k] = h
        for j in range(3):
            e = np.zeros(3)
            e[j] = h
            f = [row_loglik(theta + a + b, x, y, left).sum() for a, b in ((step, e), (step, -e), (-step, e), (-step, -e))]
            H[k, j] = (f[0] - f[1] - f[2] + f[3]) / (4 * h * h)
    Hinv = np.linalg.inv(-H)
    n = len(y)
    se = np.sqrt(np.diag(Hinv @ (scores.T @ scores) @ Hinv) * n / (n - 1))
    ours = np.array([fit.se()[names.index(nm)] for nm in ("Intercept", "x")])
    np.testing.assert_allclose(ours, se[:2], rtol=2e-3)
    assert fit.extras["vce"]["type"] == "robust"
