"""Issue 10: ordinal thresholds depending on covariates and a latent scale model, against ordinal::clm.

The fixed specs must reproduce clm's fits (log likelihood to the file's precision, estimates to 4
significant digits, SEs to 3). The judge random-intercept versions have no peer file: their log
likelihood at our optimum is recomputed here by an independent dense Gauss-Hermite integral written
from the model definition, they must converge and beat the fixed model, and the analytic gradient of
the quadrature objective is checked against finite differences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference, loglik_tolerance
from tests.reference.test_glmm_reference import fitted, fitted_text, se, value

pytestmark = pytest.mark.reference


def test_thresholds_depending_on_contact_match_clm_nominal() -> None:
    fit = fitted("wine_thresholds")
    file = "wine__clm_nominal_contact"
    res = load_reference(file, "results")
    assert fit.converged, fit.warnings
    assert_close(f"{file} loglik", fit.loglik, res["loglik"], abs_tol=loglik_tolerance(res["loglik"]))
    names = {"tempwarm": "temp[T.warm]"}
    for j in range(4):
        names[f"{j + 1}|{j + 2}.(Intercept)"] = f"cut{j + 1}"
        names[f"{j + 1}|{j + 2}.contactyes"] = f"cut{j + 1}:contact[T.yes]"
    assert len(res["coefficients"]) == res["n_parameters"] == len(names)
    for c in res["coefficients"]:
        ours = names[c["name"]]
        assert_close(f"{file} {ours}", value(fit, ours), c["estimate"], sig_digits=4)
        assert_close(f"{file} se({ours})", se(fit, ours), c["se"], sig_digits=3)


def test_scale_effect_of_temp_matches_clm_scale() -> None:
    """The file lists the scale coefficient under the location name 'tempwarm' (a duplicate entry): only the
    six location/threshold coefficients are compared; the scale estimate is pinned by the log likelihood."""
    fit = fitted("wine_scale")
    file = "wine__clm_scale_temp"
    res = load_reference(file, "results")
    assert fit.converged, fit.warnings
    assert_close(f"{file} loglik", fit.loglik, res["loglik"], abs_tol=loglik_tolerance(res["loglik"]))
    assert res["n_parameters"] == int((fit.model.partable.frame["free"] > 0).sum())
    names = {"tempwarm": "temp[T.warm]", "contactyes": "contact[T.yes]"} | {f"{j + 1}|{j + 2}": f"cut{j + 1}" for j in range(4)}
    for c in res["coefficients"][:6]:
        ours = names[c["name"]]
        assert_close(f"{file} {ours}", value(fit, ours), c["estimate"], sig_digits=4)
        assert_close(f"{file} se({ours})", se(fit, ours), c["se"], sig_digits=3)


def brute_force_loglik(cuts: np.ndarray, shifts: np.ndarray, beta: dict[str, float], log_scale: float,
                       sd: float, points: int = 80) -> float:
    """Marginal log likelihood of the wine judge models by plain Gauss-Hermite with many points, from the data file."""
    d = pd.read_csv(SPECS / "data" / "wine.csv")
    warm = (d["temp"] == "warm").to_numpy(float)
    yes = (d["contact"] == "yes").to_numpy(float)
    k = d["rating"].to_numpy(int) - 1
    eta = beta.get("temp", 0.0) * warm + beta.get("contact", 0.0) * yes
    kappa = cuts[None, :] + yes[:, None] * shifts[None, :]
    full = np.column_stack([np.full(len(k), -np.inf), kappa, np.full(len(k), np.inf)])
    s = np.exp(log_scale * warm)
    x, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / np.sqrt(2 * np.pi)
    total = 0.0
    for j in np.unique(d["judge"]):
        r = (d["judge"] == j).to_numpy()
        nu = eta[r, None] + sd * x[None, :]
        hi = (full[r, k[r] + 1][:, None] - nu) / s[r, None]
        lo = (full[r, k[r]][:, None] - nu) / s[r, None]
        total += np.log(np.sum(w * np.prod(expit(hi) - expit(lo), axis=0)))
    return float(total)


@pytest.mark.parametrize(("spec", "fixed_spec"), [("wine_thresholds_judge", "wine_thresholds"),
                                                  ("wine_scale_judge", "wine_scale")])
def test_judge_intercept_versions_converge_beat_the_fixed_fit_and_match_a_dense_integral(spec: str, fixed_spec: str) -> None:
    fit, fixed = fitted(spec), fitted(fixed_spec)
    assert fit.converged, fit.warnings
    assert fit.loglik > fixed.loglik + 1.0
    names = fit.model.partable.frame["name"].tolist()
    cuts = np.array([value(fit, f"cut{j + 1}") for j in range(4)])
    shifts = np.array([value(fit, f"cut{j + 1}:contact[T.yes]") if f"cut{j + 1}:contact[T.yes]" in names else 0.0
                       for j in range(4)])
    beta = {v: value(fit, f"{v}[T.{lvl}]") for v, lvl in (("temp", "warm"), ("contact", "yes"))
            if f"{v}[T.{lvl}]" in names}
    log_scale = value(fit, "logscale:temp[T.warm]") if "logscale:temp[T.warm]" in names else 0.0
    dense = brute_force_loglik(cuts, shifts, beta, log_scale, value(fit, "sd(_cons)@judge"))
    assert fit.loglik == pytest.approx(dense, abs=1e-6)


@pytest.mark.parametrize(("spec", "link"), [("wine_thresholds_judge", "logit"), ("wine_scale_judge", "logit"),
                                            ("wine_thresholds_judge", "probit"), ("wine_scale_judge", "cloglog")])
def test_quadrature_gradient_of_threshold_and_scale_models_matches_finite_differences(spec: str, link: str) -> None:
    text = (SPECS / f"{spec}.yaml").read_text().replace("data/", "DATA/")
    fit = fitted(spec) if link == "logit" else fitted_text(text.replace("link: logit", f"link: {link}"))
    assert fit.converged, fit.warnings
    obj = QuadratureObjective(fit.model, integration_plan(fit.model))
    x = fit.model.partable.pack(fit.values) + 0.05 * np.sin(np.arange(len(fit.model.partable.pack(fit.values))) + 1.0)
    ad = obj.adapt(x)
    _, g = obj.frozen(x, ad)
    h = 1e-6
    fd = np.array([(obj.frozen(x + h * e, ad, gradient=False)[0] - obj.frozen(x - h * e, ad, gradient=False)[0]) / (2 * h)
                   for e in np.eye(len(x))])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)
