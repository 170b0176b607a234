"""Issue 12: residual covariance structures against nlme and Stata (the shipped ovary and exercise specs).

ovary: random intercept by mare and AR(2) residuals over time, ML and REML,
against nlme's lme(..., correlation = corARMA(p = 2)) (log likelihood to the
file's precision, fixed effects and their SEs, phi1, phi2, sd(e) and
sd(_cons) to 4 significant digits) and Stata's published REML figures.
exercise: unstructured and exponential residuals over day without random
effects, log likelihoods as printed in Stata's manual; the LR test against
the linear regression has Stata's chi2(14) for the unstructured model.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from mlmrun import cli
from mlmrun.estimate.gaussian_fit import fit_gaussian
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference, loglik_tolerance

pytestmark = pytest.mark.reference


@cache
def fitted(spec: str) -> FitResult:
    """Fit a shipped spec once per test session."""
    return fit_gaussian(prepare(SPECS / f"{spec}.yaml").model)


def value(fit: FitResult, name: str) -> float:
    return float(fit.values[list(fit.model.partable.names).index(name)])


def fixed_se(fit: FitResult, name: str) -> float:
    names = fit.extras["fixed_names"]
    return float(np.sqrt(np.asarray(fit.extras["fixed_vcov"])[names.index(name), names.index(name)]))


@pytest.mark.parametrize(("spec", "file"), [("ovary_ar2", "ovary__ri_ar2_ml"), ("ovary_ar2_reml", "ovary__ri_ar2_reml")])
def test_ovary_ar2_matches_nlme(spec: str, file: str) -> None:
    fit = fitted(spec)
    assert fit.converged, fit.warnings
    res = load_reference(file, "results")
    assert fit.method == load_reference(file, "method")
    assert_close(f"{file} loglik", fit.loglik, res["loglik"], abs_tol=loglik_tolerance(res["loglik"]))
    for fe in res["fixed_effects"]:
        ours = "Intercept" if fe["name"] == "(Intercept)" else fe["name"]
        assert_close(f"{file} {ours}", value(fit, ours), fe["estimate"], sig_digits=4)
        assert_close(f"{file} se({ours})", fixed_se(fit, ours), fe["se"], sig_digits=4)
    corr = res["residual_correlation"]["parameters"]
    assert_close(f"{file} phi1", value(fit, "phi1"), corr["Phi1"], sig_digits=4)
    assert_close(f"{file} phi2", value(fit, "phi2"), corr["Phi2"], sig_digits=4)
    assert_close(f"{file} sd(e)", value(fit, "sd(e)"), res["residual"]["sd"], sig_digits=4)
    sd_cons = res["random_effects"][0]["components"][0]["sd"]
    assert_close(f"{file} sd(_cons)@mare", value(fit, "sd(_cons)@mare"), sd_cons, sig_digits=4)
    assert fit.n_params == res["n_parameters"]


def test_ovary_ar2_reml_matches_stata_published() -> None:
    fit = fitted("ovary_ar2_reml")
    names = {"phi1": "phi1", "phi2": "phi2", "sd(e)": "sd(e)", "sin1": "sin1", "cos1": "cos1", "_cons": "Intercept"}
    for item in load_reference("ovary__ri_ar2_reml", "published_comparison", "comparisons"):
        quantity = item["quantity"]
        if quantity == "restricted loglik":
            assert_close(quantity, fit.loglik, item["published"], abs_tol=loglik_tolerance(item["published"]))
        elif quantity in names:
            assert_close(quantity, value(fit, names[quantity]), item["published"], sig_digits=5)


def test_ovary_ar2_standard_errors_are_on_the_reported_scale() -> None:
    fit = fitted("ovary_ar2")
    se = dict(zip(fit.model.partable.names, fit.se(), strict=True))
    for name in ("phi1", "phi2", "sd(e)", "sd(_cons)@mare"):
        assert np.isfinite(se[name]) and 0 < se[name] < abs(value(fit, name)), name


@pytest.mark.parametrize(("spec", "file"), [("exercise_unstructured", "exercise__un_resid_ml"),
                                            ("exercise_exponential", "exercise__exp_resid_ml")])
def test_exercise_residual_structures_match_stata(spec: str, file: str) -> None:
    fit = fitted(spec)
    assert fit.converged, fit.warnings
    printed = load_reference(file, "loglik")
    assert_close(f"{file} loglik", fit.loglik, printed, abs_tol=loglik_tolerance(printed))
    assert fit.n_obs == load_reference(file, "n_obs")


def test_exercise_unstructured_lr_test_has_statas_fourteen_degrees_of_freedom() -> None:
    lr = fitted("exercise_unstructured").extras["lr_test"]
    assert lr["df"] == 14 and lr["kind"] == "chi2"
    assert lr["chi2"] > 0


def test_ovary_ar2_report_and_results_json_carry_the_residual_block(tmp_path: Path) -> None:
    assert cli.main(["fit", str(SPECS / "ovary_ar2.yaml"), "--out", str(tmp_path), "--quiet"]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["residual_structure"] == {"structure": "ar", "title": "AR(2)", "time": "time", "by": None, "order": 2,
                                         "level": "mare"}
    params = {p["name"]: p for p in doc["parameters"]}
    for name, block in (("phi1", "rescorr"), ("phi2", "rescorr"), ("sd(e)", "residual"), ("var(e)", "residual")):
        assert params[name]["block"] == block and params[name]["se"] > 0, name
    assert params["var(e)"]["estimate"] == pytest.approx(params["sd(e)"]["estimate"] ** 2, rel=1e-12)
    assert doc["lr_test"]["df"] == 3  # sd(_cons), phi1, phi2 against the regression's one residual SD
    report = (tmp_path / "report.md").read_text()
    block = report[report.index("### Residual: AR(2)"):]
    assert block.index("| phi1 |") < block.index("| phi2 |") < block.index("| sd(e) |") < block.index("| var(e) |")
