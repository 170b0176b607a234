"""The LR test "vs. the model without random effects" keeps the structural Gamma covariates in its null.

hsb82's means-as-outcomes model written with `structural.Gamma` (school intercept regressed on
meanses) is lme4's `lmer(mAch ~ meanses + (1 | school), REML = FALSE)` (hsb82__meanses_ri_ml). Its
null model is the regression of mAch on meanses, fitted here by closed-form OLS; the statistic is
chibar2(01) = 2 (reference loglik - OLS loglik) = 237.29, not chi2(2) = 1140.62 against the
intercept-only regression (what was printed before). Checked on the exact Gaussian engine and on
adaptive quadrature.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from mlmrun import cli
from tests.conftest import write_spec
from tests.reference.compare import load_reference

MOO = """
name: hsb_moo
data: {{path: data/hsb82.csv}}
levels: [{{name: school, id: school}}]
responses: [{{name: mAch, family: gaussian}}]
fixed: "mAch ~ 1"
latent: [{{name: school_int, level: school, loadings: {{on: [1], fix: {{1: 1}}}}}}]
structural: {{Gamma: {{school_int: {{meanses: free}}}}}}
estimation: {estimation}
"""


def ols_loglik(folder) -> float:
    with (folder / "data" / "hsb82.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    X = np.array([[1.0, float(r["meanses"])] for r in rows])
    y = np.array([float(r["mAch"]) for r in rows])
    rss = float(np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2))
    n = len(y)
    return -0.5 * n * (1.0 + np.log(2.0 * np.pi * rss / n))


@pytest.mark.parametrize("estimation", [
    "{method: ML}",
    "{method: ML, exact: false, integration: {method: adaptive, points: 8}}",
    "{method: ML, exact: false, integration: {method: laplace}}",
])
def test_means_as_outcomes_lr_test_is_chibar2_against_regression_on_meanses(spec_dir, estimation: str) -> None:
    spec = write_spec(spec_dir, MOO.format(estimation=estimation))
    out = spec_dir / "out"
    assert cli.main(["fit", str(spec), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "results.json").read_text())
    ref_ll = load_reference("hsb82__meanses_ri_ml", "results", "loglik")
    assert doc["loglik"] == pytest.approx(ref_ll, abs=1e-5)
    null = ols_loglik(spec_dir)
    expected = 2.0 * (ref_ll - null)
    assert expected == pytest.approx(237.29, abs=0.01)
    lr = doc["lr_test"]
    assert lr["kind"] == "chibar2" and lr["df"] == 1
    assert lr["loglik_null"] == pytest.approx(null, abs=1e-6)
    assert lr["chi2"] == pytest.approx(expected, abs=1e-3)
    assert lr["p"] == pytest.approx(0.5 * stats.chi2.sf(expected, 1), rel=1e-3)


FACTOR = """
name: fiber_factor
data: {{path: data/diet.csv, filter: [{{column: item, op: "!=", value: chd}}]}}
levels: [{{name: id, id: id}}]
responses: [{{name: y, family: gaussian}}]
fixed: "y ~ 0 + C(item)"
latent: [{{name: fiber, level: id, loadings: {{by: item, fix: {{fiber1: 1}}}}}}]
structural: {{Gamma: {{fiber: {{age: free}}}}}}
estimation: {estimation}
"""


def item_slopes_ols_loglik(folder) -> float:
    """Null of the factor model: item means plus lambda_item * gamma * age, i.e. one free age slope per item."""
    with (folder / "data" / "diet.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["item"] != "chd"]
    one = np.array([r["item"] == "fiber1" for r in rows], dtype=float)
    age = np.array([float(r["age"]) for r in rows])
    X = np.column_stack([one, 1 - one, one * age, (1 - one) * age])
    y = np.array([float(r["y"]) for r in rows])
    rss = float(np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2))
    n = len(y)
    return -0.5 * n * (1.0 + np.log(2.0 * np.pi * rss / n))


@pytest.mark.parametrize("estimation", [
    "{method: ML}",
    "{method: ML, exact: false, integration: {method: adaptive, points: 8}}",
])
def test_free_loading_on_the_gamma_path_stays_in_the_null_model(spec_dir, estimation: str) -> None:
    spec = write_spec(spec_dir, FACTOR.format(estimation=estimation))
    out = spec_dir / "out"
    assert cli.main(["fit", str(spec), "--out", str(out), "--quiet"]) == 0
    lr = json.loads((out / "results.json").read_text())["lr_test"]
    assert lr["loglik_null"] == pytest.approx(item_slopes_ols_loglik(spec_dir), abs=1e-5)
    assert lr["df"] == 1 and lr["kind"] == "chibar2"  # only sd(fiber)@id is tested
