"""Issue 13: discrete (NPMLE) herd intercept on cbpp against flexmix (best of 20 EM starts), K = 2, 3 and auto.

flexmix reports each point's own intercept (the constant dropped); our masses are
centred at mean 0 with the constant kept, so mass_k + Intercept is compared. Log
likelihoods to the file's printed precision (floor 1e-6); masses, probabilities
and period effects to 1e-4 (flexmix's EM stops at a relative change of 1e-6,
which leaves its estimates good to about that).
"""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.results import FitResult, parameter_rows
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference, loglik_tolerance
from tests.reference.test_glmm_reference import fitted, fitted_text

pytestmark = pytest.mark.reference

SPEC_TEXT = (SPECS / "cbpp_npmle.yaml").read_text().replace("data/cbpp.csv", "DATA/cbpp.csv")


def _points(fit: FitResult) -> tuple[np.ndarray, np.ndarray]:
    """(point intercepts, probabilities) sorted by intercept, from the estimates table."""
    rows = {r.name: r.estimate for r in parameter_rows(fit)}
    K = fit.model.discrete[0].K
    icpt = np.array([rows[f"mass{k + 1}(_cons)@herd"] + rows["Intercept"] for k in range(K)])
    prob = np.array([rows[f"prob{k + 1}@herd"] for k in range(K)])
    order = np.argsort(icpt)
    return icpt[order], prob[order]


def _reference_points(file: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.array(load_reference(file, "results", "masses"))
    p = np.array(load_reference(file, "results", "probabilities"))
    order = np.argsort(m)
    return m[order], p[order]


def _period_effects(fit: FitResult, file: str) -> None:
    coef = load_reference(file, "results", "coefficients", 0)
    for k in (2, 3, 4):
        ours = float(fit.values[fit.model.partable.index(f"C(period)[T.{k}]")])
        assert_close(f"period{k}", ours, coef[f"coef.period{k}"], abs_tol=1e-4)


def test_two_mass_points_match_flexmix() -> None:
    fit = fitted("cbpp_npmle")
    target = load_reference("cbpp__npmle_k2", "results", "loglik")
    assert_close("loglik", fit.loglik, target, abs_tol=loglik_tolerance(target))
    assert fit.converged and not fit.warnings
    assert fit.n_params == load_reference("cbpp__npmle_k2", "results", "n_parameters")
    assert_close("bic", fit.bic, load_reference("cbpp__npmle_k2", "results", "bic"), abs_tol=1e-5)
    icpt, prob = _points(fit)
    ref_m, ref_p = _reference_points("cbpp__npmle_k2")
    assert_close("intercepts", icpt, ref_m, abs_tol=1e-4)
    assert_close("probabilities", prob, ref_p, abs_tol=1e-4)
    _period_effects(fit, "cbpp__npmle_k2")


def test_two_mass_points_report_centred_masses_and_implied_variance() -> None:
    fit = fitted("cbpp_npmle")
    rows = {r.name: r for r in parameter_rows(fit)}
    ref_m, ref_p = _reference_points("cbpp__npmle_k2")
    mean = float(ref_p @ ref_m)
    masses = sorted(rows[f"mass{k}(_cons)@herd"].estimate for k in (1, 2))
    assert_close("centred masses", np.array(masses), ref_m - mean, abs_tol=1e-4)
    assert_close("implied variance", rows["var(_cons)@herd"].estimate, float(ref_p @ (ref_m - mean) ** 2), abs_tol=1e-4)
    assert all(np.isfinite(rows[f"prob{k}@herd"].se) and rows[f"prob{k}@herd"].se > 0 for k in (1, 2))
    summary = fit.extras["discrete"]
    assert summary["starts"]["count"] == 5 and len(summary["starts"]["em_logliks"]) == 5
    assert summary["starts"]["spread"] < 1e-6
    assert summary["gateaux"]["max_derivative"] <= summary["gateaux"]["tolerance"]


def test_three_points_merge_to_two_with_the_same_likelihood() -> None:
    fit = fitted_text(SPEC_TEXT.replace("discrete: 2", "discrete: 3"))
    target = load_reference("cbpp__npmle_k3", "results", "loglik")
    assert_close("loglik", fit.loglik, target, abs_tol=loglik_tolerance(target))
    assert fit.model.discrete[0].K == 2
    assert any("merged" in w for w in fit.warnings)
    ref_m, ref_p = _reference_points("cbpp__npmle_k3")
    icpt, prob = _points(fit)
    assert_close("intercepts", icpt, np.array([ref_m[:2].mean(), ref_m[2]]), abs_tol=1e-4)
    assert_close("probabilities", prob, np.array([ref_p[:2].sum(), ref_p[2]]), abs_tol=1e-4)
    _period_effects(fit, "cbpp__npmle_k3")


def test_gateaux_search_stops_at_two_points() -> None:
    fit = fitted_text(SPEC_TEXT.replace("discrete: 2", "discrete: auto"))
    assert fit.model.discrete[0].K == 2
    assert_close("loglik", fit.loglik, load_reference("cbpp__npmle_k2", "results", "loglik"), abs_tol=1e-6)
    gateaux = fit.extras["discrete"]["gateaux"]
    assert [step["points"] for step in gateaux["path"]] == [1, 2]
    assert gateaux["path"][0]["max_derivative"] > gateaux["tolerance"]
    assert gateaux["max_derivative"] <= gateaux["tolerance"]


def test_posterior_point_probabilities_follow_bayes_rule_at_the_estimates() -> None:
    """class_posterior and the empirical Bayes means, recomputed here from the data and the fitted parameters."""
    import pandas as pd
    from scipy.stats import binom

    fit = fitted("cbpp_npmle")
    rows = {r.name: r.estimate for r in parameter_rows(fit)}
    data = pd.read_csv(SPECS / "data" / "cbpp.csv")
    period = [0.0] + [rows[f"C(period)[T.{k}]"] for k in (2, 3, 4)]
    masses = np.array([rows["mass1(_cons)@herd"], rows["mass2(_cons)@herd"]])
    probs = np.array([rows["prob1@herd"], rows["prob2@herd"]])
    post = fit.extras["class_posterior"]
    eb = fit.extras["empirical_bayes"]["herd"]
    for herd, group in data.groupby("herd"):
        nu = rows["Intercept"] + np.array([period[p - 1] for p in group["period"]])[:, None] + masses[None, :]
        loglik = binom.logpmf(group["incidence"].to_numpy()[:, None], group["size"].to_numpy()[:, None],
                              1.0 / (1.0 + np.exp(-nu))).sum(axis=0)
        w = probs * np.exp(loglik - loglik.max())
        w /= w.sum()
        i = post["units"].index(str(herd))
        assert np.allclose(post["probabilities"][i], w, atol=1e-5)
        assert abs(eb["_cons"]["mean"][i] - w @ masses) < 1e-5
