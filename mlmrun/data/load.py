"""Read the data file a spec names, apply row filters and stacking."""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlmrun.data.reshape import stack_long
from mlmrun.errors import DataError
from mlmrun.spec.model import DataSpec

_OPS = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class LoadedData:
    """The prepared data frame plus what the report needs to say about it."""

    frame: pd.DataFrame
    sha256: str
    n_rows: int
    path: str


def read_table(path: Path) -> pd.DataFrame:
    """Read CSV, Parquet or Stata .dta by extension."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".dta":
            return pd.read_stata(path)
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def apply_filters(frame: pd.DataFrame, spec: DataSpec) -> pd.DataFrame:
    """Keep rows satisfying every filter of the spec."""
    keep = pd.Series(True, index=frame.index)
    for flt in spec.filter:
        if flt.column not in frame.columns:
            raise DataError(f"filter column '{flt.column}' is not in the data; columns are {list(frame.columns)}")
        try:
            keep &= _OPS[flt.op](frame[flt.column], flt.value).fillna(False).astype(bool)
        except TypeError:
            raise DataError(f"filter {flt.column} {flt.op} {flt.value!r}: cannot compare column of type {frame[flt.column].dtype} with {flt.value!r}") from None
    return frame.loc[keep].reset_index(drop=True)


def spec_relative_path(base_dir: Path, name: str, key: str, allow_outside: bool = False) -> Path:
    """Resolve a file a spec names, relative to the spec's folder.

    Specs may come from untrusted pull requests run in CI, and error messages quote
    what they read (e.g. a file's column names), so by default a spec may only name
    files inside its own folder: no absolute paths and no `..` escaping it.
    """
    base = base_dir.resolve()
    path = (base / name).resolve()
    if not allow_outside and (Path(name).is_absolute() or not path.is_relative_to(base)):
        raise DataError(
            f"{key}: '{name}' is outside the spec's folder {base}; put the file inside it (e.g. data/), "
            "or, for a spec you trust, pass --allow-outside-data"
        )
    return path


def load_data(spec: DataSpec, base_dir: Path, allow_outside: bool = False) -> LoadedData:
    """Read, filter and stack the data of a spec; paths are relative to the spec file's folder."""
    path = spec_relative_path(base_dir, spec.path, "data.path", allow_outside)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""
    frame = read_table(path)
    frame = apply_filters(frame, spec)
    if spec.stack is not None:
        frame = stack_long(frame, spec.stack)
    return LoadedData(frame=frame, sha256=digest, n_rows=len(frame), path=str(path))
