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

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from mlmrun.estimate.gaussian_fit import fit_gaussian
from mlmrun.pipeline import prepare
from mlmrun.report.format import z_and_p
from mlmrun.results import FitResult
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference, loglik_tolerance

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


REFERENCE_DATA = Path(__file__).resolve().parent / "data"
"""Data read only by reference tests (tests/reference/data/README.md)."""


@cache
def fitted_text(text: str) -> FitResult:
    """Fit a spec given as YAML text whose data path points into the shipped data folder (once per session)."""
    path = Path(tempfile.mkdtemp(prefix="mlmrun-ref-")) / "model.yaml"
    path.write_text(text.replace("REFDATA/", f"{REFERENCE_DATA}/").replace("DATA/", f"{SPECS / 'data'}/"))
    return fit_gaussian(prepare(path, allow_outside_data=True).model)


def fixed_combination(fit: FitResult, weights: dict[str, float]) -> tuple[float, float]:
    """Estimate and SE of a linear combination of fixed effects (a peer's other reference category)."""
    names = fit.extras["fixed_names"]
    c = np.array([weights.get(n, 0.0) for n in names])
    est = float(c @ np.array([value(fit, n) for n in names]))
    return est, float(np.sqrt(c @ np.asarray(fit.extras["fixed_vcov"]) @ c))


def check_converged(fit: FitResult) -> None:
    assert fit.converged, fit.warnings
    assert fit.integration == {"method": "exact", "points": None}


def check_lme4(fit: FitResult, file: str, levels: dict[str, str],
               combinations: dict[str, dict[str, float]] | None = None) -> None:
    """Compare with an lme4 reference file (results.* layout); `levels` maps lme4 group names to ours.

    `combinations` gives lme4 coefficients that are linear combinations of ours (another
    reference category). Also the Wald statistic: our z = estimate / SE against lme4's t to
    4 digits, and the report's two-sided p-value against scipy's from our z.
    """
    res = load_reference(file, "results")
    check_converged(fit)
    assert_close(f"{file} loglik", fit.loglik, res["loglik"], abs_tol=loglik_tolerance(res["loglik"]))
    for fe in res["fixed_effects"]:
        ours = "Intercept" if fe["name"] == "(Intercept)" else fe["name"]
        if combinations and fe["name"] in combinations:
            est, se_ = fixed_combination(fit, combinations[fe["name"]])
        else:
            est, se_ = value(fit, ours), fixed_se(fit, ours)
        assert_close(f"{file} {ours}", est, fe["estimate"], sig_digits=4)
        assert_close(f"{file} se({ours})", se_, fe["se"], sig_digits=4)
        z, p = z_and_p(est, se_)
        assert_close(f"{file} t({ours})", z, fe["t"], sig_digits=4)
        assert p == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9, abs=1e-300)
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
    assert_close("loglik", fit.loglik, load_reference(ref, "loglik"), abs_tol=loglik_tolerance(load_reference(ref, "loglik")))
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
    assert_close("loglik", fit.loglik, load_reference(ref, "loglik"), abs_tol=loglik_tolerance(load_reference(ref, "loglik")))
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
    assert_close("loglik", fit.loglik, load_reference(ref, "loglik"), abs_tol=loglik_tolerance(load_reference(ref, "loglik")))
    # Only the log likelihood is published; the SDs are statsmodels' fit on the same data (our_reproduction).
    for ours, theirs in (("sd(_cons)@pig", "sd(_cons)"), ("sd(week)@pig", "sd(week)"), ("sd(Residual)", "sd(Residual)")):
        assert_close(ours, value(fit, ours), load_reference(ref, "our_reproduction", theirs), sig_digits=4)


def test_pig_slope_reml_stata() -> None:
    fit = fitted("pig_slope_reml")
    check_converged(fit)
    assert fit.method == "REML"
    assert_close("restricted loglik", fit.loglik, load_reference("pig__rs_ind_reml", "loglik"), abs_tol=loglik_tolerance(load_reference("pig__rs_ind_reml", "loglik")))


def test_pig_crossed_stata() -> None:
    fit = fitted("pig_crossed")
    check_converged(fit)
    ref = "pig__crossed_ml"
    # Stata prints this log likelihood to 3 decimals (-1013.824): half a unit of that.
    assert_close("loglik", fit.loglik, load_reference(ref, "loglik"), abs_tol=loglik_tolerance(load_reference(ref, "loglik")))
    for ours, theirs in (("sd(_cons)@week", "_all: sd(R.week)"), ("sd(_cons)@pig", "_all: sd(R.id)"),
                         ("sd(Residual)", "sd(Residual)")):
        assert_close(ours, value(fit, ours), load_reference(ref, "variance_components", theirs, "estimate"),
                     sig_digits=4)


DATA_PRECISION_OFFSET = 2.5e-4
"""Stata's productivity log likelihoods against ours on our copy of the data: offsets of 0.6e-4 to 2.0e-4
(productivity__nested_ri_ml.json's notes), so a quarter of a thousandth and no more."""


def test_productivity_nested_lme4() -> None:
    fit = fitted("productivity")
    check_lme4(fit, "productivity__nested_ri_ml", {"state:region": "state", "region": "region"})
    # The Stata manual prints 1430.5017; lme4 on our copy of the data gives 1430.50159 (see the file's notes).
    published = load_reference("productivity__nested_ri_ml", "published_comparison", "comparisons", 0)
    assert published["quantity"] == "loglik"
    # Within the documented data-precision offset (1.1e-4); lme4 on our copy pins the likelihood to 1e-6 above.
    assert_close("published loglik", fit.loglik, published["published"], abs_tol=DATA_PRECISION_OFFSET)


def test_productivity_nested_reml_lme4() -> None:
    fit = fitted("productivity_reml")
    assert fit.method == "REML"
    check_lme4(fit, "productivity__nested_ri_reml", {"state:region": "state", "region": "region"})
    assert_close("published restricted loglik", fit.loglik,
                 load_reference("productivity__nested_ri_reml", "published_comparison", "comparisons", 0, "published"),
                 abs_tol=DATA_PRECISION_OFFSET)


def test_productivity_blocks_stata() -> None:
    fit = fitted("productivity_blocks")
    check_converged(fit)
    # Stata [ME] mixed manual, productivity example with a region-level identity block on hwy and unemp
    # (xtmixed gsp private emp hwy water other unemp || region: hwy unemp, cov(identity) || region: || state:, mle):
    # log likelihood 1447.6784, as quoted in issue 2; no reference file exists for this model. Our fit on our
    # copy of the data gives 1447.6782, the same ~1e-4 data-precision offset as productivity__nested_ri_ml.
    assert_close("loglik", fit.loglik, 1447.6784, abs_tol=DATA_PRECISION_OFFSET)
    assert value(fit, "sd(hwy)@region") == value(fit, "sd(unemp)@region")


def test_gcse_slope_lme4() -> None:
    check_lme4(fitted("gcse_slope"), "exam__gcse_rs_ml_nstu_gt4", {"school": "school"})


def test_hsb_slope_lme4() -> None:
    check_lme4(fitted("hsb_slope"), "hsb82__cses_rs_ml", {"school": "school"})


def test_sleepstudy_lme4() -> None:
    check_lme4(fitted("sleepstudy"), "sleepstudy__rs_ml", {"Subject": "subject"})


def test_penicillin_crossed_lme4() -> None:
    check_lme4(fitted("penicillin"), "penicillin__crossed_ml", {"plate": "plate", "sample": "sample"})


REML_SLEEPSTUDY = """
name: sleepstudy_reml
data: {path: DATA/sleepstudy.csv}
levels: [{name: subject, id: Subject}]
responses: [{name: Reaction, family: gaussian}]
fixed: "Reaction ~ Days"
random: [{level: subject, terms: [1, Days], covariance: unstructured}]
estimation: {method: REML}
"""


def test_sleepstudy_reml_lme4() -> None:
    fit = fitted_text(REML_SLEEPSTUDY)
    assert fit.method == "REML"
    check_lme4(fit, "sleepstudy__rs_reml", {"Subject": "subject"})


def test_penicillin_crossed_reml_lme4() -> None:
    fit = fitted_text("""
name: penicillin_reml
data: {path: DATA/penicillin.csv}
levels: [{name: plate, id: plate, crossed: true}, {name: sample, id: sample, crossed: true}]
responses: [{name: diameter, family: gaussian}]
fixed: "diameter ~ 1"
random: [{level: plate, terms: [1]}, {level: sample, terms: [1]}]
estimation: {method: REML}
""")
    assert fit.method == "REML"
    check_lme4(fit, "penicillin__crossed_reml", {"plate": "plate", "sample": "sample"})


def hsb(fixed: str, method: str) -> str:
    return f"""
name: hsb
data: {{path: DATA/hsb82.csv}}
levels: [{{name: school, id: school}}]
responses: [{{name: mAch, family: gaussian}}]
fixed: "{fixed}"
random: [{{level: school, terms: [1]}}]
estimation: {{method: {method}}}
"""


@pytest.mark.parametrize(("file", "fixed", "method"), [
    ("hsb82__null_ri_ml", "mAch ~ 1", "ML"),
    ("hsb82__meanses_ri_ml", "mAch ~ meanses", "ML"),
    ("hsb82__meanses_ri_reml", "mAch ~ meanses", "REML"),
])
def test_hsb82_random_intercept_lme4(file: str, fixed: str, method: str) -> None:
    fit = fitted_text(hsb(fixed, method))
    assert fit.method == method
    check_lme4(fit, file, {"school": "school"})


def test_hsb12_null_reml_stata() -> None:
    """Stata's printed REML fit of the same null model (Singer 1998; hsb12.dta = hsb82's rows):
    log restricted-likelihood to its 3 printed decimals, _cons to its 7 printed digits, its SE to 6,
    var(Residual) to 6 and the variance SEs (delta method from our SD SEs) to 5. var(_cons) agrees
    to 5 digits only (8.614025 vs 8.614034, 1.1e-6 relative): the restricted likelihood is flat to
    1e-9 over that step, within Stata's default convergence tolerance, while every other number
    agrees to 6-7 digits."""
    fit = fitted_text(hsb("mAch ~ 1", "REML"))
    ref = load_reference("hsb12__null_reml")
    assert_close("hsb12 restricted loglik", fit.loglik, ref["loglik"], abs_tol=5e-4)
    assert_close("hsb12 _cons", value(fit, "Intercept"), ref["fixed_effects"]["_cons"]["estimate"], sig_digits=7)
    assert_close("hsb12 se(_cons)", fixed_se(fit, "Intercept"), ref["fixed_effects"]["_cons"]["se"], sig_digits=6)
    for ours, theirs, digits in (("sd(_cons)@school", "school: var(_cons)", 5), ("sd(Residual)", "var(Residual)", 6)):
        sd = value(fit, ours)
        assert_close(theirs, sd**2, ref["variance_components"][theirs]["estimate"], sig_digits=digits)
        assert_close(f"se {theirs}", 2 * sd * se(fit, ours), ref["variance_components"][theirs]["se"], sig_digits=5)


def exam(fixed: str, terms: str, method: str, nstu_gt4: bool) -> str:
    where = ', filter: [{column: nstu, op: ">", value: 4}]' if nstu_gt4 else ""
    return f"""
name: exam
data: {{path: DATA/exam.csv{where}}}
levels: [{{name: school, id: school}}]
responses: [{{name: {fixed.split()[0]}, family: gaussian}}]
fixed: "{fixed}"
random: [{{level: school, terms: {terms}, covariance: unstructured}}]
estimation: {{method: {method}}}
"""


SCHGEND_VS_MIXED = {"(Intercept)": {"Intercept": 1.0, "C(schgend)[T.mixed]": 1.0},
                    "schgendboys": {"C(schgend)[T.mixed]": -1.0},
                    "schgendgirls": {"C(schgend)[T.girls]": 1.0, "C(schgend)[T.mixed]": -1.0}}
"""lme4's schgend contrasts (reference 'mixed') from ours (reference 'boys', the first in sorted order)."""


@pytest.mark.parametrize(("file", "fixed", "terms", "method", "nstu_gt4"), [
    ("exam__ri_ml", "normexam ~ standLRT", "[1]", "ML", False),
    ("exam__rs_ml", "normexam ~ standLRT", "[1, standLRT]", "ML", False),
    ("exam__gcse_ri_ml_nstu_gt4", "gcse ~ lrt", "[1]", "ML", True),
    ("exam__gcse_ri_reml_nstu_gt4", "gcse ~ lrt", "[1]", "REML", True),
    ("exam__gcse_schgend_ri_reml_nstu_gt4", "gcse ~ lrt + C(schgend)", "[1]", "REML", True),
    ("exam__gcse_schgend_rs_reml_nstu_gt4", "gcse ~ lrt + C(schgend)", "[1, lrt]", "REML", True),
])
def test_exam_lme4(file: str, fixed: str, terms: str, method: str, nstu_gt4: bool) -> None:
    fit = fitted_text(exam(fixed, terms, method, nstu_gt4))
    assert fit.method == method
    assert fit.n_obs == load_reference(file, "results", "nobs")
    check_lme4(fit, file, {"school": "school"}, SCHGEND_VS_MIXED if "schgend" in fixed else None)


@pytest.mark.parametrize(("file", "method"), [("ovary__ri_ml", "ML"), ("ovary__ri_reml", "REML")])
def test_ovary_random_intercept_lme4(file: str, method: str) -> None:
    """nlme's Ovary: follicles on a first-order Fourier term in the cycle time, random mare intercept."""
    fit = fitted_text(f"""
name: ovary
data: {{path: REFDATA/ovary.csv}}
levels: [{{name: mare, id: mare}}]
responses: [{{name: follicles, family: gaussian}}]
fixed: "follicles ~ sin1 + cos1"
random: [{{level: mare, terms: [1]}}]
estimation: {{method: {method}}}
""")
    assert fit.method == method
    check_lme4(fit, file, {"mare": "mare"})
