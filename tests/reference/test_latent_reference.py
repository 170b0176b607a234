"""Issue 4: latent-variable specs against ltm, lavaan, nlme, PLmixed, galamm and gllamm.

Targets come from tests/reference/*.json. Agreement asked for, and why:

- log likelihood within 1e-3 where the peer used the same method, or at the
  peer's printed precision (half a unit in its last printed decimal) when it
  prints fewer decimals (nlme/PLmixed/gllamm print 2, galamm 1-3);
- estimates to the peer's printed significant digits, except where the peer's
  own optimum is visibly less converged than the printed digits (ltm: its
  estimates differ from an independent 4801-point grid fit and from ours in
  the 4th digit while both of those agree to 4 digits; PLmixed vs galamm on
  kypssim: the two peers differ in the 4th-5th digit) -- then one digit less,
  with the reason at the assertion;
- across methods (galamm's Laplace vs our adaptive quadrature on diet) a
  fraction of the peer's standard error.

mresp (galamm's mixed-response vignette) lives in test_mresp_reference.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.results import FitResult, parameter_rows
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference, loglik_tolerance
from tests.reference.test_glmm_reference import fitted, fitted_text, value

pytestmark = pytest.mark.reference


def row_se(fit: FitResult, name: str) -> float:
    """SE as results.json reports it (exact path: fixed effects from the GLS vcov)."""
    return next(r.se for r in parameter_rows(fit) if r.name == name)


def printed(decimals: int) -> float:
    """Half a unit in the last printed decimal: the tolerance of a value printed to `decimals` places."""
    return 0.5 * 10.0 ** -decimals


def test_lsat_2pl_ltm() -> None:
    """ltm 2PL (21-point Gauss-Hermite): discrimination = loading, difficulty = -intercept / loading.

    ltm's printed estimates differ from ours by up to 6.4e-4 (i5 discrimination, 0.003 of its
    SE; i5 difficulty 2.3e-3, also 0.003 SE) while the independent 4801-point grid fit recorded in
    the same file agrees with ours to 4 digits, and a 21-point non-adaptive fit of ours gives the
    same estimates as the adaptive one: ltm's optimiser stopped early (its log likelihood agrees
    at its 3 printed decimals). Against ltm the estimates are compared within 0.005 of ltm's own
    SE and the SEs to 3 digits; against the grid fit to 4 significant digits.
    """
    fit = fitted("lsat_2pl")
    assert fit.converged, fit.warnings
    ref = load_reference("lsat__2pl")
    assert_close("lsat loglik (ltm, 3 decimals)", fit.loglik, ref["loglik"], abs_tol=printed(3))
    assert_close("lsat loglik (grid)", fit.loglik, ref["our_reproduction"]["loglik"], abs_tol=printed(4))
    items = ["i1", "i2", "i3", "i4", "i5"]
    a = np.array([value(fit, f"loading(ability->{i})") for i in items])
    b = -np.array([value(fit, f"C(item)[{i}]") for i in items]) / a
    irt = ref["item_parameters_IRT"]
    for name, ours in (("Dscrmn", a), ("Dffclt", b)):
        for i, est in zip(items, ours, strict=True):
            target, target_se = irt[name][i]
            assert_close(f"{name} {i} (ltm)", est, target, abs_tol=0.005 * target_se)
    assert_close("se(Dscrmn) (ltm)", [row_se(fit, f"loading(ability->{i})") for i in items],
                 [irt["Dscrmn"][i][1] for i in items], sig_digits=3)
    assert_close("Dscrmn (grid)", a, ref["our_reproduction"]["Dscrmn"], sig_digits=4)
    assert_close("Dffclt (grid)", b, ref["our_reproduction"]["Dffclt"], sig_digits=4)


def test_holzinger_swineford_lavaan_meanstructure() -> None:
    """lavaan cfa(meanstructure = TRUE): our spec estimates the nine test intercepts (`0 + C(test)`),
    i.e. lavaan's mean structure with latent means 0 -- 30 parameters, as in that file (the file
    without mean structure has 21, the same log likelihood and the same other estimates).
    SEs are not compared: lavaan's default uses the expected information, ours the observed.
    """
    fit = fitted("holzinger_swineford")
    assert fit.converged, fit.warnings
    res = load_reference("holzinger_swineford__cfa3_ml_meanstructure", "results")
    assert fit.n_params == res["n_parameters"] == 30
    assert_close("HS loglik", fit.loglik, res["loglik"], abs_tol=loglik_tolerance(res["loglik"]))
    for p in res["parameters"]:
        if p["op"] == "~1" and p["lhs"] in FACTORS:
            continue  # latent means fixed at 0 in both
        assert_close(f"HS {p['lhs']} {p['op']} {p['rhs']}", lavaan_value(fit, p), p["estimate"], sig_digits=4)


def test_holzinger_swineford_lavaan_without_meanstructure() -> None:
    """lavaan cfa() without mean structure (21 parameters): the means are saturated, so the log
    likelihood and every loading and (co)variance are those of our 30-parameter fit with the nine
    test intercepts; compared at the same precision as with mean structure."""
    fit = fitted("holzinger_swineford")
    res = load_reference("holzinger_swineford__cfa3_ml", "results")
    assert res["n_parameters"] == fit.n_params - 9
    assert_close("HS loglik", fit.loglik, res["loglik"], abs_tol=loglik_tolerance(res["loglik"]))
    assert not any(p["op"] == "~1" for p in res["parameters"])
    for p in res["parameters"]:
        assert_close(f"HS {p['lhs']} {p['op']} {p['rhs']}", lavaan_value(fit, p), p["estimate"], sig_digits=4)


FACTORS = {"visual", "textual", "speed"}


def lavaan_value(fit: FitResult, p: dict) -> float:
    """Our value of one row of a lavaan parameter table (=~ loading, ~1 intercept, ~~ (co)variance)."""
    lhs, op, rhs = p["lhs"], p["op"], p["rhs"]
    if op == "=~":
        return value(fit, f"loading({lhs}->{rhs})")
    if op == "~1":
        return value(fit, f"C(test)[{lhs}]")
    if lhs == rhs and lhs in FACTORS:
        return value(fit, f"sd({lhs})@child") ** 2
    if lhs == rhs:
        return value(fit, f"sd(Residual:test={lhs})") ** 2
    return value(fit, f"sd({lhs})@child") * value(fit, f"sd({rhs})@child") * value(fit, f"corr({rhs},{lhs})@child")


def test_hsced_nlme_heteroscedastic() -> None:
    """nlme varIdent by item. nlme's ML fixed-effect SEs carry the factor sqrt(N / (N - p)):
    0.09927455 / 0.099192 = 1.000832 = sqrt(1200 / 1198), so ours are scaled by it before comparing.
    """
    fit = fitted("hsced")
    assert fit.converged, fit.warnings
    ref = load_reference("hsced__heteroscedastic_ml")
    assert_close("hsced loglik (2 decimals)", fit.loglik, ref["loglik"], abs_tol=printed(2))
    scale = np.sqrt(fit.n_obs / (fit.n_obs - len(fit.model.beta_rows)))
    for peer, ours in (("(Intercept)", "Intercept"), ("x", "x")):
        fe = ref["fixed_effects"][peer]
        assert_close(f"hsced {ours}", value(fit, ours), fe["estimate"], sig_digits=6)
        assert_close(f"hsced se({ours}) x sqrt(N/(N-p))", row_se(fit, ours) * scale, fe["se"], sig_digits=4)
    vc = ref["variance_components"]
    s1, s2 = value(fit, "sd(Residual:item=1)"), value(fit, "sd(Residual:item=2)")
    assert_close("sd(_cons)@id", value(fit, "sd(_cons)@id"), vc["id sd(Intercept)"]["estimate"], sig_digits=6)
    assert_close("sd(Residual) item1", s1, vc["sd(Residual) item1"]["estimate"], sig_digits=6)
    assert_close("sd ratio item2/item1", s2 / s1, vc["sd ratio item2/item1 (nlme)"]["estimate"], sig_digits=6)
    assert_close("variance ratio", (s2 / s1) ** 2, vc["variance ratio item2/item1"]["estimate"], sig_digits=4)


def test_kypssim_persistence_plmixed_and_galamm() -> None:
    """PLmixed (and galamm) crossed persistence model, exact Gaussian likelihood.

    PLmixed and galamm agree with each other only to 4 digits on the loadings (0.87514 vs
    0.8750931) and to 3 on the small, poorly determined ms loadings at waves 3 and 4 (0.04438 vs
    0.0443174, SE 0.15): those are compared to 4 and 3 significant digits respectively.
    """
    fit = fitted("kypssim")
    assert fit.converged, fit.warnings
    ref = load_reference("kypssim__persistence_ml")
    assert_close("kypssim loglik (2 decimals)", fit.loglik, ref["loglik"], abs_tol=printed(2))
    names = {"(Intercept)": "Intercept", "time2": "C(time)[T.2]", "time3": "C(time)[T.3]", "time4": "C(time)[T.4]"}
    for peer, ours in names.items():
        fe = ref["fixed_effects"][peer]
        assert_close(f"kypssim {peer}", value(fit, ours), fe["estimate"], sig_digits=4)
        assert_close(f"kypssim se({peer})", row_se(fit, ours), fe["se"], sig_digits=3)
    ms = ref["factor_loadings"]["ms"]
    assert_close("lambda ms t2", value(fit, "loading(ms->2)"), ms["t2"]["estimate"], sig_digits=4)
    for t in ("3", "4"):
        assert_close(f"lambda ms t{t}", value(fit, f"loading(ms->{t})"), ms[f"t{t}"]["estimate"], sig_digits=3)
        assert_close(f"se lambda ms t{t}", row_se(fit, f"loading(ms->{t})"), ms[f"t{t}"]["se"], sig_digits=3)
    assert_close("lambda hs t4", value(fit, "loading(hs->4)"), ref["factor_loadings"]["hs"]["t4"]["estimate"],
                 sig_digits=4)
    vc = ref["variance_components"]
    for peer, ours in (("sid (Intercept)", "sd(_cons)@student"), ("hid hs", "sd(hs)@high"),
                       ("mid ms", "sd(ms)@middle"), ("Residual", "sd(Residual)")):
        assert_close(f"sd {peer}", value(fit, ours), vc[peer]["sd"], sig_digits=4)
    galamm = ref["other"]["galamm_same_model"]
    assert_close("galamm loglik (1 decimal)", fit.loglik, galamm["loglik"], abs_tol=printed(1))
    assert_close("galamm lambda ms", [value(fit, f"loading(ms->{t})") for t in "1234"], galamm["lambda_ms"],
                 abs_tol=1e-4)


def test_latent_covariates_galamm() -> None:
    fit = fitted("latent_covariates")
    assert fit.converged, fit.warnings
    ref = load_reference("latent_covariates__no_interaction")
    assert_close("loglik (3 decimals)", fit.loglik, ref["loglik"], abs_tol=printed(3))
    names = {"(Intercept)": "Intercept", "typemeasurement2": "C(type)[T.measurement2]",
             "typeresponse": "C(type)[T.response]", "x:response": "x:response"}
    for peer, ours in names.items():
        fe = ref["fixed_effects"][peer]
        assert_close(peer, value(fit, ours), fe["estimate"], sig_digits=4)
        assert_close(f"se({peer})", row_se(fit, ours), fe["se"], sig_digits=4)
    for item in ("measurement2", "response"):
        lam = ref["factor_loadings"][item]
        assert_close(f"lambda {item}", value(fit, f"loading(eta->{item})"), lam["estimate"], sig_digits=4)
        assert_close(f"se lambda {item}", row_se(fit, f"loading(eta->{item})"), lam["se"], sig_digits=4)
    vc = ref["variance_components"]
    assert_close("var(eta)", value(fit, "sd(eta)@id") ** 2, vc["id loading"]["variance"], sig_digits=5)
    assert_close("residual variance", value(fit, "sd(Residual)") ** 2, vc["Residual"]["variance"], sig_digits=4)


def test_diet_measurement_error_gllamm_and_galamm() -> None:
    """gllamm (adaptive quadrature, Skrondal & Rabe-Hesketh 2004 Table 14.1): -1372.35 to 2 decimals.

    galamm's estimates are a Laplace fit in another parametrisation: its chd-equation
    coefficients on age, bus, age:bus are ours plus lambda * Gamma (our fiber factor carries
    Gamma w into chd through its loading). Across methods every estimate is within 0.25 of
    galamm's SE (largest: the chd loading, 0.12 SE); the measurement part (fiber, Gamma, SD)
    agrees to 3 digits.
    """
    fit = fitted("diet")
    assert fit.converged, fit.warnings
    ref = load_reference("diet__measurement_error_direct")
    gllamm = ref["loglik_published_gllamm_agq"]
    assert_close("diet loglik (gllamm AGQ, 2 decimals)", fit.loglik, gllamm, abs_tol=printed(2))
    assert abs(fit.extras["point_check"]["loglik_change"]) < 1e-3
    lam = value(fit, "loading(fiber->chd)")
    gamma = {w: value(fit, f"Gamma(fiber<-{w})") for w in ("age", "bus", "age:bus")}
    ours = {"chd": value(fit, "chd"), "fiber": value(fit, "fiber"), "fiber2": value(fit, "fiber2")}
    for w, g in gamma.items():
        ours[f"fiber:{w}"] = g
        ours[f"chd:{w}"] = value(fit, f"chd:{w}") + lam * g
    for name, fe in ref["fixed_effects"].items():
        assert abs(ours[name] - fe["estimate"]) < 0.25 * fe["se"], (name, ours[name], fe)
    chd = ref["factor_loadings"]["chd"]
    assert abs(lam - chd["estimate"]) < 0.25 * chd["se"], (lam, chd)
    for name in ("fiber", "fiber:age", "fiber:bus", "fiber:age:bus"):
        assert_close(f"diet {name}", ours[name], ref["fixed_effects"][name]["estimate"], sig_digits=3)
    sd = ref["variance_components"]["id loading (latent fiber disturbance)"]["sd"]
    assert_close("diet sd(fiber)", value(fit, "sd(fiber)@id"), sd, sig_digits=3)


def test_irtsim_laplace_galamm_and_plmixed() -> None:
    """Laplace, as both peers. galamm prints estimates to 7 digits and agrees with ours to 4-5
    (its item effects are treatment contrasts); PLmixed's log likelihood is 0.010 below ours and
    galamm's (-1472.2), its fixed effects differ in the 3rd digit (item1 0.51068 vs 0.51121): a
    less converged optimum. PLmixed is compared on its loadings and variances (3 digits) and,
    as the issue asks, its log likelihood within 0.5.
    """
    fit = fitted("irtsim_laplace")
    assert fit.converged, fit.warnings
    ref = load_reference("irtsim__2pl_multilevel")
    galamm = ref["other"]["galamm_same_model"]
    assert_close("irtsim loglik (galamm, 1 decimal)", fit.loglik, galamm["loglik"], abs_tol=printed(1))
    assert_close("irtsim loglik (PLmixed)", fit.loglik, ref["loglik"], abs_tol=0.5)
    beta = [value(fit, f"C(item)[{i}]") for i in range(1, 6)]
    assert_close("galamm (Intercept)", beta[0], galamm["(Intercept)"], sig_digits=4)
    assert_close("galamm item2 contrast", beta[1] - beta[0], galamm["item2 (contrast)"], sig_digits=4)
    for i in (3, 4, 5):
        assert_close(f"galamm item{i}", beta[i - 1] - beta[0], galamm[f"item{i}"], sig_digits=4)
    var_s, var_sch = value(fit, "sd(ability)@student") ** 2, value(fit, "sd(ability_school)@school") ** 2
    assert_close("galamm sid:school var", var_s, galamm["sid:school var"], sig_digits=4)
    assert_close("galamm school var", var_sch, galamm["school var"], sig_digits=2)
    for item, lam in ref["factor_loadings"].items():
        if isinstance(lam, dict):
            ours = value(fit, f"loading(ability->{item[-1]})")
            assert_close(f"PLmixed lambda {item}", ours, lam["estimate"], sig_digits=3)
            assert_close(f"PLmixed se lambda {item}", row_se(fit, f"loading(ability->{item[-1]})"), lam["se"],
                         sig_digits=2)
    vc = ref["variance_components"]
    assert_close("PLmixed var sid", var_s, vc["sid ability"]["variance"], sig_digits=3)
    assert_close("PLmixed var school", var_sch, vc["school ability"]["variance"], sig_digits=3)


def test_irtsim_adaptive_point_check() -> None:
    """Adaptive quadrature (12 student x 8 school points) on the same model: no peer number (the
    peers use Laplace); the quadrature is checked by re-evaluation at 12 and 16 points per dimension.
    Reported in the issue report: loglik -1465.830, 6.4 above the Laplace value.
    """
    fit = fitted("irtsim")
    assert fit.converged, fit.warnings
    check = fit.extras["point_check"]
    assert abs(check["loglik_change"]) < 0.01, check
    assert set(check["loglik"]) == {"student: 12, school: 8", "12", "16"}
    assert fit.loglik > fitted("irtsim_laplace").loglik


@pytest.mark.slow
def test_diet_indirect_galamm() -> None:
    """galamm's 'indirect' model: age and bus enter the fiber rows as fixed effects only
    (`(age*bus):fiber`), the chd row loads on the mean-zero latent fiber disturbance, so age and
    bus reach chd through no path (not our Gamma model, where they would through lambda Gamma).
    Written the same way here and fitted by adaptive quadrature (12 points); galamm's mixed-response
    Laplace objective is not this model's likelihood (test_mresp_reference.py), so estimates are
    compared within 0.25 of galamm's SE (largest: the chd loading, 0.12 SE; chd 0.08 SE) and the
    latent SD to 3 significant digits (4.8643 vs 4.862)."""
    text = (SPECS / "diet.yaml").read_text().replace("data/", "DATA/")
    text = text.replace("chd:age + chd:bus + chd:age:bus + fiber + fiber2",
                        "fiber + fiber:age + fiber:bus + fiber:age:bus + fiber2")
    text = text[:text.index("structural:")] + text[text.index("estimation:"):]
    fit = fitted_text(text)
    assert fit.converged, fit.warnings
    assert "Gamma" not in set(fit.model.partable.frame["block"])
    ref = load_reference("diet__measurement_error_indirect")
    for name, fe in ref["fixed_effects"].items():
        assert abs(value(fit, name) - fe["estimate"]) < 0.25 * fe["se"], (name, value(fit, name), fe)
    chd = ref["factor_loadings"]["chd"]
    assert abs(value(fit, "loading(fiber->chd)") - chd["estimate"]) < 0.25 * chd["se"]
    assert_close("diet indirect sd(fiber)", value(fit, "sd(fiber)@id"), ref["variance_components"]["id loading"]["sd"],
                 sig_digits=3)
