"""Issue 10 (counts and censoring): NB2 and zero-inflated Poisson against glmmTMB, tobit against survreg.

- specs/epil_nbinom.yaml, specs/epil_zip.yaml: glmmTMB's Laplace fits (log likelihood to 1e-6, estimates
  to 4 significant digits, SEs to 3 as in test_glmm_reference; theta and the zero-inflation logit to 4).
- The same models by 20-point adaptive quadrature: the log likelihood at our optimum equals an
  independent per-subject integral (a dense trapezoidal rule over the random intercept of scipy.stats
  densities), and 30 points move it by less than 1e-4.
- specs/tobit.yaml: survival::survreg's left-censored regression (estimates and SEs to 4 digits).
- specs/tobit_cluster.yaml: the simulation's truth (no peer fits the multilevel tobit here): converged,
  above the fixed model's log likelihood, every estimate within 2.5 SE of the truth, and the log
  likelihood equal to an independent per-cluster integral.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from mlmrun.results import FitResult
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference, loglik_tolerance
from tests.reference.test_glmm_reference import check_peer, fitted, fitted_text, se, value

pytestmark = pytest.mark.reference

TRT = {"trt": "trt"}


def test_epil_nbinom2_laplace_glmmtmb() -> None:
    fit = fitted("epil_nbinom")
    assert fit.integration == {"method": "laplace", "points": 1}
    check_peer(fit, "epil__nbinom2_ri_laplace", TRT, "subject", loglik_tol=1e-6)
    assert_close("theta", value(fit, "theta"), load_reference("epil__nbinom2_ri_laplace", "nb_theta"), sig_digits=4)


def test_epil_zip_laplace_glmmtmb() -> None:
    fit = fitted("epil_zip")
    check_peer(fit, "epil__zip_ri_laplace", TRT, "subject", loglik_tol=1e-6)
    assert_close("zi(Intercept)", value(fit, "zi(Intercept)"), load_reference("epil__zip_ri_laplace", "zi_logit"),
                 sig_digits=4)


def _marginal(groups: list[np.ndarray], log_f, sd: float) -> float:
    """sum over units of log integral prod_rows f(y | eta + b) N(b; 0, sd^2) db.

    `log_f(rows, b)` takes a vector of intercepts b (rows x len(b) evaluations). The integral is the
    trapezoidal rule on 8001 points over +-12 prior SDs, exponentially accurate for these smooth,
    rapidly decaying integrands (the posterior is at least 40 steps wide).
    """
    b = np.linspace(-12 * sd, 12 * sd, 8001)
    log_prior = stats.norm.logpdf(b, 0.0, sd)
    total = 0.0
    for rows in groups:
        a = log_f(rows, b) + log_prior
        top = a.max()
        total += top + np.log(integrate.trapezoid(np.exp(a - top), b))
    return total


def _epil() -> tuple[pd.DataFrame, np.ndarray, list[np.ndarray]]:
    data = pd.read_csv(SPECS / "data" / "epil.csv")
    X = np.column_stack([np.ones(len(data)), data["trt"] == "progabide", data["lbase"], data["lage"], data["V4"]])
    return data, X.astype(float), [np.flatnonzero(data["subject"] == s) for s in pd.unique(data["subject"])]


NAMES = ["Intercept", "trt[T.progabide]", "lbase", "lage", "V4"]


def _agq(family: str, extra: str) -> FitResult:
    return fitted_text(f"""
name: epil_agq
data: {{path: DATA/epil.csv}}
levels: [{{name: subject, id: subject}}]
responses: [{{name: y, family: {family}{extra}}}]
fixed: "y ~ trt + lbase + lage + V4"
random: [{{level: subject, terms: [1]}}]
estimation: {{integration: {{method: adaptive, points: 20}}, check_points: [30]}}
""")


def _point_check_small(fit: FitResult) -> None:
    logliks = fit.extras["point_check"]["loglik"]
    assert max(abs(v - fit.loglik) for v in logliks.values()) < 1e-4, logliks


@pytest.mark.slow
def test_epil_nbinom2_adaptive_equals_independent_integral() -> None:
    fit = _agq("nbinom2", "")
    assert fit.converged, fit.warnings
    data, X, groups = _epil()
    eta = X @ np.array([value(fit, n) for n in NAMES])
    y, theta = data["y"].to_numpy(), value(fit, "theta")

    def log_f(rows: np.ndarray, b: np.ndarray) -> np.ndarray:
        mu = np.exp(eta[rows, None] + b)
        return stats.nbinom.logpmf(y[rows, None], theta, theta / (theta + mu)).sum(axis=0)

    assert fit.loglik == pytest.approx(_marginal(groups, log_f, value(fit, "sd(_cons)@subject")), abs=1e-6)
    _point_check_small(fit)
    assert fit.loglik > load_reference("epil__nbinom2_ri_laplace", "results", "loglik") - 1.0


@pytest.mark.slow
def test_epil_zip_adaptive_equals_independent_integral() -> None:
    fit = _agq("poisson", ", zero_inflation: '~ 1'")
    assert fit.converged, fit.warnings
    data, X, groups = _epil()
    eta = X @ np.array([value(fit, n) for n in NAMES])
    y, pi = data["y"].to_numpy(), 1.0 / (1.0 + np.exp(-value(fit, "zi(Intercept)")))

    def log_f(rows: np.ndarray, b: np.ndarray) -> np.ndarray:
        p = (1 - pi) * stats.poisson.pmf(y[rows, None], np.exp(eta[rows, None] + b)) + pi * (y[rows, None] == 0)
        with np.errstate(divide="ignore"):
            return np.log(p).sum(axis=0)

    assert fit.loglik == pytest.approx(_marginal(groups, log_f, value(fit, "sd(_cons)@subject")), abs=1e-6)
    _point_check_small(fit)


def test_tobit_fixed_survreg() -> None:
    fit = fitted("tobit")
    res = load_reference("tobit_sim__censored_fixed", "results")
    assert fit.converged
    assert_close("loglik", fit.loglik, res["loglik"], abs_tol=loglik_tolerance(res["loglik"]))
    for peer, ours in (("(Intercept)", "Intercept"), ("x", "x")):
        assert_close(ours, value(fit, ours), res["coefficients"][peer], sig_digits=4)
        assert_close(f"se({ours})", se(fit, ours), res["se"][peer], sig_digits=4)
    sigma = value(fit, "sd(Residual)")
    assert_close("log sigma", np.log(sigma), res["log_sigma"], sig_digits=4)
    assert_close("se(log sigma)", se(fit, "sd(Residual)") / sigma, res["se"]["Log(scale)"], sig_digits=4)


@pytest.mark.slow
def test_tobit_cluster_recovers_the_truth() -> None:
    fit, fixed = fitted("tobit_cluster"), fitted("tobit")
    truth = load_reference("tobit_sim__censored_fixed", "truth")
    assert fit.converged, fit.warnings
    assert fit.loglik > fixed.loglik + 10
    peer = load_reference("tobit_sim__censored_fixed", "results", "loglik")
    assert fit.extras["lr_test"]["null_loglik"] == pytest.approx(peer, abs=loglik_tolerance(peer))  # random effect off
    for name, key in (("Intercept", "intercept"), ("x", "x"), ("sd(_cons)@cluster", "cluster_sd"),
                      ("sd(Residual)", "residual_sd")):
        assert abs(value(fit, name) - truth[key]) < 2.5 * se(fit, name), (name, value(fit, name), se(fit, name))
    _point_check_small(fit)
    data = pd.read_csv(SPECS / "data" / "tobit_sim.csv")
    eta = value(fit, "Intercept") + value(fit, "x") * data["x"].to_numpy()
    y, cens, sigma = data["y"].to_numpy(), data["censored"].to_numpy() == 1, value(fit, "sd(Residual)")

    def log_f(rows: np.ndarray, b: np.ndarray) -> np.ndarray:
        mu = eta[rows, None] + b
        yr = y[rows, None]
        return np.where(cens[rows, None], stats.norm.logcdf((yr - mu) / sigma), stats.norm.logpdf(yr, mu, sigma)).sum(0)

    groups = [np.flatnonzero(data["cluster"] == c) for c in pd.unique(data["cluster"])]
    assert fit.loglik == pytest.approx(_marginal(groups, log_f, value(fit, "sd(_cons)@cluster")), abs=1e-6)
