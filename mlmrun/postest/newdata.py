"""Predictions for new rows (`mlmrun predict --data NEW`): fitted units keep their EB predictions, unseen units
get a zero disturbance (EB = 0 for a random effect; see predict.per_row_latent) and are flagged.

The new rows are compiled together with the fitted data, so that every design
column (categories of C(), interactions) and every unit label is built exactly
as for the fit; the estimates are then put on that model's parameter table by
name. A response cell may be empty in the new file (there is nothing to
predict it from): it is filled with a valid placeholder for compiling, and the
row's residuals are left empty. The fitted data's rows do not enter the new
predictions. The spec's filters and stacking apply to the new rows as to the fitted ones (a row a
filter drops is not predicted). Refused, with what to do: formulas with center(), scale() or
poly(), whose columns depend on the rows they are computed on; new values of a
category (a design column the fit has no estimate for); a response column's
trials or other used columns missing from the new file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun.compile import compile_model, used_columns
from mlmrun.data.load import LoadedData, read_table
from mlmrun.display import display_path, excerpt
from mlmrun.errors import MlmrunError
from mlmrun.postest.discrete import refuse_new_data
from mlmrun.postest.frames import filtered_rows, model_rows, numbered
from mlmrun.postest.predict import Predictions, per_row_latent, row_table
from mlmrun.postest.rows import row_predictions
from mlmrun.postest.units import EbKind
from mlmrun.postest.usage import UsageError
from mlmrun.predict import LevelPrediction
from mlmrun.results import FitResult
from mlmrun.spec.model import Spec

_NEW = "__mlmrun_new__"
_SET = "__mlmrun_set{k}__"
_DATA_DEPENDENT = re.compile(r"\b(center|scale|poly)\s*\(")


def read_new_data(path: Path) -> pd.DataFrame:
    """The --data table (CSV, TSV, Parquet, .dta) as read; its path is relative to the working directory."""
    if not path.exists():
        raise UsageError(f"--data: no file {display_path(path)} (paths on the command line are relative to the "
                         "working directory); give the table of rows to predict for")
    frame, _ = read_table(path, "--data")
    return frame


def _formulas(fit: FitResult) -> list[str]:
    spec = fit.model.spec
    texts = [spec.fixed] + [eq.variance for eq in spec.responses if eq.variance]
    return texts + [str(term) for preds in spec.structural.Gamma.values() for term in preds]


def _with_responses(fit: FitResult, old: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """New rows with empty response cells filled by a value of the fitted data; and which rows were observed."""
    new = new.copy()
    observed = np.ones(len(new), dtype=bool)
    for eq in fit.model.spec.responses:
        if eq.name not in new.columns:
            new[eq.name] = np.nan
        missing = new[eq.name].isna().to_numpy()
        observed &= ~missing
        if missing.any():
            filler = old[eq.name].dropna().iloc[0]
            new[eq.name] = new[eq.name].astype(object).where(~missing, filler)
            if pd.api.types.is_numeric_dtype(old[eq.name]):
                new[eq.name] = pd.to_numeric(new[eq.name])
    return new, observed


def separate_sets(spec: Spec, both: pd.DataFrame) -> tuple[Spec, pd.DataFrame]:
    """Keep the new rows' choice sets apart from the fitted ones that carry the same set id.

    A per_alternative equation's sets are read from its `set:` column; a new row with a fitted set's id would
    join that set. The combined table gets a hidden set column (the id, tagged with old/new) and the spec
    points at it; the level ids are untouched, so a fitted unit stays seen.
    """
    responses = list(spec.responses)
    both = both.copy()
    for k, eq in enumerate(responses):
        if eq.choice is None or eq.choice.layout != "per_alternative" or not eq.choice.set:
            continue
        column = _SET.format(k=k)
        both[column] = both[_NEW].map({False: "fit:", True: "new:"}) + both[eq.choice.set].astype(str)
        both.loc[both[eq.choice.set].isna(), column] = np.nan
        responses[k] = eq.model_copy(update={"choice": eq.choice.model_copy(update={"set": column})})
    return spec.model_copy(update={"responses": responses}), both


def new_predictions(fit: FitResult, old_raw: pd.DataFrame, new_raw: pd.DataFrame, preds: list[LevelPrediction],
                    kind: EbKind, shown: str) -> Predictions:
    """The per-row table for the rows of `new_raw` (a raw table as read; rows numbered 1.. in it)."""
    model = fit.model
    refuse_new_data(model)
    spec = model.spec
    dependent = [t for t in _formulas(fit) if _DATA_DEPENDENT.search(t)]
    if dependent:
        raise UsageError(f"--data: the model's formula {excerpt(dependent[0])} uses center(), scale() or poly(), whose "
                         "columns depend on the rows they are computed on; write the transformed column into the "
                         "data (and the spec), refit, then predict")
    needed = [c for c in used_columns(spec) if c not in {eq.name for eq in spec.responses}]
    absent = [c for c in needed if c not in new_raw.columns]
    if absent:
        raise UsageError(f"--data: {shown} lacks the columns {excerpt(absent, 200)} that the model uses; add them")
    new_raw, observed = _with_responses(fit, old_raw, numbered(new_raw))
    new_raw[_NEW] = True
    new_raw["__mlmrun_observed__"] = observed
    old = old_raw.copy()
    old[_NEW] = False
    old["__mlmrun_observed__"] = True
    both = pd.concat([old, new_raw[[c for c in new_raw.columns if c in old.columns or c.startswith("__mlmrun")]]],
                     ignore_index=True)
    spec, both = separate_sets(spec, both)
    try:
        filtered = filtered_rows(spec, both)
        combined = compile_model(spec, LoadedData(frame=filtered, sha256=model.data_sha256, n_rows=len(filtered),
                                                  path=shown))
    except MlmrunError as exc:  # the fitted rows compile: the new rows are at fault
        raise UsageError(f"--data: {shown} with the fitted data: {exc}") from None
    frame = model_rows(spec, both, combined.n)
    fitted_names = [str(n) for n in model.partable.names]
    extra = [str(n) for n in combined.partable.names if str(n) not in set(fitted_names)]
    if extra:
        raise UsageError(f"--data: {shown} has values the fitted data do not have, which make the parameters "
                         f"{excerpt(extra[:5], 200)} (e.g. a new category); the fit has no estimate for them: "
                         "drop those rows or refit with them")
    position = {name: i for i, name in enumerate(fitted_names)}
    values = fit.values[[position[str(n)] for n in combined.partable.names]]
    units: dict[str, np.ndarray] = {}
    unseen: dict[str, np.ndarray] = {}
    by_level = {p.level: p for p in preds}
    for lvl in sorted({lat.level for lat in combined.latent}):
        lv = combined.levels[lvl]
        known = {label: i for i, label in enumerate(by_level[lv.name].units)} if lv.name in by_level else {}
        index = np.array([known.get(str(label), -1) for label in lv.labels])[lv.codes]
        units[lv.name], unseen[lv.name] = index, index < 0
    eb_mean, eb_sd = per_row_latent(combined, values, preds, units)
    rp = row_predictions(combined, values, eb_mean)
    table = row_table(combined, frame, rp, eb_mean, eb_sd, kind, unseen)
    keep = frame[_NEW].to_numpy(dtype=bool)
    observed_rows = frame["__mlmrun_observed__"].to_numpy(dtype=bool)
    for col in ("resid", "resid_pearson", "resid_deviance", "resid_standardized"):
        if col in table.columns:
            table.loc[~observed_rows, col] = np.nan
    out = table.loc[keep].reset_index(drop=True)
    return Predictions(out, pd.DataFrame())
