"""`mlmrun predict`: one row per data row (or per unit) with predictions, residuals and EB columns.

Column names (README, "After the fit: `mlmrun predict`"):
- `row` (1-based row of the data file), the id column of every level as it is in the data, and for a
  stacked file (`data.stack`) the item column, since one wide row gives several rows; for a choice
  equation the alternatives column (per_choice data: one row per alternative, `row` the choice's row);
- `xb`, `eta`, `mu`, `mu_marginal`, `resid`, `resid_pearson`, `resid_deviance`
  (rows.py; choice equations: mu the probability that the row's alternative is chosen, or ranked first,
  given the EB predictions, and mu_marginal NaN: the marginal choice probability needs the set's joint
  random part, not one row's), `resid_standardized` when an equation is gaussian (censored or composite too), `equation` with several responses;
- per latent variable NAME at level LEVEL: `eb_mean(NAME)@LEVEL` and `eb_sd(NAME)@LEVEL`, the
  posterior mean and SD of the row's unit (`--eb mode`: `eb_mode(NAME)@LEVEL` and `eb_sd(NAME)@LEVEL`,
  the posterior mode and the SD from the curvature there). NAME@LEVEL is how the parameter table
  names the latent variable's SD, `sd(NAME)@LEVEL`;
- new data only: `unseen@LEVEL`, True where the row's unit at that level was not in the fitted data
  (its disturbance is taken as zero: for a random effect EB 0 and SD sd(NAME)@LEVEL; per_row_latent).

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
from mlmrun.postest.residuals import GAUSSIAN
from mlmrun.postest.rows import RowPredictions, latent_maps, row_predictions
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
    """(n, M) EB means and SDs of every latent variable at every row, for fitted and unseen units alike.

    `units[level name]` is, per row, the position of its unit in that level's prediction (-1: not fitted).
    A unit's ancestors are fitted whenever it is (nesting), so a row's latent variables split into fitted
    ones S (their EB predictions) and unseen ones U, whose disturbances zeta_U are unknown (EB = 0):
    eta_U = T_UU (B_US eta_S + Gamma_U w + zeta_U) with T_UU = (I - B_UU)^-1, so their prediction is
    T_UU (B_US eta^_S + Gamma_U w) and their variance M diag(sd_S^2) M' + T_UU Psi_UU T_UU' with
    M = T_UU B_US (covariances between fitted latent variables are not kept per unit and are left out;
    without B, as for random effects, this is exactly the prior: mean 0, SD the estimated SD).
    """
    mm = model_matrices(model, values)
    n, M = model.n, len(model.latent)
    mean = np.full((n, M), np.nan)
    var = np.full((n, M), np.nan)
    unseen = np.zeros((n, M), dtype=bool)
    by_level = {p.level: p for p in preds}
    for lvl in sorted({lat.level for lat in model.latent}):
        members = model.latent_at(lvl)
        pred = by_level.get(model.levels[lvl].name)
        if pred is None:
            continue
        idx = units[model.levels[lvl].name]
        seen = idx >= 0
        mean[np.ix_(seen, members)] = pred.mean[idx[seen]]
        var[np.ix_(seen, members)] = pred.sd[idx[seen]] ** 2
        unseen[np.ix_(~seen, members)] = True
    if unseen.any():
        _, G = latent_maps(model, mm)
        T = np.linalg.inv(np.eye(M) - mm.B)
        psi = np.linalg.solve(T, G)
        psi = psi @ psi.T  # Psi = L L', block diagonal by level
        wg = model.W @ mm.Gamma.T if model.W.shape[1] else np.zeros((n, M))
        for pattern in np.unique(unseen, axis=0):
            if not pattern.any():
                continue
            rows = np.flatnonzero((unseen == pattern).all(axis=1))
            U, S = np.flatnonzero(pattern), np.flatnonzero(~pattern)
            T_uu = np.linalg.inv(np.eye(len(U)) - mm.B[np.ix_(U, U)])
            link = T_uu @ mm.B[np.ix_(U, S)]
            used = (link != 0).any(axis=0)[None, :]  # fitted latent variables the unseen ones depend on
            eta_s = np.where(used, mean[np.ix_(rows, S)], 0.0)
            var_s = np.where(used, var[np.ix_(rows, S)], 0.0)
            mean[np.ix_(rows, U)] = eta_s @ link.T + wg[np.ix_(rows, U)] @ T_uu.T
            var[np.ix_(rows, U)] = var_s @ (link**2).T + np.diag(T_uu @ psi[np.ix_(U, U)] @ T_uu.T)[None, :]
    return mean, np.sqrt(var)


def row_table(model: CompiledModel, frame: pd.DataFrame, rp: RowPredictions, eb_mean: np.ndarray, eb_sd: np.ndarray,
              kind: EbKind, unseen: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The per-row output table (module doc) from the model's rows `frame` and their predictions."""
    cols: dict[str, object] = {ROW: row_numbers(frame).to_numpy()}
    for lv in model.levels:
        if lv.column not in cols:
            cols[lv.column] = frame[lv.column].to_numpy()
    stack = model.spec.data.stack
    if stack is not None and stack.item not in cols:
        cols[stack.item] = frame[stack.item].to_numpy()
    for eq in model.spec.responses:
        if eq.choice is not None and eq.choice.alternatives in frame.columns and eq.choice.alternatives not in cols:
            cols[eq.choice.alternatives] = frame[eq.choice.alternatives].to_numpy()
    if len(model.equations) > 1:
        cols["equation"] = np.array([eq.name for eq in model.equations], dtype=object)[model.eq_of_row]
    for name in PREDICTION_COLUMNS:
        cols[name] = getattr(rp, name)
    if any(eq.family.name in GAUSSIAN for eq in model.equations):
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
    if model.discrete:
        from mlmrun.postest.discrete import discrete_unit_table

        return discrete_unit_table(model, frame, preds[0], kind)  # type: ignore[arg-type]
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
    if model.discrete:
        from mlmrun.postest.discrete import discrete_tables

        return discrete_tables(model, values, frame, preds, kind)
    units = {model.levels[lvl].name: model.levels[lvl].codes for lvl in {lat.level for lat in model.latent}}
    eb_mean, eb_sd = per_row_latent(model, values, preds, units)
    rp = row_predictions(model, values, eb_mean)
    return Predictions(row_table(model, frame, rp, eb_mean, eb_sd, kind), unit_table(model, frame, preds, kind))
