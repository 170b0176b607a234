"""The data rows a model was compiled from, numbered as in the data file, with their level ids as read.

The pipeline filters rows (`data.filter`), may stack a wide file long
(`data.stack`) and drops rows with a missing value in a used column; the
compiled model keeps only arrays. Predictions are reported per row of the
data file, so the same steps are applied here to the raw table with a row
number column added before any of them: the survivors line up one to one,
in order, with the model's rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlmrun.compile import used_columns
from mlmrun.compile.choice import expand_per_choice
from mlmrun.compile.data_checks import drop_missing
from mlmrun.data.load import apply_filters, read_table
from mlmrun.data.reshape import stack_long
from mlmrun.postest.usage import UsageError
from mlmrun.spec.model import Spec

ROW = "row"
"""Output column: 1-based row of the data file (for a stacked file, the row of the wide file)."""
_ROW_KEY = "__mlmrun_row__"


def numbered(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a raw table with its 1-based row numbers in a hidden column."""
    out = frame.copy()
    out[_ROW_KEY] = range(1, len(out) + 1)
    return out


def filtered_rows(spec: Spec, raw: pd.DataFrame) -> pd.DataFrame:
    """A raw table after the spec's filters and stacking: what load_data hands to compile_model."""
    frame = apply_filters(raw, spec.data)
    if spec.data.stack is not None:
        frame = stack_long(frame, spec.data.stack)
    return frame


def prepared_rows(spec: Spec, raw: pd.DataFrame) -> pd.DataFrame:
    """The rows of a numbered raw table that the model uses, in the model's order (filters, stack, per_choice
    expansion to one row per alternative, missing values)."""
    frame, _ = drop_missing(expand_per_choice(spec, filtered_rows(spec, raw)), used_columns(spec))
    return frame


def row_numbers(frame: pd.DataFrame) -> pd.Series:
    """The `row` column of a frame from `prepared_rows`."""
    return frame[_ROW_KEY].rename(ROW)


def read_data_file(path: str | Path, sha256: str, key: str = "data.path") -> pd.DataFrame:
    """The spec's data file, numbered; UsageError when it is no longer the file that was fitted."""
    frame, digest = read_table(Path(path), key)
    if digest != sha256:
        raise UsageError(f"{key}: the data file changed while it was read (SHA-256 {digest[:12]}... instead of "
                        f"{sha256[:12]}...); run again")
    return numbered(frame)


def model_rows(spec: Spec, raw: pd.DataFrame, n: int) -> pd.DataFrame:
    """`prepared_rows` checked to line up with a model of `n` rows."""
    frame = prepared_rows(spec, raw)
    if len(frame) != n:
        raise UsageError(f"data: {len(frame)} rows are used when the data are read again, but the model has {n}; "
                        "run again on an unchanged data file")
    return frame
