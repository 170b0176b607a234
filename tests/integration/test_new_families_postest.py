"""Predictions and simulations of the families added after post-estimation (counts, zero inflation,
censoring, ordinal thresholds, choice sets), each checked against a formula written here.

No fits: the models are compiled from the shipped specs and given parameter values chosen here, since
predictions and draws are functions of (model, values) whatever the values' origin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit

from mlmrun.compile.model import CompiledModel
from mlmrun.pipeline import prepare
from mlmrun.postest.rows import row_predictions
from mlmrun.postest.simulate import draw_responses, replicate_rng
from tests.conftest import SPECS, write_spec

Z_TOL = 4.5
REPLICATES = 3000


def values_of(model: CompiledModel, **named: float) -> np.ndarray:
    """Start values with the named parameters set (names as in the parameter table)."""
    values = model.partable.start_values.astype(float).copy()
    names = list(model.partable.names)
    for name, v in named.items():
        values[names.index(name)] = v
    return values


def with_beta(model: CompiledModel, values: np.ndarray, beta: list[float]) -> np.ndarray:
    out = values.copy()
    out[model.beta_rows] = beta
    return out


def assert_moments(draws: np.ndarray, mean: np.ndarray, var: np.ndarray, what: str) -> None:
    """Per-row Monte Carlo means of y and of (y - mean)^2 within Z_TOL standard errors of mean and var."""
    r = len(draws)
    for stat, target, name in ((draws, mean, "mean"), ((draws - mean) ** 2, var, "variance")):
        est = stat.mean(axis=0)
        se = stat.std(axis=0, ddof=1) / np.sqrt(r)
        z = np.abs(est - target) / np.maximum(se, 1e-12)
        assert np.all(z < Z_TOL), f"{what} {name}: worst |z| = {z.max():.2f} ({est[z.argmax()]} vs {target[z.argmax()]})"


def draws_at(model: CompiledModel, values: np.ndarray, nu: np.ndarray, seed: int) -> np.ndarray:
    return np.stack([draw_responses(model, values, nu, replicate_rng(seed, i)) for i in range(REPLICATES)])


def epil_variant(folder: Path, response: str) -> CompiledModel:
    """The epil data with the response equation `response` (a YAML flow mapping), subject intercept."""
    text = (f"name: epil_variant\ndata: {{path: {SPECS / 'data' / 'epil.csv'}}}\n"
            "levels:\n  - {name: subject, id: subject}\n"
            f"responses:\n  - {response}\nfixed: \"y ~ lbase + trt\"\nrandom:\n  - {{level: subject, terms: [1]}}\n")
    return prepare(write_spec(folder, text), allow_outside_data=True).model


@pytest.mark.parametrize("family", ["nbinom2", "nbinom1", "zip", "zinb2", "zinb1"])
def test_count_draws_have_the_family_mean_and_variance(tmp_path: Path, family: str) -> None:
    base = {"zip": "poisson", "zinb2": "nbinom2", "zinb1": "nbinom1"}.get(family, family)
    zi = ", zero_inflation: \"~ 1\"" if family.startswith("zi") else ""
    model = epil_variant(tmp_path, f"{{name: y, family: {base}{zi}}}")
    named = {"theta": 1.7} if "2" in family else {"phi": 0.8} if "1" in family else {}
    if zi:
        named["zi(Intercept)"] = -0.9
    values = with_beta(model, values_of(model, **named), [1.2, 0.6, -0.3])
    nu = np.random.default_rng(3).normal(1.0, 0.5, model.n)
    mu_c = np.exp(nu)
    var_c = {"2": mu_c + mu_c**2 / 1.7, "1": mu_c * 1.8}.get(family[-1], mu_c)
    keep = 1.0 - expit(-0.9) if zi else 1.0
    mean = keep * mu_c
    var = keep * (var_c + mu_c**2) - mean**2
    assert_moments(draws_at(model, values, nu, 11), mean, var, family)


def test_censored_gaussian_draws_are_the_uncensored_latent_response() -> None:
    model = prepare(SPECS / "tobit.yaml").model
    values = with_beta(model, values_of(model, **{"sd(Residual)": 1.3}), [0.4, 0.7])
    nu = np.linspace(-2.0, 2.0, model.n)
    assert_moments(draws_at(model, values, nu, 5), nu, np.full(model.n, 1.69), "censored gaussian")


def softmax_by_set(nu: np.ndarray, sets: np.ndarray) -> np.ndarray:
    ex = pd.Series(np.exp(nu))
    return (ex / ex.groupby(sets).transform("sum")).to_numpy()


def test_multinomial_draws_choose_one_row_per_set_with_softmax_probabilities() -> None:
    model = prepare(SPECS / "multinomial.yaml").model
    values = values_of(model)
    nu = np.random.default_rng(4).normal(0.0, 1.0, model.n)
    sets = model.equations[0].choice.set_of_row
    draws = draws_at(model, values, nu, 7)
    assert np.all(pd.DataFrame(draws.T).groupby(sets).sum().to_numpy() == 1.0)
    p = softmax_by_set(nu, sets)
    assert_moments(draws, p, p * (1 - p), "multinomial")


def test_ranking_draws_follow_the_exploded_logit_first_and_second_places() -> None:
    model = prepare(SPECS / "rankings.yaml").model
    values = values_of(model)
    nu = np.random.default_rng(5).normal(0.0, 1.0, model.n)
    sets = model.equations[0].choice.set_of_row
    draws = draws_at(model, values, nu, 9)
    ranked = pd.Series(model.y > 0).groupby(sets).transform("sum").to_numpy()
    assert np.all(draws.max(axis=0) <= ranked)
    first = softmax_by_set(nu, sets)
    second = np.zeros(model.n)  # sum over the first-ranked j of p_j * exp(nu_i) / (S - exp(nu_j))
    for s in np.unique(sets):
        rows = np.flatnonzero(sets == s)
        e = np.exp(nu[rows])
        for a, i in enumerate(rows):
            second[i] = sum(first[rows[b]] * e[a] / (e.sum() - e[b]) for b in range(len(rows)) if b != a)
    for place, p in ((1, first), (2, second)):
        assert_moments((draws == place).astype(float), p, p * (1 - p), f"ranking place {place}")


def test_zip_predictions_equal_the_direct_formulas() -> None:
    model = prepare(SPECS / "epil_zip.yaml").model
    sd, zi = 0.6, -1.1
    values = with_beta(model, values_of(model, **{"zi(Intercept)": zi, "sd(_cons)@subject": sd}),
                       [1.0, -0.2, 0.9, 0.3, -0.1])
    eb = np.random.default_rng(6).normal(0.0, 0.3, (model.n, 1))
    rp = row_predictions(model, values, eb)
    xb = model.X @ values[model.beta_rows] + model.offset
    pi = expit(zi)
    mu_c = np.exp(xb + eb[:, 0])
    np.testing.assert_allclose(rp.mu, (1 - pi) * mu_c, rtol=1e-12)
    np.testing.assert_allclose(rp.mu_marginal, (1 - pi) * np.exp(xb + sd**2 / 2), rtol=1e-10)  # lognormal mean
    y = model.y
    np.testing.assert_allclose(rp.resid_pearson, (y - rp.mu) / np.sqrt((1 - pi) * mu_c * (1 + pi * mu_c)), rtol=1e-10)


def test_nbinom2_deviance_residuals_equal_twice_the_saturated_log_likelihood_gap() -> None:
    model = prepare(SPECS / "epil_nbinom.yaml").model
    theta = 2.3
    values = with_beta(model, values_of(model, theta=theta), [1.0, -0.2, 0.9, 0.3, -0.1])
    rp = row_predictions(model, values, np.zeros((model.n, 1)))
    y, mu = model.y, rp.mu

    def logpmf(m: np.ndarray) -> np.ndarray:
        return stats.nbinom.logpmf(y, theta, theta / (theta + m))

    saturated = np.where(y > 0, logpmf(np.maximum(y, 1e-300)), 0.0)
    d = 2 * (saturated - logpmf(mu))
    np.testing.assert_allclose(rp.resid_deviance, np.sign(y - mu) * np.sqrt(d), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(rp.resid_pearson, (y - mu) / np.sqrt(mu + mu**2 / theta), rtol=1e-12)


def test_censored_rows_have_no_residual_and_exact_rows_are_standardized() -> None:
    model = prepare(SPECS / "tobit.yaml").model
    values = with_beta(model, values_of(model, **{"sd(Residual)": 1.5}), [0.4, 0.7])
    rp = row_predictions(model, values, np.zeros((model.n, 0)))
    data = pd.read_csv(SPECS / "data" / "tobit_sim.csv")
    censored = data["censored"].to_numpy() == 1
    assert censored.any() and (~censored).any()
    assert np.isnan(rp.resid[censored]).all() and np.isnan(rp.resid_standardized[censored]).all()
    nu = 0.4 + 0.7 * data["x"].to_numpy()
    np.testing.assert_allclose(rp.mu, nu, rtol=1e-12)
    np.testing.assert_allclose(rp.resid_standardized[~censored], ((data["y"] - nu) / 1.5)[~censored], rtol=1e-12)


def test_ordinal_threshold_predictions_are_the_likelihoods_category_probabilities() -> None:
    model = prepare(SPECS / "wine_thresholds.yaml").model
    values = model.partable.start_values.astype(float).copy()
    values[model.beta_rows] = np.linspace(0.5, 1.5, len(model.beta_rows))
    rp = row_predictions(model, values, np.zeros((model.n, 0)))
    from mlmrun.compile.matrices import model_matrices
    params = model_matrices(model, values).thresholds[0]
    fam = model.equations[0].family
    K = params.shape[1]
    p = np.stack([np.exp(fam.loglik_derivs(np.full(model.n, k), rp.eta, params, order=0)[0]) for k in range(K)], axis=1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(rp.mu, p @ np.arange(K), rtol=1e-10)
    np.testing.assert_allclose(rp.resid_deviance ** 2, -2 * np.log(p[np.arange(model.n), model.y.astype(int)]), rtol=1e-8)
