"""Draw latent variables and responses from a fitted model, keeping its design (gllamm's gllasim).

A pure function of (compiled model, parameter values, random generator): the
same three give the same draw, so replicates seeded by index (bootstrap.py)
do not depend on where or in which order they run. The draw follows the
model of mlmrun.compile.model exactly:

    zeta_l = L_l u_l per unit of level l (u ~ N(0, I)), eta = T (Gamma w + zeta), T = (I - B)^-1,
    nu_i = x_i' beta + offset_i + sum_m z_m(i) eta_m(i),   y_i ~ family(nu_i)

with the family's own parameters (residual SDs with their `variance:`
design, gamma shapes, ordinal thresholds) and binomial denominators.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from mlmrun.compile.matrices import model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.errors import MlmrunError
from mlmrun.postest.rows import family_args

SIMULATED_FAMILIES = ("gaussian", "binomial", "poisson", "gamma", "ordinal", "nbinom2", "nbinom1", "zip", "zinb2",
                      "zinb1", "censored_gaussian", "composite_poisson", "composite_gaussian", "multinomial", "ranking")


class SimulationError(MlmrunError):
    """The model cannot be simulated (a family without a sampler)."""


def draw_latent(model: CompiledModel, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, M): eta of every latent variable for each row (units share their draw), structural model applied."""
    mm = model_matrices(model, np.asarray(values, float))
    n, M = model.n, len(model.latent)
    zeta = np.zeros((n, M))
    for lvl, L in mm.L.items():
        members = model.latent_at(lvl)
        index = model.levels[lvl]
        u = rng.standard_normal((index.n_units, len(members)))
        zeta[:, members] = (u @ L.T)[index.codes]
    mean = model.W @ mm.Gamma.T if model.W.shape[1] else np.zeros((n, M))
    return (mean + zeta) @ mm.T.T if M else zeta


def linear_predictor(model: CompiledModel, values: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """nu per row given the latent variables eta (n, M)."""
    mm = model_matrices(model, np.asarray(values, float))
    nu = model.X @ mm.beta + model.offset
    for m, lat in enumerate(model.latent):
        if lat.Z.shape[1]:
            nu = nu + (lat.Z @ mm.lambdas[m]) * eta[:, m]
    return nu


def draw_counts(name: str, mu: np.ndarray, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts of a count family with mean mu (before zero inflation) as gamma-Poisson mixtures.

    NB2: lambda ~ Gamma(theta, mu / theta), Var = mu + mu^2 / theta; NB1: lambda ~ Gamma(mu / phi, phi),
    Var = mu (1 + phi); zero-inflated: a structural zero with probability expit(zeta), the last column.
    """
    if name in ("nbinom2", "zinb2"):
        mu = rng.gamma(params[:, 0], mu / params[:, 0])
    elif name in ("nbinom1", "zinb1"):
        mu = rng.gamma(mu / params[:, 0], params[:, 0])
    y = rng.poisson(mu).astype(float)
    if name in ("zip", "zinb2", "zinb1"):
        y[rng.random(len(y)) < expit(params[:, -1])] = 0.0
    return y


def draw_ranks(nu: np.ndarray, set_of_row: np.ndarray, ranked: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ranks 1..r per choice set (0: unranked) from the exploded logit, r = `ranked` rows of the row's set.

    Sorting nu + Gumbel noise within a set draws the exploded (Plackett-Luce) logit's ranking: its first is
    the multinomial logit choice among all, the next among the rest, and so on. A multinomial set is r = 1.
    """
    codes = np.unique(set_of_row, return_inverse=True)[1].reshape(-1)
    g = nu + rng.gumbel(size=len(nu))
    order = np.lexsort((-g, codes))
    first = np.searchsorted(codes[order], codes[order])
    place = np.empty(len(nu), dtype=np.intp)
    place[order] = np.arange(len(nu)) - first + 1
    r = np.bincount(codes, weights=ranked.astype(float))[codes]
    return np.where(place <= r, place, 0).astype(float)


def draw_responses(model: CompiledModel, values: np.ndarray, nu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One response per row given its linear predictor, equation by equation (the model's y coding).

    Censored gaussian equations give the uncensored latent response y* ~ N(nu, sigma^2) (the censoring
    limits are data, known only on the censored rows); choice equations the model's coding: 1 on the chosen
    row of a multinomial set, else 0; ranks 1..r of a ranking set, as many as the data rank there, else 0
    (ties are not drawn).
    """
    mm = model_matrices(model, np.asarray(values, float))
    y = np.zeros(model.n)
    for e, eq in enumerate(model.equations):
        rows, fam = eq.rows, eq.family
        v = nu[rows]
        params = family_args(model, mm, e, rows)
        if fam.name == "gaussian":
            y[rows] = fam.mean(v) + mm.scale[rows] * rng.standard_normal(len(rows))
        elif fam.name in ("censored_gaussian", "composite_gaussian"):
            y[rows] = fam.mean(v, params) + params[:, 0] * rng.standard_normal(len(rows))
        elif fam.name == "binomial":
            trials = np.ones(len(rows)) if model.trials is None else model.trials[rows]
            y[rows] = rng.binomial(trials.astype(np.int64), np.clip(fam.mean(v), 0.0, 1.0))
        elif fam.name in ("poisson", "composite_poisson"):
            y[rows] = rng.poisson(fam.mean(v, params))
        elif fam.name in ("nbinom2", "nbinom1", "zip", "zinb2", "zinb1"):
            y[rows] = draw_counts(fam.name, np.exp(v), params, rng)
        elif fam.name == "gamma":
            shape = mm.scale[rows]
            y[rows] = rng.gamma(shape, fam.mean(v) / shape)
        elif fam.name == "ordinal":
            probs = fam.probabilities(v, params)
            cum = np.cumsum(probs, axis=1)
            y[rows] = np.minimum((rng.random(len(rows))[:, None] > cum).sum(axis=1), probs.shape[1] - 1)
        elif fam.name in ("multinomial", "ranking"):
            y[rows] = draw_ranks(v, params, model.y[rows] > 0, rng)
        else:
            raise SimulationError(f"simulate: responses of family '{fam.name}' (equation '{eq.name}') cannot be "
                                  f"simulated yet; families with a sampler: {', '.join(SIMULATED_FAMILIES)}")
    return y


def simulate(model: CompiledModel, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One simulated response vector (the model's rows and coding: success counts, category codes 0..K-1)."""
    if model.weighting is not None and model.weighting.frequency:
        raise SimulationError("simulate: the model has frequency weights (weights.fweight): a row stands for several "
                              "observations, whose simulated responses would differ, so one draw per row is not "
                              "the design; expand the rows (repeat each fweight times), drop `fweight`, and simulate")
    unsupported = [what for what, present in (("a residual covariance structure (responses[].residuals)", model.residual),
                                              ("residual covariances (residual_covariances)", model.rescov),
                                              ("discrete latent distributions or classes", model.discrete)) if present]
    if unsupported:
        raise SimulationError(f"simulate: the model has {' and '.join(unsupported)}, which the simulator does not draw "
                              "yet (it would draw independent residuals and normal latent variables instead); "
                              "simulate a model without them")
    eta = draw_latent(model, values, rng)
    return draw_responses(model, values, linear_predictor(model, values, eta), rng)


def replicate_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of replicate `index`: child `index` of SeedSequence(seed), as SeedSequence.spawn makes it.

    Depends on (seed, index) only, so replicates give the same draws however they are distributed.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def simulate_replicates(model: CompiledModel, values: np.ndarray, seed: int, replicates: int) -> list[np.ndarray]:
    """`replicates` draws, replicate i from replicate_rng(seed, i): a map over indices of a pure function."""
    return list(map(lambda i: simulate(model, values, replicate_rng(seed, i)), range(replicates)))


def simulated_frame(model: CompiledModel, draws: list[np.ndarray]) -> pd.DataFrame:
    """Long table of draws: replicate (1-based), obs (1-based row of the model's rows), level ids, response.

    With several equations, `equation` is the 1-based position in `responses:`.

    Ordinal responses are written as their category labels; binomial ones as success counts.
    """
    n = model.n
    frame: dict[str, object] = {"replicate": np.repeat(np.arange(1, len(draws) + 1), n),
                                "obs": np.tile(np.arange(1, n + 1), len(draws))}
    for lv in model.levels:
        frame[lv.name] = np.tile(lv.labels[lv.codes], len(draws))
    names = {eq.name for eq in model.equations}
    if len(model.equations) > 1:
        frame["equation"] = np.tile(model.eq_of_row + 1, len(draws))  # position in `responses:` (names may repeat)
    column = names.pop() if len(names) == 1 else "response"
    values = np.concatenate(draws) if draws else np.zeros(0)
    if any(eq.categories for eq in model.equations):
        shown = values.astype(object)
        for r in range(len(draws)):
            for eq in model.equations:
                if eq.categories:
                    idx = r * n + eq.rows
                    shown[idx] = np.asarray(eq.categories, dtype=object)[values[idx].astype(int)]
        frame[column] = shown
    else:
        frame[column] = values
    return pd.DataFrame(frame)
