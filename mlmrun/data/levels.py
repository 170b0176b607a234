"""Level index arrays: which unit of each level every row belongs to, and nesting checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmrun.errors import DataError
from mlmrun.spec.model import Level


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


def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.intp), np.asarray(uniques)


def build_levels(frame: pd.DataFrame, levels: list[Level]) -> list[LevelIndex]:
    """Index every declared level; nested levels (in order, lowest first) must nest in the next one up."""
    nested = [lv for lv in levels if not lv.crossed]
    out: dict[str, LevelIndex] = {}
    keys: dict[str, pd.Series] = {}
    for pos in range(len(nested) - 1, -1, -1):
        lv = nested[pos]
        key = frame[lv.id].astype(str)
        if lv.within_parent and pos + 1 < len(nested):
            key = keys[nested[pos + 1].name] + "\x1f" + key
        keys[lv.name] = key
    for pos, lv in enumerate(nested):
        codes, labels = _codes(keys[lv.name])
        parent = None
        if pos + 1 < len(nested):
            up = nested[pos + 1]
            up_codes, _ = _codes(keys[up.name])
            pairs = pd.DataFrame({"unit": codes, "parent": up_codes}).drop_duplicates()
            dup = pairs["unit"].duplicated(keep=False)
            if dup.any():
                bad = labels[pairs.loc[dup, "unit"].iloc[0]]
                raise DataError(
                    f"levels.{levels.index(lv)}.id: level '{lv.name}' (column {lv.id}) is not nested in level '{up.name}' (column {up.id}): "
                    f"{lv.id}={bad} occurs in several {up.name} units. If {lv.id} numbers units within each {up.name}, "
                    f"write `within_parent: true` on level '{lv.name}'; if the factors are crossed, write `crossed: true`."
                )
            parent = np.empty(len(labels), dtype=np.intp)
            parent[pairs["unit"].to_numpy()] = pairs["parent"].to_numpy()
        out[lv.name] = LevelIndex(lv.name, lv.id, codes, len(labels), labels, False, parent)
    for lv in levels:
        if lv.crossed:
            codes, labels = _codes(frame[lv.id].astype(str))
            out[lv.name] = LevelIndex(lv.name, lv.id, codes, len(labels), labels, True, None)
    return [out[lv.name] for lv in levels]
