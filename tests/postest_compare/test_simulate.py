"""Simulation from a model (gllasim): the draws have the model's moments, computed here independently.

Moments come from the model's definition: closed forms for gaussian models and Gauss-Hermite
integrals (numpy's hermgauss, 80 points) over the random intercept for the others. Monte Carlo
tolerances are 4.5 standard errors estimated from the replicates themselves (replicate-level means,
so draws that share a unit's latent variable are not counted as independent).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.special import expit

from mlmrun.compile.model import CompiledModel
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.postest.simulate import SimulationError, draw_latent, replicate_rng, simulate, simulate_replicates
from tests.conftest import SPECS, write_spec

Z_TOL = 4.5
NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def value(model: CompiledModel, values: np.ndarray, name: str) -> float:
    return float(values[list(model.partable.names).index(name)])


def set_value(model: CompiledModel, values: np.ndarray, name: str, v: float) -> None:
    values[list(model.partable.names).index(name)] = v


def within_mc(draws: np.ndarray, target: np.ndarray, what: str) -> None:
    """Replicate-level statistics (R x k): their mean is within Z_TOL Monte Carlo SEs of the target."""
    mean = draws.mean(axis=0)
    se = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    z = np.abs(mean - target) / np.maximum(se, 1e-12)
    assert np.all(z < Z_TOL), f"{what}: worst |z| = {z.max():.2f} (mean {mean[z.argmax()]}, target {target[z.argmax()]})"


def test_seeding_is_per_replicate_index_and_order_free() -> None:
    model = prepare(SPECS / "cbpp.yaml").model
    values = model.partable.start_values
    forward = simulate_replicates(model, values, 11, 4)
    backward = [simulate(model, values, replicate_rng(11, i)) for i in reversed(range(4))][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(forward, backward, strict=True))
    spawned = [np.random.default_rng(s) for s in np.random.SeedSequence(11).spawn(4)]
    assert np.array_equal(simulate(model, values, spawned[2]), forward[2])
    assert not np.array_equal(forward[0], forward[1])


@pytest.fixture(scope="module")
def pig_fit():
    return estimate(prepare(SPECS / "pig_slope_unstructured.yaml").model)


@pytest.mark.parametrize("rho", [None, 0.6])
def test_pig_draws_reproduce_fitted_mean_and_covariance(pig_fit, rho: float | None) -> None:
    """The fitted model, and the same with a strong intercept-slope correlation (the Cholesky factor's orientation)."""
    model, values = pig_fit.model, pig_fit.values.copy()
    if rho is not None:
        set_value(model, values, "corr(week,_cons)@pig", rho)
    R = 400
    ys = np.array(simulate_replicates(model, values, 2024, R))
    week = model.X[:, 1]
    b0, b1 = value(model, values, "Intercept"), value(model, values, "week")
    s0, s1 = value(model, values, "sd(_cons)@pig"), value(model, values, "sd(week)@pig")
    rho, se = value(model, values, "corr(week,_cons)@pig"), value(model, values, "sd(Residual)")
    weeks = np.unique(week)
    by_week = np.stack([ys[:, week == w].mean(axis=1) for w in weeks], axis=1)
    within_mc(by_week, b0 + b1 * weeks, "mean by week")
    resid = ys - (b0 + b1 * week)
    var = s0**2 + 2 * rho * s0 * s1 * weeks + s1**2 * weeks**2 + se**2
    within_mc(np.stack([(resid[:, week == w] ** 2).mean(axis=1) for w in weeks], axis=1), var, "variance by week")
    first, last = week == weeks[0], week == weeks[-1]
    cov = s0**2 + rho * s0 * s1 * (weeks[0] + weeks[-1]) + s1**2 * weeks[0] * weeks[-1]
    within_mc((resid[:, first] * resid[:, last]).mean(axis=1)[:, None], np.array([cov]), "cov first/last week")


@pytest.fixture(scope="module")
def cbpp_fit():
    return estimate(prepare(SPECS / "cbpp.yaml").model)


def test_cbpp_draws_reproduce_fitted_marginal_proportions_and_variances(cbpp_fit) -> None:
    model, values = cbpp_fit.model, cbpp_fit.values
    ys = np.array(simulate_replicates(model, values, 7, 3000))
    assert np.all(ys <= model.trials) and np.all(ys == np.round(ys))
    sd = value(model, values, "sd(_cons)@herd")
    xb = model.X @ values[model.beta_rows]
    p = expit(xb[:, None] + sd * NODES[None, :])  # rows x nodes
    n = model.trials
    mean = n * (p @ WEIGHTS)
    var = n * ((p * (1 - p)) @ WEIGHTS) + n**2 * ((p**2) @ WEIGHTS - (p @ WEIGHTS) ** 2)
    within_mc(ys, mean, "mean per row")
    within_mc((ys - mean) ** 2, var, "variance per row")
    herd = model.levels[0].codes
    a, b = np.flatnonzero(herd == 0)[:2]
    cov = n[a] * n[b] * ((p[a] * p[b]) @ WEIGHTS - (p[a] @ WEIGHTS) * (p[b] @ WEIGHTS))
    within_mc(((ys[:, a] - mean[a]) * (ys[:, b] - mean[b]))[:, None], np.array([cov]), "covariance within herd")


def test_refits_of_simulated_pig_data_recover_the_parameters_on_average(pig_fit) -> None:
    model, truth = pig_fit.model, pig_fit.values
    free = model.partable.frame["free"].to_numpy() > 0
    fits = [estimate(replace(model, y=y)) for y in simulate_replicates(model, truth, 99, 40)]
    assert all(f.converged for f in fits)
    est = np.array([f.values for f in fits])[:, free]
    within_mc(est, truth[free], "pig estimates averaged over 40 refits")


def test_refits_of_simulated_cbpp_data_recover_the_parameters_on_average(spec_dir) -> None:
    text = (SPECS / "cbpp.yaml").read_text().replace("points: 25", "points: 7")
    model = prepare(write_spec(spec_dir, text.split("\n", 1)[1])).model
    truth = estimate(model).values
    free = model.partable.frame["free"].to_numpy() > 0
    fits = [estimate(replace(model, y=y)) for y in simulate_replicates(model, truth, 5, 24)]
    est = np.array([f.values for f in fits if f.converged])[:, free]
    assert len(est) >= 20
    within_mc(est, truth[free], "cbpp estimates averaged over refits")


def test_poisson_draws_include_the_offset(spec_dir) -> None:
    spec = write_spec(spec_dir, """
name: epil_offset
data: {path: data/epil.csv}
levels: [{name: subject, id: subject}]
responses: [{name: y, family: poisson, offset: lbase}]
fixed: "y ~ 1 + V4"
random: [{level: subject, terms: [1]}]
""")
    model = prepare(spec).model
    values = model.partable.start_values.copy()
    set_value(model, values, "Intercept", 1.2)
    set_value(model, values, "V4", -0.3)
    set_value(model, values, "sd(_cons)@subject", 0.5)
    ys = np.array(simulate_replicates(model, values, 3, 2000))
    mean = np.exp(1.2 - 0.3 * model.X[:, 1] + model.offset + 0.5**2 / 2)
    assert np.ptp(model.offset) > 1.0
    within_mc(ys, mean, "poisson mean with offset")


def test_gamma_draws_have_the_gamma_mean_and_variance(spec_dir) -> None:
    spec = write_spec(spec_dir, """
name: pig_gamma
data: {path: data/pig.csv}
levels: [{name: pig, id: id}]
responses: [{name: weight, family: gamma}]
fixed: "weight ~ week"
random: [{level: pig, terms: [1]}]
""")
    model = prepare(spec).model
    values = model.partable.start_values.copy()
    set_value(model, values, "Intercept", 3.0)
    set_value(model, values, "week", 0.1)
    set_value(model, values, "sd(_cons)@pig", 0.2)
    shape_row = [n for n in model.partable.names if "shape" in n or "alpha" in n]
    assert len(shape_row) == 1
    set_value(model, values, shape_row[0], 4.0)
    ys = np.array(simulate_replicates(model, values, 8, 1500))
    xb = 3.0 + 0.1 * model.X[:, 1]
    mean = np.exp(xb + 0.02)
    second = np.exp(2 * xb + 2 * 0.04) * (1 + 1 / 4.0)
    within_mc(ys, mean, "gamma mean")
    within_mc(ys**2, second, "gamma second moment")


def test_ordinal_draws_have_the_marginal_category_probabilities(spec_dir) -> None:
    model = prepare(SPECS / "wine_probit.yaml").model
    values = model.partable.start_values.copy()
    names = list(model.partable.names)
    thresholds = [n for n in names if model.partable.frame.at[names.index(n), "block"] == "threshold"]
    kappa = np.array([-1.0, 0.5, 2.0, 3.0])
    for n, k in zip(thresholds, kappa, strict=True):
        set_value(model, values, n, k)
    values[model.beta_rows] = [1.5, 1.0]
    set_value(model, values, "sd(_cons)@judge", 0.8)
    ys = np.array(simulate_replicates(model, values, 4, 1500))
    from scipy.stats import norm
    nu = model.X @ values[model.beta_rows]
    cuts = np.concatenate([[-np.inf], kappa, [np.inf]])
    target = np.stack([((norm.cdf(cuts[k + 1] - nu[:, None] - 0.8 * NODES) - norm.cdf(cuts[k] - nu[:, None] - 0.8 * NODES))
                        @ WEIGHTS) for k in range(5)], axis=1)
    for k in range(5):
        within_mc((ys == k).astype(float), target[:, k], f"P(category {k})")


def test_loadings_structural_b_and_gamma_shape_the_covariances(spec_dir) -> None:
    spec = write_spec(spec_dir, """
name: abg
data: {path: data/abortion_sim.csv}
levels: [{name: person, id: person}, {name: district, id: district}]
responses: [{name: resp, family: gaussian}]
fixed: "resp ~ 0 + C(item)"
latent:
  - {name: general, level: person, loadings: {by: item, fix: {woman: 1}}}
  - {name: general_district, level: district}
structural:
  B: {general: {general_district: 1}}
  Gamma: {general: {wave: free}}
""")
    model = prepare(spec).model
    values = model.partable.start_values.copy()
    lam = {"couple": 0.5, "defect": 1.5, "financial": 0.8, "marriage": 1.2, "rape": 2.0, "risk": 0.7, "woman": 1.0}
    for item, v in lam.items():
        set_value(model, values, f"loading(general->{item})", v)
    b, g, psi_p, psi_d, sigma = 0.8, 0.3, 1.0, 0.49, 0.5
    set_value(model, values, "B(general<-general_district)", b)
    set_value(model, values, "Gamma(general<-wave)", g)
    set_value(model, values, "sd(general)@person", np.sqrt(psi_p))
    set_value(model, values, "sd(general_district)@district", np.sqrt(psi_d))
    set_value(model, values, "sd(Residual)", sigma)
    values[model.beta_rows] = 0.1 * np.arange(len(model.beta_rows))
    eta = draw_latent(model, values, replicate_rng(1, 0))
    assert eta.shape == (model.n, 2)
    ys = np.array(simulate_replicates(model, values, 12, 200))
    frame = prepare(spec).data.frame
    item = frame["item"].to_numpy()
    wave = frame["wave"].to_numpy(dtype=float)
    loading = np.array([lam[i] for i in item])
    mean = model.X @ values[model.beta_rows] + loading * g * wave
    resid = ys - mean
    for w in (1, 4):
        within_mc(resid[:, wave == w].mean(axis=1)[:, None], np.zeros(1), f"mean residual, wave {w}")
    person = model.levels[0].codes
    district = model.levels[1].codes
    first = np.unique(person, return_index=True)[1]
    second = first + 1
    assert np.all(person[second] == person[first])
    same_person = (resid[:, first] * resid[:, second] / (loading[first] * loading[second])).mean(axis=1)
    within_mc(same_person[:, None], np.array([psi_p + b**2 * psi_d]), "same person, two items")
    lead = first[np.r_[True, district[first][1:] != district[first][:-1]]]
    partner = np.array([first[np.flatnonzero((district[first] == district[r]) & (first != r))[0]] for r in lead])
    other = (resid[:, lead] * resid[:, partner] / (loading[lead] * loading[partner])).mean(axis=1)
    within_mc(other[:, None], np.array([b**2 * psi_d]), "two persons of one district")
    single = (resid[:, first] ** 2 / loading[first] ** 2 - sigma**2 / loading[first] ** 2).mean(axis=1)
    within_mc(single[:, None], np.array([psi_p + b**2 * psi_d]), "variance of one row")


def test_a_family_without_a_sampler_is_a_clear_error() -> None:
    model = prepare(SPECS / "pig_intercept.yaml").model
    fake = type("Fake", (), {"name": "tweedie"})()
    eq = replace(model.equations[0], family=fake)
    with pytest.raises(SimulationError, match="family 'tweedie'.*cannot be simulated"):
        simulate(replace(model, equations=(eq,)), model.partable.start_values, replicate_rng(0, 0))
