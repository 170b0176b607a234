"""Issue 2: exact ML/REML fits of the linear mixed-model specs against Stata and lme4.

Targets are read from tests/reference/*.json (copied from shared/reference),
whose files carry the peer's exact call. Tolerances:

- log likelihood within 1e-3 absolute: the optimisers of both sides stop
  within about 1e-8 of the optimum, so 1e-3 leaves room only for the last
  printed digit of published values (Stata prints 4-5 decimals) and the
  ~1e-4 data-precision offsets documented in the productivity files;
- fixed effects, SDs and correlations to 4 significant digits (half a unit
  in the 4th digit): the optimum is pinned down to 6 or more digits;
- fixed-effect SEs to 4 digits ((X'V^-1X)^-1 is analytic given the
  estimates); variance-component SEs to 3 digits (numeric Hessian).
"""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import pytest

from mlmrun.estimate.gaussian_fit import fit_gaussian
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference

pytestmark = pytest.mark.reference


@cache
def fitted(spec: str) -> FitResult:
    """Fit a shipped spec once per test session (MixedModels' model cache)."""
    return fit_gaussian(prepare(SPECS / f"{spec}.yaml").model)


def value(fit: FitResult, name: str) -> float:
    return float(fit.values[list(fit.model.partable.names).index(name)])


def se(fit: FitResult, name: str) -> float:
    return float(fit.se()[list(fit.model.partable.names).index(name)])


def fixed_se(fit: FitResult, name: str) -> float:
    names = fit.extras["fixed_names"]
    return float(np.sqrt(np.asarray(fit.extras["fixed_vcov"])[names.index(name), names.index(name)]))


def check_converged(fit: FitResult) -> None:
    assert fit.converged, fit.warnings
    assert fit.integration == {"method": "exact", "points": None}


def check_lme4(fit: FitResult, file: str, levels: dict[str, str]) -> None:
    """Compare with an lme4 reference file (results.* layout); `levels` maps lme4 group names to ours."""
    res = load_reference(file, "results")
    check_converged(fit)
    assert_close(f"{file} loglik", fit.loglik, res["loglik"], abs_tol=1e-3)
    for fe in res["fixed_effects"]:
        ours = "Intercept" if fe["name"] == "(Intercept)" else fe["name"]
        assert_close(f"{file} {ours}", value(fit, ours), fe["estimate"], sig_digits=4)
        assert_close(f"{file} se({ours})", fixed_se(fit, ours), fe["se"], sig_digits=4)
    for block in res["random_effects"]:
        level = levels[block["group"]]
        terms = ["_cons" if t == "(Intercept)" else t for t in block["terms"]]
        for term, comp in zip(terms, block["components"], strict=True):
            assert_close(f"{file} sd({term})@{level}", value(fit, f"sd({term})@{level}"), comp["sd"], sig_digits=4)
        for corr in block["correlations"]:
            a, b = ("_cons" if t == "(Intercept)" else t for t in (corr["term1"], corr["term2"]))
            assert_close(f"{file} corr({b},{a})@{level}", value(fit, f"corr({b},{a})@{level}"), corr["correlation"],
                         sig_digits=4)
    assert_close(f"{file} sd(Residual)", value(fit, "sd(Residual)"), res["residual"]["sd"], sig_digits=4)


def test_pig_intercept_stata() -> None:
    fit = fitted("pig_intercept")
    check_converged(fit)
    ref = "pig__ri_ml"
    assert_close("loglik", fit.loglik, load_reference(ref, "loglik"), abs_tol=1e-3)
    for ours, theirs in (("week", "week"), ("Intercept", "_cons")):
        assert_close(ours, value(fit, ours), load_reference(ref, "fixed_effects", theirs, "estimate"), sig_digits=4)
        assert_close(f"se({ours})", fixed_se(fit, ours), load_reference(ref, "fixed_effects", theirs, "se"),
                     sig_digits=4)
    for ours, theirs in (("sd(_cons)@pig", "id: "), ("sd(Residual)", "")):
        sd = value(fit, ours)
        target = load_reference(ref, "variance_components", f"{theirs}sd{ours[2:].split('@')[0]}", "estimate")
        assert_close(ours, sd, target, sig_digits=4)
        var_se = load_reference(ref, "variance_components", f"{theirs}var{ours[2:].split('@')[0]}", "se")
        assert_close(f"se(var) from {ours}", 2 * sd * se(fit, ours), var_se, sig_digits=3)
    lr = fit.extras["lr_test"]
    assert lr["kind"] == "chibar2" and lr["df"] == 1
    assert_close("LR chibar2", lr["chi2"], load_reference(ref, "other", "LR test vs linear regression chibar2(01)"),
                 abs_tol=0.01)


def test_pig_slope_independent_stata() -> None:
    fit = fitted("pig_slope")
    check_converged(fit)
    ref = "pig__rs_ind_ml"
    assert_close("loglik", fit.loglik, load_reference(ref, "loglik"), abs_tol=1e-3)
    for ours, theirs in (("sd(week)@pig", "id: sd(week)"), ("sd(_cons)@pig", "id: sd(_cons)"),
                         ("sd(Residual)", "sd(Residual)")):
        assert_close(ours, value(fit, ours), load_reference(ref, "variance_components", theirs, "estimate"),
                     sig_digits=4)
    lr = fit.extras["lr_test"]
    assert lr["kind"] == "chi2" and lr["df"] == 2 and "conservative" in lr["note"]


def test_pig_slope_unstructured_stata() -> None:
    fit = fitted("pig_slope_unstructured")
    check_converged(fit)
    ref = "pig__rs_un_ml"
    assert_close("loglik", fit.loglik, load_reference(ref, "loglik"), abs_tol=1e-3)
    # Only the log likelihood is published; the SDs are statsmodels' fit on the same data (our_reproduction).
    for ours, theirs in (("sd(_cons)@pig", "sd(_cons)"), ("sd(week)@pig", "sd(week)"), ("sd(Residual)", "sd(Residual)")):
        assert_close(ours, value(fit, ours), load_reference(ref, "our_reproduction", theirs), sig_digits=4)


def test_pig_slope_reml_stata() -> None:
    fit = fitted("pig_slope_reml")
    check_converged(fit)
    assert fit.method == "REML"
    assert_close("restricted loglik", fit.loglik, load_reference("pig__rs_ind_reml", "loglik"), abs_tol=1e-3)


def test_pig_crossed_stata() -> None:
    fit = fitted("pig_crossed")
    check_converged(fit)
    ref = "pig__crossed_ml"
    # Stata prints this log likelihood to 3 decimals (-1013.824), so within 1e-3 of the printed value.
    assert_close("loglik", fit.loglik, load_reference(ref, "loglik"), abs_tol=1e-3)
    for ours, theirs in (("sd(_cons)@week", "_all: sd(R.week)"), ("sd(_cons)@pig", "_all: sd(R.id)"),
                         ("sd(Residual)", "sd(Residual)")):
        assert_close(ours, value(fit, ours), load_reference(ref, "variance_components", theirs, "estimate"),
                     sig_digits=4)


def test_productivity_nested_lme4() -> None:
    fit = fitted("productivity")
    check_lme4(fit, "productivity__nested_ri_ml", {"state:region": "state", "region": "region"})
    # The Stata manual prints 1430.5017; lme4 on our copy of the data gives 1430.50159 (see the file's notes).
    assert_close("published loglik", fit.loglik, 1430.5017, abs_tol=1e-3)


def test_productivity_nested_reml_lme4() -> None:
    fit = fitted("productivity_reml")
    assert fit.method == "REML"
    check_lme4(fit, "productivity__nested_ri_reml", {"state:region": "state", "region": "region"})
    assert_close("published restricted loglik", fit.loglik,
                 load_reference("productivity__nested_ri_reml", "published_comparison", "comparisons", 0, "published"),
                 abs_tol=1e-3)


def test_productivity_blocks_stata() -> None:
    fit = fitted("productivity_blocks")
    check_converged(fit)
    # Stata [ME] mixed manual, productivity example with a region-level identity block on hwy and unemp
    # (xtmixed gsp private emp hwy water other unemp || region: hwy unemp, cov(identity) || region: || state:, mle):
    # log likelihood 1447.6784, as quoted in issue 2; no reference file exists for this model. Our fit on our
    # copy of the data gives 1447.6782, the same ~1e-4 data-precision offset as productivity__nested_ri_ml.
    assert_close("loglik", fit.loglik, 1447.6784, abs_tol=1e-3)
    assert value(fit, "sd(hwy)@region") == value(fit, "sd(unemp)@region")


def test_gcse_slope_lme4() -> None:
    check_lme4(fitted("gcse_slope"), "exam__gcse_rs_ml_nstu_gt4", {"school": "school"})


def test_hsb_slope_lme4() -> None:
    check_lme4(fitted("hsb_slope"), "hsb82__cses_rs_ml", {"school": "school"})


def test_sleepstudy_lme4() -> None:
    check_lme4(fitted("sleepstudy"), "sleepstudy__rs_ml", {"Subject": "subject"})


def test_penicillin_crossed_lme4() -> None:
    check_lme4(fitted("penicillin"), "penicillin__crossed_ml", {"plate": "plate", "sample": "sample"})


ISSUE2 = ["pig_intercept", "pig_slope", "pig_slope_unstructured", "pig_slope_reml", "pig_crossed", "productivity",
          "productivity_reml", "productivity_blocks", "gcse_slope", "hsb_slope", "sleepstudy", "penicillin"]


@pytest.mark.parametrize("spec", ISSUE2)
def test_fit_is_fast(spec: str) -> None:
    """Issue 2: every in-process fit under 0.5 s (lme4: 0.02-0.3 s); best of three to ride out machine load."""
    model = prepare(SPECS / f"{spec}.yaml").model
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fit_gaussian(model)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.5, f"{spec}: fastest of 3 fits took {min(times):.3f} s"
