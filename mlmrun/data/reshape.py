"""Wide -> long stacking declared in the spec (no reshaping by hand)."""

from __future__ import annotations

import pandas as pd

from mlmrun.data.shown import columns_hint, excerpt, excerpts
from mlmrun.errors import DataError
from mlmrun.spec.model import Stack


def stack_long(frame: pd.DataFrame, stack: Stack) -> pd.DataFrame:
    """One row per (row, stacked column); other columns are repeated, rows ordered by original row then item."""
    missing = [c for c in stack.columns if c not in frame.columns]
    if missing:
        raise DataError(f"data.stack.columns: {excerpts(missing)} not in the data; {columns_hint(frame.columns)}")
    names = (stack.item, stack.value) + ((stack.id,) if stack.id else ())
    for i, new in enumerate(names):
        if new in frame.columns or new in names[:i]:  # an existing column, or two new ones of one name
            raise DataError(f"data.stack: stacking would create column {excerpt(new)}, which already exists; "
                            "choose another name")
    keep = [c for c in frame.columns if c not in stack.columns]
    wide = frame.copy()
    if stack.id:
        wide[stack.id] = range(1, len(wide) + 1)
        keep = keep + [stack.id]
    wide["__row"] = range(len(wide))
    long = wide.melt(id_vars=keep + ["__row"], value_vars=list(stack.columns), var_name=stack.item, value_name=stack.value)
    order = {c: i for i, c in enumerate(stack.columns)}
    long["__item_order"] = long[stack.item].map(order)
    long = long.sort_values(["__row", "__item_order"], kind="stable").drop(columns=["__row", "__item_order"])
    if stack.labels:
        long[stack.item] = long[stack.item].map(lambda c: stack.labels.get(c, c))
    return long.reset_index(drop=True)
