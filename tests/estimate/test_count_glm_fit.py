"""NB1 and zero-inflated NB2 with a zero-inflation covariate, without random effects, against independent ML fits.

On specs/data/epil.csv: y ~ trt + lbase with nbinom1 (Var = mu (1 + phi)), and with nbinom2 plus
`zero_inflation: "~ lage"`. The independent fits maximise log likelihoods written with
scipy.stats.nbinom by scipy.optimize; ours must reach the same maximum (1e-6) and estimates (1e-4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.conftest import SPECS, write_spec

DATA = pd.read_csv(SPECS / "data" / "epil.csv")
X = np.column_stack([np.ones(len(DATA)), DATA["trt"] == "progabide", DATA["lbase"]]).astype(float)
Y = DATA["y"].to_numpy(dtype=float)


def nb1(theta: np.ndarray) -> float:
    mu, phi = np.exp(X @ theta[:3]), np.exp(theta[3])
    return float(stats.nbinom.logpmf(Y, mu / phi, 1.0 / (1.0 + phi)).sum())


def zinb2(theta: np.ndarray) -> float:
    mu, size = np.exp(X @ theta[:3]), np.exp(theta[3])
    pi = 1.0 / (1.0 + np.exp(-(theta[4] + theta[5] * DATA["lage"].to_numpy())))
    p = (1 - pi) * stats.nbinom.pmf(Y, size, size / (size + mu)) + pi * (Y == 0)
    return float(np.log(p).sum())


def fit_spec(tmp_path: Path, response: str) -> object:
    (tmp_path / "data").mkdir()
    DATA.to_csv(tmp_path / "data" / "epil.csv", index=False)
    spec = write_spec(tmp_path, f"name: glm\ndata: {{path: data/epil.csv}}\nresponses:\n  - {response}\n"
                                "fixed: \"y ~ trt + lbase\"\n")
    return estimate(prepare(spec).model)


def independent(f, start: np.ndarray) -> optimize.OptimizeResult:
    def neg(t: np.ndarray) -> float:
        value = f(t)
        return -value if np.isfinite(value) else 1e300

    return optimize.minimize(neg, start, method="BFGS", options={"gtol": 1e-8})


@pytest.mark.parametrize(("response", "loglik", "names", "start"), [
    ("{name: y, family: nbinom1}", nb1, ["Intercept", "trt[T.progabide]", "lbase", "log phi"], [1.8, 0.0, 1.0, 0.0]),
    ("{name: y, family: nbinom2, zero_inflation: '~ lage'}", zinb2,
     ["Intercept", "trt[T.progabide]", "lbase", "log theta", "zi(Intercept)", "zi(lage)"],
     [1.8, 0.0, 1.0, 1.0, -2.0, 0.0]),
])
def test_count_glm_matches_an_independent_fit(tmp_path: Path, response: str, loglik, names: list[str],
                                              start: list[float]) -> None:
    fit = fit_spec(tmp_path, response)
    assert fit.converged
    res = independent(loglik, np.array(start))
    assert fit.loglik == pytest.approx(-res.fun, abs=1e-6)
    pt = fit.model.partable
    ours = [np.log(fit.values[pt.index(n[4:])]) if n.startswith("log ") else fit.values[pt.index(n)] for n in names]
    np.testing.assert_allclose(ours, res.x, atol=1e-4)
