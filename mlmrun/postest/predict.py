"""`mlmrun predict`: one row per data row (or per unit) with predictions, residuals and EB columns.

Column names (README "Predictions"):
- `row` (1-based row of the data file), the id column of every level as it is in the data;
- `xb`, `eta`, `mu`, `mu_marginal`, `resid`, `resid_pearson`, `resid_deviance`
  (rows.py), `resid_standardized` when an equation is gaussian, `equation` with several responses;
- per latent variable NAME at level LEVEL: `eb_mean(NAME)@LEVEL` and `eb_sd(NAME)@LEVEL`, the
  posterior mean and SD of the row's unit (`--eb mode`: `eb_mode(NAME)@LEVEL` and `eb_sd(NAME)@LEVEL`,
  the posterior mode and the SD from the curvature there). NAME@LEVEL is how the parameter table
  names the latent variable's SD, `sd(NAME)@LEVEL`;
- new data only: `unseen@LEVEL`, True where the row's unit at that level was not in the fitted data
  (its EB columns are then the prior mean and SD: zero and sd(NAME)@LEVEL for a random effect).

The by-unit table has one row per unit and latent level, in the order units first occur in the
data: `level`, `unit` (the id as in the data, first occurrence), `label` (results.json's unit label,
"3/2" for unit 2 within parent 3), `n_rows`, then the EB columns of that level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmrun.compile.matrices import model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.postest.frames import ROW, row_numbers
from mlmrun.postest.rows import RowPredictions, prior_means, prior_sds, row_predictions
from mlmrun.postest.units import EbKind
from mlmrun.predict import LevelPrediction

PREDICTION_COLUMNS = ("xb", "eta", "mu", "mu_marginal", "resid", "resid_pearson", "resid_deviance")


@dataclass(frozen=True)
class Predictions:
    """The per-row table and the by-unit table."""

    rows: pd.DataFrame
    units: pd.DataFrame


def eb_column(kind: EbKind, stat: str, latent: str, level: str) -> str:
    """`eb_mean(NAME)@LEVEL`, `eb_mode(...)`, `eb_sd(...)`."""
    prefix = {"mean": "eb_mean", "mode": "eb_mode", "sd": "eb_sd"}["sd" if stat == "sd" else kind]
    return f"{prefix}({latent})@{level}"


def per_row_latent(model: CompiledModel, values: np.ndarray, preds: list[LevelPrediction],
                   units: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n, M) EB means and SDs of every latent variable at every row; prior mean/SD where the unit index is -1.

    `units[level name]` is, per row, the position of its unit in that level's prediction (-1: not fitted).
    """
    mm = model_matrices(model, values)
    mean = prior_means(model, mm)
    sd = np.broadcast_to(prior_sds(model, mm), mean.shape).copy()
    by_level = {p.level: p for p in preds}
    for lvl in sorted({lat.level for lat in model.latent}):
        name = model.levels[lvl].name
        members = model.latent_at(lvl)
        pred = by_level.get(name)
        if pred is None:
            mean[:, members] = np.nan
            sd[:, members] = np.nan
            continue
        idx = units[name]
        seen = idx >= 0
        mean[np.ix_(seen, members)] = pred.mean[idx[seen]]
        sd[np.ix_(seen, members)] = pred.sd[idx[seen]]
    return mean, sd


def row_table(model: CompiledModel, frame: pd.DataFrame, rp: RowPredictions, eb_mean: np.ndarray, eb_sd: np.ndarray,
              kind: EbKind, unseen: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The per-row output table (module doc) from the model's rows `frame` and their predictions."""
    cols: dict[str, object] = {ROW: row_numbers(frame).to_numpy()}
    for lv in model.levels:
        if lv.column not in cols:
            cols[lv.column] = frame[lv.column].to_numpy()
    if len(model.equations) > 1:
        cols["equation"] = np.array([eq.name for eq in model.equations], dtype=object)[model.eq_of_row]
    for name in PREDICTION_COLUMNS:
        cols[name] = getattr(rp, name)
    if any(eq.family.name == "gaussian" for eq in model.equations):
        cols["resid_standardized"] = rp.resid_standardized
    for lvl in sorted({lat.level for lat in model.latent}):
        level = model.levels[lvl].name
        for m in model.latent_at(lvl):
            cols[eb_column(kind, "mean", model.latent[m].name, level)] = eb_mean[:, m]
            cols[eb_column(kind, "sd", model.latent[m].name, level)] = eb_sd[:, m]
        if unseen is not None:
            cols[f"unseen@{level}"] = unseen[level]
    return pd.DataFrame(cols)


def unit_table(model: CompiledModel, frame: pd.DataFrame, preds: list[LevelPrediction], kind: EbKind) -> pd.DataFrame:
    """One row per unit and latent level, units in the order they first occur in the data (module doc)."""
    parts = []
    by_level = {p.level: p for p in preds}
    for lvl in sorted({lat.level for lat in model.latent}):
        lv = model.levels[lvl]
        pred = by_level.get(lv.name)
        if pred is None:
            continue
        codes = lv.codes
        order, first = np.unique(codes, return_index=True)
        seq = np.argsort(first, kind="stable")
        order, first = order[seq], first[seq]
        part = pd.DataFrame({"level": lv.name, "unit": frame[lv.column].to_numpy()[first],
                             "label": [pred.units[c] for c in order], "n_rows": np.bincount(codes)[order]})
        for j, name in enumerate(pred.names):
            part[eb_column(kind, "mean", name, lv.name)] = pred.mean[order, j]
            part[eb_column(kind, "sd", name, lv.name)] = pred.sd[order, j]
        parts.append(part)
    if not parts:
        return pd.DataFrame({"level": [], "unit": [], "label": [], "n_rows": []})
    out = pd.concat(parts, ignore_index=True)
    if len(parts) > 1 and len({str(p["unit"].dtype) for p in parts}) > 1:
        out["unit"] = out["unit"].astype(str)  # ids of different types in one column (Parquet needs one type)
    return out


def fitted_predictions(model: CompiledModel, values: np.ndarray, frame: pd.DataFrame, preds: list[LevelPrediction],
                       kind: EbKind) -> Predictions:
    """Both tables for the data the model was fitted to (`frame`: its rows, frames.model_rows)."""
    units = {model.levels[lvl].name: model.levels[lvl].codes for lvl in {lat.level for lat in model.latent}}
    eb_mean, eb_sd = per_row_latent(model, values, preds, units)
    rp = row_predictions(model, values, eb_mean)
    return Predictions(row_table(model, frame, rp, eb_mean, eb_sd, kind), unit_table(model, frame, preds, kind))
