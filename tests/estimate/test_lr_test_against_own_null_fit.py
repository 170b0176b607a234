"""The LR test against the model without latent variables, recomputed in the test on both engines.

The null model is fitted here by closed-form OLS (gaussian) or by Newton's
method on the binomial GLM (cbpp), and the p-value taken from scipy's chi2:
chi-bar-square(01), half the chi2(1) tail, for a single variance; chi2 with
one degree of freedom per latent parameter, flagged conservative, otherwise.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from mlmrun import cli
from tests.conftest import SPECS, write_spec


def pig_null_loglik() -> float:
    with (SPECS / "data" / "pig.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    X = np.array([[1.0, float(r["week"])] for r in rows])
    y = np.array([float(r["weight"]) for r in rows])
    rss = float(np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2))
    n = len(y)
    return -0.5 * n * (1.0 + np.log(2.0 * np.pi * rss / n))


def cbpp_null_loglik() -> float:
    with (SPECS / "data" / "cbpp.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    X = np.array([[1.0] + [float(r["period"] == str(k)) for k in (2, 3, 4)] for r in rows])
    y = np.array([float(r["incidence"]) for r in rows])
    n = np.array([float(r["size"]) for r in rows])
    beta = np.zeros(4)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-X @ beta))
        beta += np.linalg.solve(X.T @ ((n * p * (1 - p))[:, None] * X), X.T @ (y - n * p))
    p = 1.0 / (1.0 + np.exp(-X @ beta))
    return float(np.sum(stats.binom.logpmf(y, n, p)))


def fit(spec, out) -> dict:
    assert cli.main(["fit", str(spec), "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "results.json").read_text())


def check(doc: dict, null: float, df: int, chibar: bool) -> None:
    lr = doc["lr_test"]
    chi2 = 2.0 * (doc["loglik"] - null)
    assert chi2 > 1.0
    assert lr["loglik_null"] == pytest.approx(null, abs=1e-6)
    assert lr["chi2"] == pytest.approx(chi2, abs=1e-5)
    assert lr["df"] == df
    expected = 0.5 * stats.chi2.sf(chi2, 1) if chibar else stats.chi2.sf(chi2, df)
    assert lr["p"] == pytest.approx(expected, rel=1e-6, abs=1e-300)
    assert lr["kind"] == ("chibar2" if chibar else "chi2")
    assert ("conservative" in lr["note"]) is (not chibar)


@pytest.mark.parametrize("spec,df,chibar", [("pig_intercept", 1, True), ("pig_slope", 2, False),
                                            ("pig_intercept_quadrature", 1, True)])
def test_pig_lr_test_against_ols(tmp_path, spec, df, chibar):
    check(fit(SPECS / f"{spec}.yaml", tmp_path), pig_null_loglik(), df, chibar)


def test_quadrature_lr_test_with_two_latent_parameters_is_conservative_chi2(spec_dir, tmp_path):
    spec = write_spec(spec_dir, """name: pig_slope_quadrature
data: {path: data/pig.csv}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1, week], covariance: independent}
estimation: {method: ML, exact: false, integration: {method: adaptive, points: 4}}
""")
    check(fit(spec, tmp_path), pig_null_loglik(), 2, False)


def test_cbpp_lr_test_against_the_binomial_glm(tmp_path):
    check(fit(SPECS / "cbpp_laplace.yaml", tmp_path), cbpp_null_loglik(), 1, True)
