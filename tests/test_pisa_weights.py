"""specs/pisa_size.yaml and specs/pisa_gk.yaml reproduce Stata's survey-data example (sampling weights, robust SEs).

Targets: tests/reference/pisa2000__pweights_{size,gk}.json (Stata xtmixed's printed output): the log
pseudolikelihood to its printed digit, coefficients, robust SEs, sd(_cons) and sd(Residual) to 4
significant digits, and the Wald chi2(6) to 4 digits: xtmixed 12 printed it from the model-based
covariance (`chi2_model_based`), Stata's later `mixed` from the robust one (187.23 for size).
"""

from __future__ import annotations

import json

import pytest

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.results import parameter_rows
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference

CASES = [("pisa_size", "pisa2000__pweights_size"), ("pisa_gk", "pisa2000__pweights_gk")]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def fitted(request):
    spec, ref = request.param
    fit = estimate(prepare(SPECS / f"{spec}.yaml").model)
    return fit, ref


def _rows(fit) -> dict:
    return {r.name: r for r in parameter_rows(fit)}


def test_log_pseudolikelihood_matches_stata_to_the_printed_digit(fitted):
    fit, ref = fitted
    assert fit.converged
    assert_close("log pseudolikelihood", fit.loglik, load_reference(ref, "results", "log_pseudolikelihood"),
                 abs_tol=0.05)


def test_coefficients_and_robust_ses_match_stata_to_4_digits(fitted):
    fit, ref = fitted
    rows = _rows(fit)
    for fe in load_reference(ref, "results", "fixed_effects"):
        name = "Intercept" if fe["name"] == "_cons" else fe["name"]
        assert_close(f"{name} estimate", rows[name].estimate, fe["estimate"], sig_digits=4)
        assert_close(f"{name} robust se", rows[name].se, fe["se"], sig_digits=4)


def test_variance_components_and_robust_ses_match_stata_to_4_digits(fitted):
    fit, ref = fitted
    rows = _rows(fit)
    re = load_reference(ref, "results", "random_effects", 0)
    res = load_reference(ref, "results", "residual")
    assert_close("sd(_cons)", rows["sd(_cons)@school"].estimate, re["sd"], sig_digits=4)
    assert_close("se sd(_cons)", rows["sd(_cons)@school"].se, re["se"], sig_digits=4)
    assert_close("sd(Residual)", rows["sd(Residual)"].estimate, res["sd"], sig_digits=4)
    assert_close("se sd(Residual)", rows["sd(Residual)"].se, res["se"], sig_digits=4)


def test_wald_chi2_matches_stata(fitted):
    fit, ref = fitted
    wald = fit.extras["wald"]
    assert wald["df"] == load_reference(ref, "results", "wald_df") and wald["vce"] == "robust"
    assert_close("Wald chi2 (model-based, xtmixed)", wald["chi2_model_based"],
                 load_reference(ref, "results", "wald_chi2"), sig_digits=4)
    if ref == "pisa2000__pweights_size":
        assert_close("Wald chi2 (robust, mixed)", wald["chi2"],
                     load_reference(ref, "results", "wald_chi2_robust"), sig_digits=4)


def test_robust_vce_is_clustered_at_the_school_level(fitted):
    fit, ref = fitted
    assert fit.extras["vce"] == {"type": "robust", "cluster": "school",
                                 "n_clusters": load_reference(ref, "results", "ngroups")}


def test_report_and_results_json_say_robust(tmp_path):
    from mlmrun.cli import main

    out = tmp_path / "out"
    assert main(["fit", str(SPECS / "pisa_size.yaml"), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["vce"] == {"type": "robust", "cluster": "school", "n_clusters": 148}
    assert doc["weights"]["pseudolikelihood"] is True and doc["weights"]["pwscale"] == "size"
    assert doc["wald"]["df"] == 6
    md = (out / "report.md").read_text()
    assert "Robust Std. Err." in md and "(Std. Err. adjusted for 148 clusters in school)" in md
    assert "Log pseudolikelihood" in md and "Wald chi2(6)" in md
