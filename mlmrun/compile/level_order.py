"""Levels listed highest first: detected before the nesting check, whose hint (`within_parent`) would mislead.

`levels:` lists the levels above the rows lowest first, and each nested level
must nest in the next one. Written the other way round ([district, person]),
the nesting check fails because district units span several persons, and its
suggestion `within_parent: true` would silently build a wrong hierarchy. The
tell-tale is nesting in reverse: every unit of the level listed higher lies
within one unit of the level listed lower, and some unit of the lower one
contains several of the higher one's units.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlmrun.errors import SpecError
from mlmrun.spec.model import Level


def _most_per_unit(frame: pd.DataFrame, unit: str, other: str) -> int:
    """Largest number of distinct `other` ids within one `unit` id (ids compared as text)."""
    if not len(frame):
        return 0
    units, others = _text_codes(frame[unit]), _text_codes(frame[other])
    if units is None or others is None:
        pairs = pd.DataFrame({"unit": frame[unit].astype(str), "other": frame[other].astype(str)})
        return int(pairs.groupby("unit", sort=False)["other"].nunique().max())
    width = int(others.max()) + 1
    distinct = np.unique(units.astype(np.int64) * width + others)
    return int(np.bincount(distinct // width).max())


def _text_codes(values: pd.Series) -> np.ndarray | None:
    """Codes with equal codes exactly for equal `values.astype(str)`, for columns where that needs no conversion:
    numpy integers (equal as text iff equal as numbers) and text without missing values; None for others."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return pd.factorize(values.to_numpy())[0]
    if isinstance(dtype, pd.StringDtype):
        codes = pd.factorize(values.to_numpy(dtype=object))[0]
        return codes if codes.min(initial=0) >= 0 else None
    return None


def check_level_order(frame: pd.DataFrame, levels: list[Level], carrying: set[str] | None = None) -> None:
    """SpecError at the first nested level that contains the level listed after it (levels are lowest first).

    Also refuses a level in `carrying` (levels with random effects or latent
    variables) whose every unit holds exactly one unit of the level below:
    its effects could not be told apart from the lower level's.
    """
    nested = [(i, lv) for i, lv in enumerate(levels) if not lv.crossed]
    for (i, lower), (j, upper) in zip(nested, nested[1:], strict=False):
        if lower.id != upper.id and _most_per_unit(frame, upper.id, lower.id) > 1:
            continue
        if lower.id != upper.id and _most_per_unit(frame, lower.id, upper.id) > 1:
            counts = {lv.name: frame[lv.id].astype(str).nunique() for _, lv in nested}
            order = sorted((lv for _, lv in nested), key=lambda lv: -counts[lv.name])
            written = ", ".join(f"{{name: {lv.name}, id: {lv.id}}}" for lv in order)
            raise SpecError.at(("levels", i), f"levels go lowest first, but level '{lower.name}' is listed below "
                                              f"'{upper.name}' while each '{lower.name}' unit contains several "
                                              f"'{upper.name}' units; list them lowest first: levels: [{written}]")
        if carrying is not None and upper.name in carrying:
            raise SpecError.at(("levels", j, "id"), f"every '{upper.name}' unit (column {upper.id}) holds exactly one "
                                                    f"'{lower.name}' unit, so effects at '{upper.name}' cannot be told "
                                                    f"apart from those at '{lower.name}'; a level must group several units "
                                                    "of the level below it: check the id column or drop the level")
