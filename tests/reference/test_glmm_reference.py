"""Issue 3: GLMMs by adaptive quadrature / Laplace against lme4, glmmTMB and ordinal::clmm.

Targets come from tests/reference/*.json (each file holds the peer's exact R
call; the specs repeat it in their description). Tolerances:

- log likelihood within 1e-3 absolute where the peer used the same method and
  points (our optimum is converged to ~1e-8; the 1e-3 covers two documented
  peer quirks: lme4's Laplace log-determinant, 2.8e-4 below glmmTMB's and ours
  on cbpp, and the abortion_socatt two-level file, whose saturated-model term
  was added rounded to -809.5198 instead of -809.51999, 1.9e-4);
- estimates to 4 significant digits against the same method and points (the
  peers' tightened optimisers pin them to 5-6 digits), 3 digits across methods
  (lme4's Laplace vs ours);
- SEs to 3 significant digits (observed information by numeric differences on
  both sides).
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from mlmrun.estimate import estimate
from mlmrun.likelihood.gaussian.deviance import exact_loglik
from mlmrun.pipeline import prepare
from mlmrun.report.format import z_and_p
from mlmrun.results import FitResult
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference, loglik_tolerance, printed_half_unit
from tests.reference.test_lmm_reference import REFERENCE_DATA

pytestmark = pytest.mark.reference


@cache
def fitted(spec: str) -> FitResult:
    """Fit a shipped spec once per test session."""
    return estimate(prepare(SPECS / f"{spec}.yaml").model)


@cache
def fitted_text(text: str) -> FitResult:
    """Fit a spec given as YAML text whose data path points into the shipped data folder (once per session)."""
    path = Path(tempfile.mkdtemp(prefix="mlmrun-ref-")) / "model.yaml"
    path.write_text(text.replace("REFDATA/", f"{REFERENCE_DATA}/").replace("DATA/", f"{SPECS / 'data'}/"))
    return estimate(prepare(path, allow_outside_data=True).model)


def value(fit: FitResult, name: str) -> float:
    return float(fit.values[fit.model.partable.index(name)])


def se(fit: FitResult, name: str) -> float:
    return float(fit.se()[fit.model.partable.index(name)])


def lme4_name(name: str, factors: dict[str, str]) -> str:
    """lme4/clmm coefficient name -> ours (treatment-coded factors are 'C(f)[T.level]' or 'f[T.level]')."""
    if name == "(Intercept)":
        return "Intercept"
    if ":" in name:
        return ":".join(lme4_name(part, factors) for part in name.split(":"))
    for prefix, ours in factors.items():
        if name.startswith(prefix) and name != prefix:
            return f"{ours}[T.{name[len(prefix):]}]"
    return name


def check_peer(fit: FitResult, file: str, factors: dict[str, str], level: str, digits: int = 4,
               se_digits: int | None = 3, loglik_tol: float | None = None) -> None:
    """Compare with a peer's results file; the log likelihood to the file's own precision unless told otherwise."""
    res = load_reference(file, "results")
    assert fit.converged, fit.warnings
    tol = loglik_tolerance(res["loglik"]) if loglik_tol is None else loglik_tol
    assert_close(f"{file} loglik", fit.loglik, res["loglik"], abs_tol=tol)
    for fe in res["fixed_effects"]:
        ours = lme4_name(fe["name"], factors)
        assert_close(f"{file} {ours}", value(fit, ours), fe["estimate"], sig_digits=digits)
        if se_digits:
            assert_close(f"{file} se({ours})", se(fit, ours), fe["se"], sig_digits=se_digits)
            z, p = z_and_p(value(fit, ours), se(fit, ours))
            if "z" in fe:
                assert_close(f"{file} z({ours})", z, fe["z"], sig_digits=se_digits)
            assert p == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9, abs=1e-300)
    sd = res["random_effects"][0]["components"][0]["sd"]
    assert_close(f"{file} sd(_cons)@{level}", value(fit, f"sd(_cons)@{level}"), sd, sig_digits=digits)


def test_cbpp_agq25_lme4() -> None:
    fit = fitted("cbpp")
    assert fit.integration == {"method": "adaptive", "points": 25}
    check_peer(fit, "cbpp__agq25", {"period": "C(period)"}, "herd")


def test_cbpp_laplace_glmmtmb_and_lme4() -> None:
    fit = fitted("cbpp_laplace")
    assert fit.integration == {"method": "laplace", "points": 1}
    check_peer(fit, "cbpp__glmmtmb_laplace", {"period": "C(period)"}, "herd", loglik_tol=1e-6)
    # lme4's Laplace log likelihood sits 2.9e-4 below ours (its log-determinant); glmmTMB's pins ours to 1e-6 above.
    check_peer(fit, "cbpp__laplace", {"period": "C(period)"}, "herd", digits=3, se_digits=None, loglik_tol=1e-3)


def test_epil_agq20_lme4() -> None:
    check_peer(fitted("epil"), "epil__ri_agq20", {"trt": "trt"}, "subject")


def epil(fixed: str, integration: str) -> str:
    return f"""
name: epil
data: {{path: DATA/epil.csv}}
levels: [{{name: subject, id: subject}}]
responses: [{{name: y, family: poisson, link: log}}]
fixed: "{fixed}"
random: [{{level: subject, terms: [1]}}]
estimation: {{integration: {integration}}}
"""


LME4_LAPLACE = dict(digits=3, se_digits=2, loglik_tol=1e-3)
"""lme4's Laplace (nAGQ = 1) against ours: the log likelihoods differ by 2.5e-4 and 3.6e-4 on epil
(ours higher; lme4's Laplace log-determinant, as on cbpp, documented in cbpp__glmmtmb_laplace),
which moves estimates in the 4th digit (Intercept 0.56389 vs 0.56406) and lme4's SEs, from a
finite-difference Hessian of that deviance, by up to 0.2% (se(Intercept) 0.40782 vs 0.40697): 3
digits for estimates, 2 for SEs and z. The likelihood itself is pinned independently below."""


@pytest.mark.parametrize(("file", "fixed", "integration", "tolerances"), [
    ("epil__ri_laplace", "y ~ trt + base + age + V4", "{method: laplace}", LME4_LAPLACE),
    ("epil__bc_ri_laplace", "y ~ lbase * trt + lage + V4", "{method: laplace}", LME4_LAPLACE),
    ("epil__bc_ri_agq20", "y ~ lbase * trt + lage + V4", "{method: adaptive, points: 20}", {}),
])
def test_epil_lme4(file: str, fixed: str, integration: str, tolerances: dict) -> None:
    """epil (MASS): Poisson random subject intercept; model II of Breslow & Clayton with lbase * trt."""
    fit = fitted_text(epil(fixed, integration))
    assert fit.integration["method"] == integration.split()[1].rstrip(",}")
    check_peer(fit, file, {"trt": "trt"}, "subject", **tolerances)


@pytest.mark.parametrize(("file", "fixed"), [("epil__ri_laplace", "y ~ trt + base + age + V4"),
                                             ("epil__bc_ri_laplace", "y ~ lbase * trt + lage + V4"),
                                             ("epil__bc_ri_agq20", "y ~ lbase * trt + lage + V4")])
def test_epil_loglik_at_lme4_estimates_is_the_integrated_likelihood(file: str, fixed: str) -> None:
    """Each file integrates the marginal likelihood at lme4's estimates (stats::integrate, rel.tol 1e-11);
    ours at the same values (all fixed, 30 adaptive points) must agree to 1e-6."""
    res = load_reference(file, "results")
    fix = {lme4_name(fe["name"], {"trt": "trt"}): fe["estimate"] for fe in res["fixed_effects"]}
    fix["sd(_cons)@subject"] = res["random_effects"][0]["components"][0]["sd"]
    constraints = ", ".join(f'"{name}": {val!r}' for name, val in fix.items())
    fit = fitted_text(epil(fixed, "{method: adaptive, points: 30}") + f"constraints: {{fix: {{{constraints}}}}}\n")
    assert fit.n_params == 0
    exact = res["direct_integration_check"]["exact_marginal_loglik_at_estimates"]
    assert_close(f"{file} integrated loglik at lme4's estimates", fit.loglik, exact, abs_tol=1e-6)


def test_epilep_galamm_and_lme4_laplace() -> None:
    """galamm's epilep (Skrondal & Rabe-Hesketh sec. 11.3), Poisson random intercept, Laplace as galamm
    and lme4: log likelihood at galamm's 1 printed decimal, estimates at galamm's printed digits (4-5
    significant), the variance at its 4 printed decimals; lme4's glmer on the same data at its 4. SEs
    to 3 digits: galamm's come from its own Hessian of the Laplace objective and v4's differs from
    ours by 1.1e-4 relative (0.054574 vs 0.05458; lme4 prints 0.0543, a third Hessian)."""
    fit = fitted_text("""
name: epilep
data: {path: REFDATA/epilep.csv}
levels: [{name: subj, id: subj}]
responses: [{name: y, family: poisson, link: log}]
fixed: "y ~ lbas * treat + lage + v4"
random: [{level: subj, terms: [1]}]
estimation: {integration: {method: laplace}}
""")
    assert fit.converged, fit.warnings
    ref = load_reference("epilep__poisson_ri_laplace")
    assert_close("epilep loglik (1 decimal)", fit.loglik, ref["loglik"], abs_tol=0.05)
    for name, fe in ref["fixed_effects"].items():
        ours = lme4_name(name, {})
        assert_close(f"epilep {ours}", value(fit, ours), fe["estimate"], abs_tol=printed_half_unit(fe["estimate"]))
        assert_close(f"epilep se({ours})", se(fit, ours), fe["se"], sig_digits=3)
    var = ref["variance_components"]["subj (Intercept)"]
    assert_close("epilep variance", value(fit, "sd(_cons)@subj") ** 2, var["variance"], abs_tol=5e-5)
    assert_close("epilep sd", value(fit, "sd(_cons)@subj"), var["sd"], abs_tol=5e-5)
    lme4 = ref["other"]["lme4_glmer"]
    assert_close("lme4 AIC (1 decimal)", fit.aic, lme4["AIC"], abs_tol=0.05)
    assert_close("lme4 variance", value(fit, "sd(_cons)@subj") ** 2, lme4["var"], abs_tol=5e-4)


@pytest.mark.parametrize(("spec", "file"), [("wine_logit", "wine__clmm_logit_agq10"),
                                            ("wine_probit", "wine__clmm_probit_agq10"),
                                            ("wine_logit_laplace", "wine__clmm_logit_laplace")])
def test_wine_clmm(spec: str, file: str) -> None:
    if spec.endswith("_laplace"):
        text = (SPECS / "wine_logit.yaml").read_text().replace("data/", "DATA/")
        fit = fitted_text(text.replace("{method: adaptive, points: 10}", "{method: laplace}"))
        assert fit.integration == {"method": "laplace", "points": 1}
    else:
        fit = fitted(spec)
    # ordinal's clmm Laplace agrees with ours to 3.5e-6 (its own Laplace optimum), the AGQ fits to 1e-10.
    check_peer(fit, file, {"temp": "temp", "contact": "contact"}, "judge", loglik_tol=1e-5 if spec.endswith("_laplace") else None)
    for j, cut in enumerate(load_reference(file, "results", "thresholds")):
        assert_close(f"{file} {cut['name']}", value(fit, f"cut{j + 1}"), cut["estimate"], sig_digits=4)
        assert_close(f"{file} se({cut['name']})", se(fit, f"cut{j + 1}"), cut["se"], sig_digits=3)


def check_socatt(fit: FitResult, entry: str, digits: int, loglik_tol: float) -> None:
    ref = load_reference("abortion_socatt__binomial_ri", "models", entry)
    assert fit.converged, fit.warnings
    assert_close(f"{entry} loglik", fit.loglik, ref["loglik"], abs_tol=loglik_tol)
    for name, target in ref["fixed"].items():
        assert_close(f"{entry} {name}", value(fit, lme4_name(name, {"year": "C(year)"})), target, sig_digits=digits)
    for level, var in ref.get("variances", {}).items():
        assert_close(f"{entry} var({level})", value(fit, f"sd(_cons)@{level}") ** 2, var, sig_digits=digits - 1)


def test_abortion_socatt_two_level_agq20_lme4() -> None:
    fit = fitted("abortion_socatt_2level")
    check_socatt(fit, "two_level_agq20", 4, 1e-3)
    ref = load_reference("abortion_socatt__binomial_ri", "models", "two_level_agq20", "se")
    for name, target in ref.items():
        assert_close(f"se({name})", se(fit, lme4_name(name, {"year": "C(year)"})), target, sig_digits=3)


def test_abortion_socatt_three_level_laplace_lme4_and_glmmtmb() -> None:
    fit = fitted("abortion_socatt_laplace")
    # 0.5 against lme4's Laplace (its log-determinant quirk, module docstring) only because glmmTMB's
    # Laplace value of the same model pins the log likelihood to 1e-5 just below.
    check_socatt(fit, "three_level_laplace", 3, 0.5)
    tmb = load_reference("abortion_socatt__binomial_ri", "models", "three_level_glmmtmb_laplace")
    assert_close("glmmTMB loglik", fit.loglik, tmb["loglik"], abs_tol=1e-5)
    for name, target in tmb["fixed"].items():
        assert_close(f"glmmTMB {name}", value(fit, lme4_name(name, {"year": "C(year)"})), target, sig_digits=4)


def test_abortion_socatt_three_level_agq12_point_check() -> None:
    fit = fitted("abortion_socatt")
    assert fit.converged, fit.warnings
    check = fit.extras["point_check"]
    assert set(check["loglik"]) == {"12", "16"}
    assert abs(check["loglik"]["16"] - check["loglik"]["12"]) < 0.01
    assert not any("point check" in w for w in fit.warnings)
    laplace = load_reference("abortion_socatt__binomial_ri", "models", "three_level_laplace", "loglik")
    assert fit.loglik > laplace  # the Laplace approximation understates this likelihood, as on two levels
    assert set(fit.extras["empirical_bayes"]) == {"respondent", "district"}


def test_gaussian_through_quadrature_reproduces_the_exact_fit() -> None:
    fit = fitted("pig_intercept_quadrature")
    assert fit.converged and fit.integration == {"method": "adaptive", "points": 20}
    exact = fitted("pig_intercept")
    assert fit.loglik == pytest.approx(exact.loglik, abs=1e-6)
    np.testing.assert_allclose(fit.values, exact.values, rtol=1e-4)
    stata = load_reference("pig__ri_ml", "loglik")
    assert_close("pig loglik (Stata)", fit.loglik, stata, abs_tol=loglik_tolerance(stata))
    assert fit.loglik == pytest.approx(exact_loglik(fit.model, fit.values), abs=1e-8)
