"""Read the data file a spec names, apply row filters and stacking.

Which files may be read, and how, is files.py's job; messages quote values
from the file only as short sanitised excerpts (shown.py).
"""

from __future__ import annotations

import hashlib
import io
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun.data.files import DATA_SUFFIXES, read_regular_file, spec_file, spec_relative_path
from mlmrun.data.reshape import stack_long
from mlmrun.data.shown import columns_hint, excerpt, printable, shown_path
from mlmrun.data.stata import read_stata_labelled
from mlmrun.errors import DataError
from mlmrun.spec.model import DataSpec

__all__ = ["LoadedData", "apply_filters", "load_data", "read_table", "spec_relative_path"]

_OPS = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class LoadedData:
    """The prepared data frame plus what the report needs to say about it."""

    frame: pd.DataFrame
    sha256: str
    n_rows: int
    path: str


def read_table(path: Path, key: str = "data.path", numeric: Iterable[str] = ()) -> tuple[pd.DataFrame, str]:
    """Read CSV, TSV, Parquet or Stata .dta by extension; returns the frame and the SHA-256 of the bytes read.

    Stata value labels (stata.py): labelled columns become categories named by their labels, except the
    columns in `numeric` (the response columns), which keep their numeric codes (a labelled 0/1 outcome).

    The file is read once (as bytes, after the checks of files.read_regular_file)
    and parsed from memory, so the digest is that of exactly what was parsed.
    Parser messages are shortened and sanitised: they must not carry a file's lines.
    """
    raw = read_regular_file(path, key)
    digest = hashlib.sha256(raw).hexdigest()
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(io.BytesIO(raw))
        elif suffix == ".dta":
            frame = read_stata_labelled(raw, frozenset(numeric))
        else:
            frame = pd.read_csv(io.BytesIO(raw), sep="\t" if suffix == ".tsv" else ",")
    except ImportError:
        raise DataError(f"{key}: reading Parquet ({shown_path(path)}) needs the pyarrow package, which is not installed; "
                        "install it (pip install 'pyarrow>=14') or save the data as CSV") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{key}: {shown_path(path)} has no header row (no columns); the first line must name the columns") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{key}: {shown_path(path)} is not UTF-8 text (undecodable byte at offset {exc.start}); "
                        "save it as UTF-8") from None
    except Exception as exc:  # each reader (C parser, pyarrow, Stata) raises its own types for a malformed file
        raise DataError(f"{key}: cannot read {shown_path(path)} as {suffix.lstrip('.')}: "
                        f"{printable(' '.join(str(exc).split())[:160])}; save it as valid {suffix.lstrip('.')}") from None
    if len(frame.columns) and not len(frame):
        raise DataError(f"{key}: {shown_path(path)} has a header ({columns_hint(frame.columns)}) but no data rows; add data rows")
    return frame, digest


def apply_filters(frame: pd.DataFrame, spec: DataSpec) -> pd.DataFrame:
    """Keep rows satisfying every filter of the spec (without filters, the frame itself when its index is 0..n-1)."""
    if not spec.filter and len(frame) and isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 \
            and frame.index.step == 1:
        return frame
    keep = np.ones(len(frame), dtype=bool)
    for i, flt in enumerate(spec.filter):
        if flt.column not in frame.columns:
            raise DataError(f"data.filter.{i}: column {excerpt(flt.column)} is not in the data; "
                            f"{columns_hint(frame.columns)}")
        try:
            keep &= _matches(frame[flt.column], flt.op, flt.value)
        except TypeError:
            raise DataError(f"data.filter.{i}: {excerpt(flt.column)} {flt.op} {excerpt(flt.value)}: cannot compare "
                            f"a column of type {frame[flt.column].dtype} with {excerpt(flt.value)}; compare a text column "
                            "with == or != and one of its values, or filter a numeric column") from None
    if not keep.any():
        raise DataError(f"data.filter: no row satisfies every filter (of {len(frame)} rows read); relax the filters")
    return frame.loc[keep].reset_index(drop=True)


def _matches(column: pd.Series, op: str, value: object) -> np.ndarray:
    """Rows where `column op value` holds, missing values never matching except under != (as pandas compares).

    A numeric column against a number is compared by numpy directly: what pandas does for it, without its overhead.
    """
    numeric = isinstance(column.dtype, np.dtype) and column.dtype.kind in "iuf"
    if numeric and isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 2**53:
        return np.asarray(_OPS[op](column.to_numpy(), value), dtype=bool)
    return _OPS[op](column, value).fillna(False).astype(bool).to_numpy()


def load_data(spec: DataSpec, base_dir: Path, allow_outside: bool = False, numeric: Iterable[str] = ()) -> LoadedData:
    """Read, filter and stack the data of a spec; paths are relative to the spec file's folder.

    `numeric`: columns whose Stata value labels are dropped for their codes (see read_table).
    """
    from mlmrun.data.dataset import dataset_files, is_dataset, read_dataset

    if is_dataset(base_dir, spec.path, allow_outside):  # a partitioned Parquet folder (data/dataset.py)
        path = spec_relative_path(base_dir, spec.path, "data.path", allow_outside)
        frame, digest = read_dataset(dataset_files(base_dir, spec.path, "data.path", allow_outside))
    else:
        path = spec_file(base_dir, spec.path, "data.path", DATA_SUFFIXES, allow_outside)
        frame, digest = read_table(path, numeric=numeric)
    frame = apply_filters(frame, spec)
    if spec.stack is not None:
        frame = stack_long(frame, spec.stack)
    return LoadedData(frame=frame, sha256=digest, n_rows=len(frame), path=str(path))
