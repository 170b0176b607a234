"""Predictions of a model whose latent variables are discrete (NPMLE mass points or latent classes).

The latent distribution of the discrete level has K points e_k with prior probabilities p_jk (the same for
every unit, or a multinomial logit in unit covariates for latent classes; compile/discrete.py). Given the
estimates, Bayes' rule gives unit j's posterior point probabilities

    w_jk = p_jk prod_{i in j} f(y_i | nu_ik) / sum_l p_jl prod_{i in j} f(y_i | nu_il),   nu_ik = x_i'b + o_i + z_i'e_k,

(the likelihood's own posterior, likelihood/quadrature/discrete.py). From them, per unit and per row:

- `eb_mean(NAME)@LEVEL`, `eb_sd(NAME)@LEVEL` (NPMLE mass points only): sum_k w_jk e_k and the SD of e under w;
- `p(class=k)@LEVEL`: w_jk, k = 1..K in the parameter table's point order (`loc{k}`, `class{k}`);
- `xb` = x'b + o + z'(sum_k p_jk e_k), the linear predictor at the prior mean of the points (for mass
  points, centred at 0, the fixed part itself); `eta` = x'b + o + z'(sum_k w_jk e_k);
- `mu` = sum_k w_jk E[y | nu_ik] (the posterior mean of E[y], not the inverse link of `eta`), and
  `mu_marginal` = sum_k p_jk E[y | nu_ik], the population-averaged mean; residuals from `mu` as for other
  models (postest/rows.py).

Posterior modes (`--eb mode`), new data (`--data`), normal latent variables at other levels and a second discrete level
are refused with a message (UsageError, exit 2) rather than given numbers of another model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmrun.compile.discrete import DiscreteLevel, point_logits, resize, softmax_rows
from mlmrun.compile.matrices import model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.quadrature.discrete import DiscreteObjective
from mlmrun.postest.predict import Predictions, eb_column, row_table
from mlmrun.postest.residuals import deviance, variance
from mlmrun.postest.rows import RowPredictions, means
from mlmrun.postest.usage import UsageError
from mlmrun.predict import LevelPrediction
from mlmrun.results import FitResult


@dataclass(frozen=True)
class DiscretePrediction(LevelPrediction):
    """EB means/SDs of the mass points' latent variables (none for latent classes) and the point probabilities."""

    posterior: np.ndarray
    """(n_units, K) posterior point probabilities w_jk."""
    prior: np.ndarray
    """(n_units, K) prior point probabilities p_jk."""
    locations: np.ndarray
    """(K, d) the points e_k (centred for mass points)."""


def probability_column(k: int, level: str) -> str:
    """`p(class=k)@LEVEL`, k counted from 1."""
    return f"p(class={k})@{level}"


def refuse_new_data(model: CompiledModel) -> None:
    """UsageError: predictions for new rows of a discrete model are not implemented."""
    if model.discrete:
        raise UsageError("--data: predictions for new rows are not available for models with discrete latent "
                         "variables (mass points or latent classes); predict for the fitted data (drop --data)")


def discrete_unit_predictions(fit: FitResult, kind: str) -> list[LevelPrediction]:
    """The DiscretePrediction of the discrete level (module doc), from the likelihood's posterior at the estimates."""
    model = fit.model
    if kind == "mode":
        raise UsageError("--eb mode: the latent variables of this model are discrete, so they have posterior "
                         "probabilities per point, not a curvature at a mode; use --eb mean (the p(class=k) "
                         "columns give the most probable point)")
    if model.latent or len(model.discrete) > 1:
        raise UsageError("predict: models that combine a discrete level with normal latent variables at other "
                         "levels, or with a second discrete level, are not supported yet; predictions exist for "
                         "models whose only latent variables are one level's mass points or classes")
    dl: DiscreteLevel = model.discrete[0]
    values = np.asarray(fit.values, dtype=float)
    obj = DiscreteObjective(model)
    posterior = obj.unit_posterior(obj.evaluate(model.partable.pack(values), gradient=False).posterior)
    _, locations, _ = obj.points(values)
    level = model.levels[dl.level]
    prior = np.broadcast_to(softmax_rows(point_logits(dl, values)), posterior.shape).copy()
    if dl.kind == "npmle":
        names = list(dl.names)
        mean = posterior @ locations
        sd = np.sqrt(np.clip(posterior @ locations**2 - mean**2, 0.0, None))
    else:
        names, mean, sd = [], np.zeros((len(posterior), 0)), np.zeros((len(posterior), 0))
    return [DiscretePrediction(level.name, [str(x) for x in level.labels], names, mean, sd,
                               posterior, prior, locations)]


def _loadings(model: CompiledModel, dl: DiscreteLevel, values: np.ndarray) -> np.ndarray:
    """(n, d): z_j(i) on every row of the model, in data order."""
    cols = [Zj[:, 0] if not len(r) else Zj @ values[r] for Zj, r in zip(dl.Z, dl.loading_rows, strict=True)]
    return np.column_stack(cols) if cols else np.zeros((model.n, 0))


def discrete_row_predictions(model: CompiledModel, values: np.ndarray, pred: DiscretePrediction) -> RowPredictions:
    """xb, eta, mu, mu_marginal and the residuals of every row (module doc)."""
    dl: DiscreteLevel = model.discrete[0]
    mm = model_matrices(model, values)
    unit = model.levels[dl.level].codes
    fixed = model.X @ mm.beta + model.offset
    z = _loadings(model, dl, values)
    w, p = pred.posterior[unit], pred.prior[unit]
    nu = fixed[:, None] + z @ pred.locations.T
    idx = np.arange(model.n)
    mu_k = means(model, mm, nu, idx)
    xb = fixed + np.einsum("id,id->i", z, p @ pred.locations)
    eta = fixed + np.einsum("id,id->i", z, w @ pred.locations)
    mu = np.sum(w * mu_k, axis=1)
    mu_marginal = np.sum(p * mu_k, axis=1)
    y = model.y
    resid = y - mu
    pearson, dev, standardized = (np.full(model.n, np.nan) for _ in range(3))
    for e, eq in enumerate(model.equations):
        rows = eq.rows
        name = eq.family.name
        trials = model.trials[rows] if model.trials is not None and name == "binomial" else None
        extra = None
        if name == "ordinal":
            probs = sum(w[rows, k, None] * eq.family.probabilities(nu[rows, k], mm.thresholds[e])
                        for k in range(nu.shape[1]))
            codes = np.arange(probs.shape[1], dtype=float)
            extra = (probs @ codes**2 - mu[rows] ** 2, probs[np.arange(len(rows)), y[rows].astype(int)])
        pearson[rows] = resid[rows] / np.sqrt(variance(name, mu[rows], trials, extra))
        dev[rows] = np.sign(resid[rows]) * np.sqrt(np.clip(deviance(name, y[rows], mu[rows], trials, extra), 0, None))
        if name == "gaussian":
            standardized[rows] = resid[rows] / mm.scale[rows]
    return RowPredictions(xb, eta, mu, mu_marginal, resid, pearson, dev, standardized)


def discrete_columns(pred: DiscretePrediction, index: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """The EB and `p(class=k)` columns for the units `index` (positions into the level's units)."""
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(pred.names):
        out[eb_column(kind, "mean", name, pred.level)] = pred.mean[index, j]
        out[eb_column(kind, "sd", name, pred.level)] = pred.sd[index, j]
    for k in range(pred.posterior.shape[1]):
        out[probability_column(k + 1, pred.level)] = pred.posterior[index, k]
    return out


def discrete_unit_table(model: CompiledModel, frame: pd.DataFrame, pred: DiscretePrediction, kind: str
                        ) -> pd.DataFrame:
    """One row per unit of the discrete level, in the order units first occur in the data."""
    lv = model.levels[model.discrete[0].level]
    order, first = np.unique(lv.codes, return_index=True)
    seq = np.argsort(first, kind="stable")
    order, first = order[seq], first[seq]
    table = pd.DataFrame({"level": lv.name, "unit": frame[lv.column].to_numpy()[first],
                          "label": [pred.units[c] for c in order], "n_rows": np.bincount(lv.codes)[order]})
    for name, column in discrete_columns(pred, order, kind).items():
        table[name] = column
    return table


def discrete_tables(model: CompiledModel, values: np.ndarray, frame: pd.DataFrame, preds: list[LevelPrediction],
                    kind: str) -> Predictions:
    """The per-row and by-unit tables of a discrete model (module doc; `preds` from discrete_unit_predictions)."""
    pred = preds[0]
    if not isinstance(pred, DiscretePrediction):
        raise TypeError("discrete_tables needs the predictions of discrete_unit_predictions")
    rp = discrete_row_predictions(model, values, pred)
    empty = np.zeros((model.n, 0))
    rows = row_table(model, frame, rp, empty, empty, kind)  # type: ignore[arg-type]
    unit = model.levels[model.discrete[0].level].codes
    for name, column in discrete_columns(pred, unit, kind).items():
        rows[name] = column
    return Predictions(rows, discrete_unit_table(model, frame, pred, kind))


def with_fitted_points(model: CompiledModel, doc: dict) -> CompiledModel:
    """The model with as many points as results.json's fit (`discrete.points`): `discrete: auto` compiles one
    point and grows it, and merged points make fewer; the spec's model then has another parameter table."""
    entry = doc.get("discrete")
    if not model.discrete or not isinstance(entry, dict) or not isinstance(entry.get("points"), int):
        return model
    K = int(entry["points"])
    return resize(model, K) if K != model.discrete[0].K and K >= 1 else model
