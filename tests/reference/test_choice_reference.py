"""Issue 10: multinomial logit and rank-ordered (exploded) logit against nnet::multinom and survival::clogit.

Fixed models must reproduce the peers (log likelihood to the file's precision, coefficients and SEs to
4 significant digits). The simulated data carry random effects with a known truth (in the same files):
the mixed specs must converge, beat the fixed log likelihood and recover every parameter within 2.5 SE.
Both data layouts of the multinomial (one row per choice, one row per alternative) must give the same fit.
The quadrature gradient of the mixed specs is checked against finite differences, and the mode finder's
curvature (choice sets' off-diagonal terms included) against the Hessian of an independently written
log posterior.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp

from mlmrun.estimate import estimate
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare
from mlmrun.results import parameter_rows
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference, loglik_tolerance
from tests.reference.test_glmm_reference import fitted, fitted_text, se, value

pytestmark = pytest.mark.reference

MULTI = "multinomial_sim__mlogit_fixed"
RANK = "rankings_sim__exploded_logit_fixed"


def check_multinomial_fixed(fit) -> None:
    res = load_reference(MULTI, "results")
    assert fit.converged, fit.warnings
    assert_close(f"{MULTI} loglik", fit.loglik, res["loglik"], abs_tol=loglik_tolerance(res["loglik"]))
    for i, alt in enumerate(res["rows"]):
        for j, col in enumerate(res["columns"]):
            ours = f"{alt}:{'Intercept' if col == '(Intercept)' else col}"
            assert_close(f"{MULTI} {ours}", value(fit, ours), res["coefficients"][i][j], sig_digits=4)
            assert_close(f"{MULTI} se({ours})", se(fit, ours), res["se"][i][j], sig_digits=4)


def test_multinomial_one_row_per_choice_matches_nnet_multinom() -> None:
    check_multinomial_fixed(fitted("multinomial"))


def test_multinomial_one_row_per_alternative_gives_the_same_fit() -> None:
    """gllamm's expanded form: the chosen indicator per alternative row, sets by a chooser id."""
    d = pd.read_csv(SPECS / "data" / "multinomial_sim.csv")
    d["id"] = np.arange(len(d)) + 1
    long = d.loc[d.index.repeat(3)].reset_index(drop=True)
    long["alt"] = np.tile(["A", "B", "C"], len(d))
    long["chosen"] = (long["choice"] == long["alt"]).astype(int)
    folder = Path(tempfile.mkdtemp(prefix="mlmrun-choice-"))
    long.drop(columns="choice").sample(frac=1.0, random_state=3).to_csv(folder / "long.csv", index=False)
    (folder / "model.yaml").write_text("""
name: multinomial_long
data: {path: long.csv}
responses:
  - name: chosen
    family: multinomial
    choice: {layout: per_alternative, alternatives: alt, set: id, base: A, case: "~ x + female"}
fixed: "chosen ~ 0"
""")
    check_multinomial_fixed(estimate(prepare(folder / "model.yaml").model))


def within(fit, name: str, truth: float, k: float = 2.5) -> None:
    """|estimate - truth| < k SE, for a partable row or a derived var()/cov() row (delta-method SE)."""
    rows = {r.name: r for r in parameter_rows(fit)}
    est, s = rows[name].estimate, rows[name].se
    assert abs(est - truth) < k * s, f"{name}: {est:.4f} (se {s:.4f}) is {abs(est - truth) / s:.2f} SE from the truth {truth}"


def test_multinomial_region_intercepts_recover_the_truth() -> None:
    fit, fixed = fitted("multinomial_region"), fitted("multinomial")
    assert fit.converged, fit.warnings
    assert fit.loglik > fixed.loglik + 10.0
    truth = load_reference(MULTI, "truth")
    for alt in ("B", "C"):
        for name, t in truth[alt].items():
            within(fit, f"{alt}:{'Intercept' if name == 'intercept' else name}", t)
    cov = truth["region_covariance"]
    within(fit, "var(B)@region", cov["var_B"])
    within(fit, "var(C)@region", cov["var_C"])
    within(fit, "cov(C,B)@region", cov["cov_BC"])


def test_rankings_match_clogit_on_the_exploded_data() -> None:
    fit = fitted("rankings")
    res = load_reference(RANK, "results")
    assert fit.converged, fit.warnings
    assert_close(f"{RANK} loglik", fit.loglik, res["loglik"], abs_tol=loglik_tolerance(res["loglik"]))
    names = {"price": "price", "quality": "quality"} | {f"factor(alt){a}": f"{a}:Intercept" for a in (2, 3, 4)}
    for peer, ours in names.items():
        assert_close(f"{RANK} {ours}", value(fit, ours), res["coefficients"][peer], sig_digits=4)
        assert_close(f"{RANK} se({ours})", se(fit, ours), res["se"][peer], sig_digits=4)


def test_rankings_random_price_slope_recovers_the_truth() -> None:
    fit, fixed = fitted("rankings_slope"), fitted("rankings")
    assert fit.converged, fit.warnings
    assert fit.loglik > fixed.loglik + 1.0
    truth = load_reference(RANK, "truth")
    within(fit, "price", truth["price_mean"])
    within(fit, "quality", truth["quality"])
    for a in (2, 3, 4):
        within(fit, f"{a}:Intercept", truth[f"alt{a}"])
    within(fit, "sd(price)@resp", truth["price_sd"])
    assert fit.extras["point_check"]["loglik_change"] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("spec", ["multinomial_region", "rankings_slope"])
def test_quadrature_gradient_of_choice_models_matches_finite_differences(spec: str) -> None:
    fit = fitted(spec)
    obj = QuadratureObjective(fit.model, integration_plan(fit.model))
    x0 = fit.model.partable.pack(fit.values)
    x = x0 + 0.05 * np.sin(np.arange(len(x0)) + 1.0)
    ad = obj.adapt(x)
    _, g = obj.frozen(x, ad)
    h = 1e-6
    fd = np.array([(obj.frozen(x + h * e, ad, gradient=False)[0] - obj.frozen(x - h * e, ad, gradient=False)[0]) / (2 * h)
                   for e in np.eye(len(x))])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)


def test_mode_and_curvature_of_a_region_match_an_independent_log_posterior() -> None:
    """For one region: the adaptive nodes' centre is the maximiser of sum of log softmax(chosen) + log phi(u),
    and C C' is the inverse of its negated Hessian (the off-diagonal choice-set terms matter here)."""
    fit = fitted("multinomial_region")
    obj = QuadratureObjective(fit.model, integration_plan(fit.model))
    x = fit.model.partable.pack(fit.values)
    ad = obj.adapt(x)
    pc = obj.pieces(x)
    rows = obj.lay.rows
    region = 0
    mine = np.flatnonzero(rows.codes[obj.lay.levels[0]] == region)
    sets = fit.model.equations[0].choice.set_of_row[rows.original[mine]]
    chosen = rows.y[mine] == 1

    def log_post(u: np.ndarray) -> float:
        nu = pc.pred.fixed[mine] + pc.pred.A[mine] @ u
        return float(sum(nu[(sets == s) & chosen][0] - logsumexp(nu[sets == s]) for s in np.unique(sets)) - 0.5 * u @ u)

    mode = ad.mode[0][region]
    h = 1e-4
    eye = np.eye(len(mode))
    grad = np.array([(log_post(mode + h * e) - log_post(mode - h * e)) / (2 * h) for e in eye])
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    hess = np.array([[(log_post(mode + h * a + h * b) - log_post(mode + h * a - h * b) - log_post(mode - h * a + h * b)
                       + log_post(mode - h * a - h * b)) / (4 * h * h) for b in eye] for a in eye])
    C = ad.chol[0][region]
    np.testing.assert_allclose(C @ C.T, np.linalg.inv(-hess), rtol=1e-5)


def test_choice_sets_count_once_as_observations() -> None:
    assert fitted("multinomial").n_obs == 1500
    assert fitted("rankings").n_obs == 300
    fit = fitted("multinomial_region")
    assert fit.bic == pytest.approx(-2 * fit.loglik + np.log(1500) * fit.n_params, rel=1e-12)


def test_partial_rankings_with_ties_match_an_independent_maximisation() -> None:
    """Top-2 rankings of 4 alternatives with some ties (Breslow), fitted here by scipy on a direct likelihood."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(5)
    n, m = 150, 4
    price = rng.uniform(0, 3, (n, m))
    util = -0.8 * price + np.array([0.0, 0.5, -0.3, 0.2]) + rng.gumbel(size=(n, m))
    order = np.argsort(-util, axis=1)
    rank = np.zeros((n, m), dtype=int)
    rank[np.arange(n), order[:, 0]] = 1
    rank[np.arange(n), order[:, 1]] = 2
    tie = rng.uniform(size=n) < 0.2
    rank[tie, order[tie, 1]] = 1  # ties at the top
    long = pd.DataFrame({"resp": np.repeat(np.arange(n), m), "alt": np.tile(np.arange(1, m + 1), n),
                         "price": price.ravel(), "rank": rank.ravel()})

    def negll(theta: np.ndarray) -> float:
        nu = theta[0] * price + np.r_[0.0, theta[1:]]
        total = 0.0
        for r in (1, 2):  # every row ranked r is chosen from the rows ranked r or later, or unranked
            risk = (rank >= r) | (rank == 0)
            lse = logsumexp(np.where(risk, nu, -np.inf), axis=1)
            total += np.sum(np.where(rank == r, nu - lse[:, None], 0.0))
        return -total

    best = minimize(negll, np.zeros(4), method="BFGS", options={"gtol": 1e-9})
    folder = Path(tempfile.mkdtemp(prefix="mlmrun-partial-"))
    long.to_csv(folder / "partial.csv", index=False)
    (folder / "model.yaml").write_text("""
name: partial
data: {path: partial.csv}
responses:
  - name: rank
    family: ranking
    choice: {layout: per_alternative, alternatives: alt, set: resp}
fixed: "rank ~ price"
""")
    fit = estimate(prepare(folder / "model.yaml").model)
    assert fit.converged
    assert fit.loglik == pytest.approx(-best.fun, abs=1e-6)
    ours = [value(fit, "price")] + [value(fit, f"{a}:Intercept") for a in (2, 3, 4)]
    np.testing.assert_allclose(ours, best.x, atol=1e-4)


def test_one_region_variable_shared_by_alternatives_with_a_loading() -> None:
    """The other random-effect option: one latent variable loading on B (fixed 1) and C (free)."""
    text = (SPECS / "multinomial_region.yaml").read_text().replace("data/", "DATA/")
    start = text.index("latent:")
    end = text.index("estimation:")
    text = text[:start] + "latent:\n  - {name: R, level: region, loadings: {by: alt, only: [B, C], fix: {B: 1}}}\n" + text[end:]
    fit = fitted_text(text)
    assert fit.converged, fit.warnings
    assert fit.loglik > fitted("multinomial").loglik
    assert fit.loglik < fitted("multinomial_region").loglik + 1e-6  # a special case of the correlated pair
    obj = QuadratureObjective(fit.model, integration_plan(fit.model))
    x = fit.model.partable.pack(fit.values) + 0.03
    ad = obj.adapt(x)
    _, g = obj.frozen(x, ad)
    h = 1e-6
    fd = np.array([(obj.frozen(x + h * e, ad, gradient=False)[0] - obj.frozen(x - h * e, ad, gradient=False)[0]) / (2 * h)
                   for e in np.eye(len(x))])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)


def test_laplace_fit_of_region_intercepts_matches_an_independent_laplace_formula() -> None:
    """Laplace: per region, log L = h(m) - log det(-H(m)) / 2 with h(u) = log-likelihood + log phi(u) + D/2 log 2 pi,
    m its maximiser and H its Hessian, here found by scipy and finite differences from a direct softmax."""
    from scipy.optimize import minimize

    text = (SPECS / "multinomial_region.yaml").read_text().replace("data/", "DATA/")
    fit = fitted_text(text.replace("{method: adaptive, points: 8}", "{method: laplace}"))
    assert fit.converged, fit.warnings
    assert fit.integration == {"method": "laplace", "points": 1}
    assert abs(fit.loglik - fitted("multinomial_region").loglik) < 1.0  # Laplace vs 8-point AGQ: 0.58 here
    obj = QuadratureObjective(fit.model, integration_plan(fit.model))
    pc = obj.pieces(fit.model.partable.pack(fit.values))
    rows = obj.lay.rows
    sets_all = fit.model.equations[0].choice.set_of_row[rows.original]
    region_of = rows.codes[obj.lay.levels[0]]
    total = 0.0
    size = 3  # every choice has the alternatives A, B, C (one row each)
    for region in np.unique(region_of):
        mine = region_of == region
        fixed, A, sets, chosen = pc.pred.fixed[mine], pc.pred.A[mine], sets_all[mine], rows.y[mine] == 1
        order = np.argsort(sets, kind="stable")
        fixed, A, sets, chosen = fixed[order], A[order], sets[order], chosen[order]
        def h(u: np.ndarray, fixed=fixed, A=A, chosen=chosen) -> float:
            nu = (fixed + A @ u).reshape(-1, size)
            return float(np.sum(nu[chosen.reshape(-1, size)] - logsumexp(nu, axis=1)) - 0.5 * u @ u)

        m = minimize(lambda u: -h(u), np.zeros(2), method="BFGS", options={"gtol": 1e-10}).x
        e, step = np.eye(2), 1e-4
        H = np.array([[(h(m + step * a + step * b) - h(m + step * a - step * b) - h(m - step * a + step * b)
                        + h(m - step * a - step * b)) / (4 * step * step) for b in e] for a in e])
        total += h(m) - 0.5 * np.linalg.slogdet(-H)[1]
    assert fit.loglik == pytest.approx(total, abs=1e-5)
