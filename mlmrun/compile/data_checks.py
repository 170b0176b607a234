"""Checks of the data a model uses: missing values dropped and counted, infinite values, numeric columns, level sizes.

Every message names the spec key (e.g. responses.0.trials) and the column, and
quotes cell values only as short sanitised excerpts (data/shown.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from mlmrun.compile.model import LatentVar
from mlmrun.data.levels import LevelIndex
from mlmrun.data.shown import excerpt, excerpts
from mlmrun.errors import DataError


def drop_missing(frame: pd.DataFrame, cols: dict[str, str]) -> tuple[pd.DataFrame, int]:
    """Drop rows with a missing value in any used column (missing at random), counting them.

    Missing means an empty cell or NA; infinite numbers are not missing but an
    error (see check_finite). When no row is left, the message names each
    column with missing values and how many. Each used column is looked at
    once, as an array (pandas' frame-wide isna costs more than a small model's fit set-up);
    with nothing to drop the frame itself comes back (compiling never changes it).
    """
    complete = np.ones(len(frame), dtype=bool)
    for col in cols:
        missing = missing_mask(frame[col])
        if missing is not None:
            complete &= ~missing
    n_dropped = int(len(frame) - np.count_nonzero(complete))
    if not complete.any():
        used = frame[list(cols)]
        counts = used.isna().sum()
        worst = counts[counts > 0].sort_values(ascending=False, kind="stable")
        listed = ", ".join(f"{excerpt(c)} ({cols[c]}) {int(n)} missing" for c, n in worst.items()) or "no data rows"
        raise DataError(f"data: no rows left after dropping rows with a missing value in the columns the model uses "
                        f"(of {len(frame)} rows): {listed}; fill in the missing values or drop those columns from the model")
    if n_dropped == 0 and _default_index(frame):
        return frame, 0
    return frame.loc[complete].reset_index(drop=True), n_dropped


def missing_mask(values: pd.Series) -> np.ndarray | None:
    """`values.isna()` as a numpy array, or None when the column's dtype cannot hold a missing value (numpy ints, bools)."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind in "iub":
            return None
        if dtype.kind == "f":
            return np.isnan(values.to_numpy())
        return pd.isna(values.to_numpy())
    return np.asarray(values.array.isna(), dtype=bool)


def _default_index(frame: pd.DataFrame) -> bool:
    """True when the frame's index is 0, 1, ..., n-1 (what reset_index(drop=True) makes)."""
    index = frame.index
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def used_series(frame: pd.DataFrame, cols: dict[str, str]) -> dict[str, pd.Series]:
    """Each used column of `frame` looked up once, for the checks below (a pandas column lookup is not free)."""
    return {col: frame[col] for col in cols}


def check_finite(frame: pd.DataFrame, cols: dict[str, str], series: Mapping[str, pd.Series] | None = None) -> None:
    """Refuse infinite values (inf, -inf) in numeric columns: they are not missing values, and no model can use them.

    `series`: the columns of `frame` already looked up (used_series), else they are looked up here.
    """
    problems = []
    for col, where in cols.items():
        values = series[col] if series is not None else frame[col]
        dtype = values.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "iub":
            continue  # numpy integers and booleans hold no infinite value
        if isinstance(dtype, np.dtype) and dtype.kind == "f":
            n_inf = int(np.isinf(values.to_numpy()).sum())
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            n_inf = int(np.isinf(values.to_numpy(dtype=float)).sum())
        else:
            continue
        if n_inf:
            problems.append(f"{where}: column {excerpt(col)} has {n_inf} infinite value{'s' * (n_inf > 1)} "
                            f"(inf or -inf) of {len(values)}; mlmrun treats only empty cells as missing, so "
                            "remove or recode them (e.g. leave the cell empty)")
    if problems:
        raise DataError("; ".join(problems))


NUMERIC_SHARE = 0.9
"""A text column whose non-missing values are at least this share numbers is taken for a numeric one with stray text."""

_NUMERIC_ROLES = ("fixed", "responses.", "random.", "latent.", "structural.")


def check_stray_text(frame: pd.DataFrame, cols: dict[str, str], series: Mapping[str, pd.Series] | None = None) -> None:
    """Refuse a covariate column of numbers with a few text cells (e.g. 'n/a', '3,5').

    Read as text, such a column would become a category with one level per
    distinct value (thousands of parameters, a slow rank check and a wrong
    model) instead of the covariate the spec means. Level ids, `select` and
    `variance_by` columns are categories by nature, and responses have checks of their own.
    `series`: the columns of `frame` already looked up (used_series), else they are looked up here.
    """
    problems = []
    for col, where in cols.items():
        if not where.startswith(_NUMERIC_ROLES) or where.endswith((".name", ".select", ".variance_by", ".by")):
            continue
        values = series[col] if series is not None else frame[col]
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iufcb":
            continue  # numbers or booleans already
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        present = values.dropna()
        n_bad, examples = _not_numbers(present)
        if len(present) >= 2 and 0 < n_bad <= (1.0 - NUMERIC_SHARE) * len(present):
            problems.append(f"{where}: column {excerpt(col)} holds numbers except {n_bad} of its {len(present)} values, "
                            f"e.g. {excerpts(examples, 3)}; as text it would become a category with a level per "
                            "distinct value, so fix those cells (leave a missing value empty)")
    if problems:
        raise DataError("; ".join(problems))


def _not_numbers(present: pd.Series) -> tuple[int, np.ndarray]:
    """How many of the (non-missing) values are not numbers, and those distinct values in order of appearance.

    Text columns are converted value by value, so each distinct value is tried once (a column of 'M'/'F' over
    thousands of rows costs two conversions, not thousands), and the rows are counted only where some distinct
    values are numbers and some are not; other dtypes are converted whole.
    """
    if pd.api.types.is_string_dtype(present.dtype):
        uniques = np.asarray(present.unique(), dtype=object)
        not_number = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce").isna().to_numpy()
        if not not_number.any():
            return 0, uniques[:0]
        if not_number.all():
            return len(present), uniques
        codes, order = pd.factorize(present)
        bad_code = pd.to_numeric(pd.Series(np.asarray(order, dtype=object), dtype=object), errors="coerce").isna()
        return int(bad_code.to_numpy()[codes].sum()), uniques[not_number]
    numbers = pd.to_numeric(present, errors="coerce")
    bad = present[numbers.isna()]
    return len(bad), pd.unique(bad)


def numeric_column(frame: pd.DataFrame, col: str, rows: np.ndarray, key: str) -> np.ndarray:
    """Column `col` on `rows` as floats; text that is not a number is an error naming `key` and the column."""
    values = frame[col] if len(rows) == len(frame) else frame[col].iloc[rows]  # rows are ascending: all = 0..n-1
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=float)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values[numbers.isna() & values.notna()]
    if len(bad):
        many = len(bad) > 1
        raise DataError(f"{key}: column {excerpt(col)} must be numeric; {len(bad)} of its values "
                        f"{'are' if many else 'is'} not a number, e.g. {excerpts(pd.unique(bad), 3)}; "
                        "recode the column as numbers")
    out = numbers.to_numpy(dtype=float)
    if np.isinf(out).any():
        raise DataError(f"{key}: column {excerpt(col)} has {int(np.isinf(out).sum())} infinite values; "
                        "remove or recode them")
    return out


def check_level_sizes(levels: list[LevelIndex], latent: list[LatentVar]) -> None:
    """A level that carries random effects or latent variables needs at least two units (lme4 refuses one too)."""
    for lat in latent:
        lv = levels[lat.level]
        if lv.n_units < 2:
            raise DataError(
                f"levels.{lat.level}.id: level '{lv.name}' (column {excerpt(lv.column)}) has a single unit in the rows "
                f"used ({lv.column} = {excerpt(lv.labels[0]) if len(lv.labels) else '?'}), so the variance of "
                f"'{lat.name}' at that level cannot be estimated; use data with several units or drop the level's "
                "random effects"
            )
