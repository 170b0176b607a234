"""The moments engine (issue 9) against independent computations: the exact engine's likelihood, a dense
per-unit multivariate normal likelihood, central differences of the likelihood, and a direct numerical
maximisation of the saturated model with missing data (which the EM of fit_indices must reach)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from mlmrun.estimate import estimate
from mlmrun.estimate.fit_indices import saturated
from mlmrun.estimate.gaussian_fit import fit_gaussian
from mlmrun.likelihood.gaussian.deviance import exact_loglik
from mlmrun.likelihood.moments.checks import generic_point, plan_moments
from mlmrun.likelihood.moments.data import moments_data
from mlmrun.likelihood.moments.likelihood import MomentsModel, evaluate
from mlmrun.pipeline import prepare
from mlmrun.results import parameter_rows
from tests.conftest import SPECS, write_spec
from tests.reference.compare import load_reference

ITEMS = [f"x{j}" for j in range(1, 10)]
BASE = SPECS / "holzinger_swineford.yaml"


def missing_copy(folder: Path, fraction: float = 0.12, seed: int = 3) -> Path:
    """Holzinger-Swineford with a random `fraction` of the test scores blanked (many missing-data patterns)."""
    frame = pd.read_csv(SPECS / "data" / "holzinger_swineford.csv")
    rng = np.random.default_rng(seed)
    for col in ITEMS:
        frame.loc[rng.random(len(frame)) < fraction, col] = np.nan
    (folder / "data").mkdir(exist_ok=True)
    frame.to_csv(folder / "data" / "hs_missing.csv", index=False)
    text = BASE.read_text().split("\n", 1)[1].replace("data/holzinger_swineford.csv", "data/hs_missing.csv")
    return write_spec(folder, text.replace("name: holzinger_swineford", "name: hs_missing"))


def dense_loglik(model, mm: MomentsModel, theta: np.ndarray) -> float:
    """Sum over children of the multivariate normal log density of the scores they have (brute force)."""
    imp = mm.implied(theta)
    data = mm.data
    total = 0.0
    for unit in range(data.Y.shape[0]):
        o = np.flatnonzero(~np.isnan(data.Y[unit]))
        total += stats.multivariate_normal(imp.mu[o], imp.Sigma[np.ix_(o, o)]).logpdf(data.Y[unit, o])
    return float(total)


def random_values(model, seed: int) -> np.ndarray:
    """Natural partable values the exact engine accepts: positive SDs, correlations inside (-1, 1)."""
    rng = np.random.default_rng(seed)
    values = model.partable.start_values.copy()
    frame = model.partable.frame
    for i in np.flatnonzero(frame["free"].to_numpy() > 0):
        block = frame.at[i, "block"]
        values[i] = {"corr": rng.uniform(-0.4, 0.4), "fixed": rng.uniform(2, 6)}.get(block, rng.uniform(0.5, 1.5))
    return values


@pytest.mark.parametrize("missing", [False, True])
def test_moments_likelihood_equals_the_exact_engine_at_any_parameter_value(tmp_path: Path, missing: bool) -> None:
    path = missing_copy(tmp_path) if missing else BASE
    model = prepare(path).model
    data = moments_data(model)
    assert not isinstance(data, str)
    assert data.complete is (not missing)
    if missing:
        assert len(data.patterns) > 20
    mm = MomentsModel(model, data)
    for seed in range(3):
        values = random_values(model, seed)
        ours = evaluate(mm, mm.theta_of(values)).loglik
        exact = exact_loglik(model, values)
        assert abs(ours - exact) <= 1e-8 * abs(exact), (ours, exact)


@pytest.mark.parametrize("missing", [False, True])
def test_moments_fit_reaches_the_exact_engines_optimum(tmp_path: Path, missing: bool) -> None:
    """Same maximum log likelihood (to 1e-8 relative) and estimates as the per-child exact engine; FIML with missing data."""
    path = missing_copy(tmp_path) if missing else BASE
    model = prepare(path).model
    ours = estimate(model)
    assert ours.integration["method"] == "moments" and ours.converged
    exact = fit_gaussian(model)
    assert abs(ours.loglik - exact.loglik) <= 1e-8 * abs(exact.loglik), (ours.loglik, exact.loglik)
    np.testing.assert_allclose(ours.values, exact.values, rtol=2e-4, atol=2e-4)


VARIANTS = {
    "B_independent": "structural: {B: {textual: {visual: free}, speed: {visual: free}}}\ncovariance: {child: independent}\n",
    "equal_correlations": ("covariance: {child: unstructured}\nconstraints: {equal: [[\"corr(textual,visual)@child\", "
                           "\"corr(speed,textual)@child\"]]}\n"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradient_matches_central_differences_with_rescov_and_missing_data(tmp_path: Path, variant: str) -> None:
    """Covariance (var/cov) and sd/corr parametrisations of Psi, B, a cross-loading, two residual covariances, FIML."""
    path = missing_copy(tmp_path)
    text = path.read_text().replace("covariance: {child: unstructured}\n",
                                    VARIANTS[variant] + "residual_covariances: {pairs: [[x2, x8], [x1, x4]]}\n")
    path.write_text(text.replace("only: [x1, x2, x3]", "only: [x1, x2, x3, x9]"))
    model = prepare(path).model
    data = plan_moments(model)
    mm = MomentsModel(model, data)
    theta = generic_point(mm, seed=11)
    ev = evaluate(mm, theta, grad=True)
    num = np.zeros_like(theta)
    for k in range(len(theta)):
        h = 1e-6 * max(1.0, abs(theta[k]))
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        num[k] = (evaluate(mm, up).loglik - evaluate(mm, down).loglik) / (2 * h)
    np.testing.assert_allclose(ev.grad, num, rtol=1e-5, atol=1e-4 * np.abs(num).max())
    assert abs(evaluate(mm, theta).loglik - dense_loglik(model, mm, theta)) < 1e-8 * abs(ev.loglik)


def test_saturated_model_by_em_is_the_maximum_of_the_missing_data_likelihood(tmp_path: Path) -> None:
    """EM's h1 log likelihood equals a direct BFGS maximisation over means and a Cholesky factor (x1-x3)."""
    path = missing_copy(tmp_path, fraction=0.25)
    path.write_text(path.read_text().replace("columns: [x1, x2, x3, x4, x5, x6, x7, x8, x9]", "columns: [x1, x2, x3]")
                    .split("  - name: textual")[0] + "covariance: {child: unstructured}\nestimation: {method: ML}\n")
    model = prepare(path).model
    data = moments_data(model)
    assert not isinstance(data, str) and data.p == 3 and len(data.patterns) > 3
    ll_em = saturated(data)[0]
    p = data.p

    def negll(x: np.ndarray) -> float:
        L = np.zeros((p, p))
        L[np.tril_indices(p)] = x[p:]
        Sigma = L @ L.T
        total = 0.0
        for pat in data.patterns:
            o = pat.items
            total += stats.multivariate_normal(x[:p][o], Sigma[np.ix_(o, o)]).logpdf(data.Y[np.ix_(pat.units, o)]).sum()
        return -total

    start = np.concatenate([np.nanmean(data.Y, axis=0), np.diag(np.nanstd(data.Y, axis=0))[np.tril_indices(p)]])
    best = optimize.minimize(negll, start, method="BFGS", options={"gtol": 1e-7, "maxiter": 5000})
    assert -best.fun <= ll_em + 1e-6
    assert abs(-best.fun - ll_em) < 1e-9 * abs(ll_em)


RESCOV = SPECS / "holzinger_swineford_rescov.yaml"


def test_long_data_gives_the_same_fit_as_stacked_wide_data(tmp_path: Path) -> None:
    """The same residual-covariance model from a long CSV (one row per child and test) as from data.stack."""
    wide = pd.read_csv(SPECS / "data" / "holzinger_swineford.csv")
    long = wide.melt(id_vars=["id"], value_vars=ITEMS, var_name="test", value_name="score").sample(frac=1, random_state=1)
    (tmp_path / "data").mkdir()
    long.to_csv(tmp_path / "data" / "hs_long.csv", index=False)
    text = RESCOV.read_text().split("\n", 1)[1]
    text = text.replace("  path: data/holzinger_swineford.csv\n  stack: {columns: [x1, x2, x3, x4, x5, x6, x7, x8, x9], "
                        "item: test, value: score}\n", "  path: data/hs_long.csv\n")
    long_fit = estimate(prepare(write_spec(tmp_path, text)).model)
    wide_fit = estimate(prepare(RESCOV).model)
    assert long_fit.integration["method"] == "moments"
    assert abs(long_fit.loglik - wide_fit.loglik) < 1e-8 * abs(wide_fit.loglik)
    assert long_fit.n_params == wide_fit.n_params == 32


def test_fixed_residual_covariance_at_lavaans_estimate_reproduces_lavaans_likelihood(tmp_path: Path) -> None:
    """Fixing x7 ~~ x8 at lavaan's estimate leaves 31 free parameters and lavaan's maximum log likelihood."""
    res = load_reference("holzinger_swineford__cfa3_crossload_rescov_ml", "results")
    target = next(p["estimate"] for p in res["parameters"] if (p["lhs"], p["op"], p["rhs"]) == ("x7", "~~", "x8"))
    text = RESCOV.read_text().split("\n", 1)[1].replace("data/holzinger_swineford.csv", str(SPECS / "data" / "holzinger_swineford.csv"))
    text = text.replace("    - [x7, x8]", f"    - {{between: [x7, x8], fix: {target!r}}}")
    fit = estimate(prepare(write_spec(tmp_path, text), allow_outside_data=True).model)
    assert fit.n_params == 31
    assert abs(fit.loglik - res["loglik"]) < 1e-6
    row = next(r for r in parameter_rows(fit) if r.name == "cov(Residual:x7,x8)")
    assert not row.free and row.estimate == target


def test_residual_covariances_set_equal_share_one_parameter(tmp_path: Path) -> None:
    text = BASE.read_text().split("\n", 1)[1].replace("data/holzinger_swineford.csv", str(SPECS / "data" / "holzinger_swineford.csv"))
    text += ("residual_covariances: {pairs: [[x1, x2], [x4, x5]]}\n"
             "constraints: {equal: [[\"cov(Residual:x1,x2)\", \"cov(Residual:x4,x5)\"]]}\n")
    fit = estimate(prepare(write_spec(tmp_path, text), allow_outside_data=True).model)
    assert fit.converged and fit.n_params == 31
    a, b = (fit.values[fit.model.partable.index(n)] for n in ("cov(Residual:x1,x2)", "cov(Residual:x4,x5)"))
    assert a == b and a != 0


def test_a_negative_latent_variance_round_trips_through_the_reported_values() -> None:
    """Heywood case of a factor: var = signed sd^2 and cov = corr * sd_a * sd_b give back Psi exactly."""
    model = prepare(BASE).model
    mm = MomentsModel(model, plan_moments(model))
    pt = model.partable
    sd_v, sd_t, corr = (pt.index(n) for n in ("sd(visual)@child", "sd(textual)@child", "corr(textual,visual)@child"))
    theta = generic_point(mm)
    theta[pt.frame.at[sd_v, "free"] - 1] = -0.3
    values = mm.values(theta)
    assert values[sd_v] < 0
    np.testing.assert_allclose(mm.theta_of(values), theta, rtol=1e-12, atol=1e-15)
    psi = mm.implied(theta).Psi
    assert np.isclose(values[sd_v] * abs(values[sd_v]), psi[0, 0])
    assert np.isclose(values[corr] * values[sd_t] * values[sd_v], psi[1, 0])
