"""Level index arrays: which unit of each level every row belongs to, and nesting checks.

Unit ids are compared as numbers when every non-missing id of a level's
column reads as a number, so 1, 1.0 and 01 are one unit (a CSV column that
mixes them, or ids stored as text, must not split a unit in three); otherwise
they are compared as text. Numeric ids are labelled in their shortest form
(1.0 -> "1"). A `within_parent` level numbers its units within the unit
above, so its unit label is the path from the top: "3/2" is unit 2 of
parent unit 3 (and "1/3/2" one level further down). These labels are the
`units` of results.json's `empirical_bayes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmrun.data.shown import excerpt
from mlmrun.errors import DataError
from mlmrun.spec.model import Level

UNIT_PATH_SEPARATOR = "/"
"""Joins a within_parent unit's label to its parent's: "3/2" is unit 2 within parent unit 3."""


@dataclass(frozen=True)
class LevelIndex:
    """Units of one level: `codes[row]` in 0..n_units-1, and for nested levels `parent[unit]` at the next nested level."""

    name: str
    column: str
    codes: np.ndarray
    n_units: int
    labels: np.ndarray
    crossed: bool
    parent: np.ndarray | None

    def sizes(self) -> np.ndarray:
        """Number of rows in each unit."""
        return np.bincount(self.codes, minlength=self.n_units)


def unit_ids(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes per row, sorted unit labels) of an id column, ids equal as numbers being one unit.

    A text column without missing values is coded through its distinct values
    (a few dozen ids in thousands of rows, each pandas step on the column costing
    more than a small model's fit set-up): reading ids as numbers works value by value, so
    coding the distinct ids and mapping each row to its id's code gives the same
    codes and labels; an id without a digit rules out numbers at once. Text ids sort by code point, as pandas
    sorts text.
    """
    if isinstance(values.dtype, pd.StringDtype):
        first, distinct = pd.factorize(values.to_numpy(dtype=object))
        if len(first) and first.min() >= 0:
            maybe_numbers = all(_may_be_number(text) for text in distinct)
            keys = _numeric_ids(pd.Series(distinct, dtype=values.dtype)) if maybe_numbers else None
            if keys is None:
                order = sorted(range(len(distinct)), key=distinct.__getitem__)
                rank = np.empty(len(order), dtype=np.intp)
                rank[order] = np.arange(len(order), dtype=np.intp)
                return rank[first], distinct[order]
            codes, uniques = pd.factorize(keys, sort=True)
            return codes.astype(np.intp)[first], np.array([_number_label(v) for v in uniques], dtype=object)
    return _unit_ids(values)


def _may_be_number(text: str) -> bool:
    """False for text no number parser reads as a number other than NaN: without a digit and not 'inf'/'infinity'."""
    return any(c.isdigit() for c in text) or "inf" in text.lower()


def _unit_ids(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    keys = _numeric_ids(values)
    if keys is None:
        codes, uniques = pd.factorize(values.astype(str), sort=True)
        return codes.astype(np.intp), np.asarray(uniques, dtype=object)
    codes, uniques = pd.factorize(keys, sort=True)
    return codes.astype(np.intp), np.array([_number_label(v) for v in uniques], dtype=object)


def _numeric_ids(values: pd.Series) -> np.ndarray | None:
    """The ids as numbers when every non-missing one is a number (numeric column, or text like '01', '1.0').

    Integer ids stay integers (int64), so long ids beyond 2**53 are not merged by rounding.
    """
    if pd.api.types.is_bool_dtype(values):
        return None
    if pd.api.types.is_numeric_dtype(values):
        numbers = values
    else:
        numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
        if (numbers.isna() & values.notna()).any():
            return None
    if pd.api.types.is_integer_dtype(numbers):
        return numbers.to_numpy()
    return numbers.to_numpy(dtype=float) + 0.0  # -0.0 and 0.0 are one id


def _number_label(value: float | int) -> str:
    """Shortest text of a numeric id: integral values without '.0'."""
    if isinstance(value, int | np.integer):
        return str(int(value))
    if np.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _nested_units(own: pd.Series, parent: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(codes, labels) of a level; with `parent` (its codes, labels) the ids count within each parent unit."""
    codes, labels = unit_ids(own)
    if parent is None:
        return codes, labels
    up_codes, up_labels = parent
    pair = up_codes.astype(np.int64) * max(len(labels), 1) + codes
    pair_codes, pairs = pd.factorize(pair, sort=True)
    up_of, own_of = np.divmod(np.asarray(pairs, dtype=np.int64), max(len(labels), 1))
    joined = np.array([f"{up_labels[u]}{UNIT_PATH_SEPARATOR}{labels[o]}" for u, o in zip(up_of, own_of, strict=True)],
                      dtype=object)
    return pair_codes.astype(np.intp), joined


def unit_parent_pairs(codes: np.ndarray, up_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (unit, parent unit) pairs of the rows, in order of first appearance."""
    width = int(up_codes.max(initial=0)) + 1
    key = codes.astype(np.int64) * width + up_codes.astype(np.int64)
    _, first = np.unique(key, return_index=True)
    distinct = key[np.sort(first)]
    return (distinct // width).astype(np.intp), (distinct % width).astype(np.intp)


def build_levels(frame: pd.DataFrame, levels: list[Level]) -> list[LevelIndex]:
    """Index every declared level; nested levels (in order, lowest first) must nest in the next one up."""
    nested = [lv for lv in levels if not lv.crossed]
    units: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for pos in range(len(nested) - 1, -1, -1):
        lv = nested[pos]
        parent = units[nested[pos + 1].name] if lv.within_parent and pos + 1 < len(nested) else None
        units[lv.name] = _nested_units(frame[lv.id], parent)
    out: dict[str, LevelIndex] = {}
    for pos, lv in enumerate(nested):
        codes, labels = units[lv.name]
        parent = None
        if pos + 1 < len(nested):
            up = nested[pos + 1]
            up_codes, _ = units[up.name]
            unit, parent_of = unit_parent_pairs(codes, up_codes)
            dup = np.bincount(unit, minlength=len(labels))[unit] > 1
            if dup.any():
                bad = labels[unit[dup][0]]
                raise DataError(
                    f"levels.{levels.index(lv)}.id: level '{lv.name}' (column {lv.id}) is not nested in level "
                    f"'{up.name}' (column {up.id}): {lv.id}={excerpt(bad)} occurs in several {up.name} units. "
                    f"If {lv.id} numbers units within each {up.name}, write `within_parent: true` on level "
                    f"'{lv.name}'; if the factors are crossed, write `crossed: true`."
                )
            parent = np.empty(len(labels), dtype=np.intp)
            parent[unit] = parent_of
        out[lv.name] = LevelIndex(lv.name, lv.id, codes, len(labels), labels, False, parent)
    for lv in levels:
        if lv.crossed:
            codes, labels = unit_ids(frame[lv.id])
            out[lv.name] = LevelIndex(lv.name, lv.id, codes, len(labels), labels, True, None)
    return [out[lv.name] for lv in levels]
