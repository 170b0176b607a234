"""Items and residual covariances: which item (lavaan's observed variable) each row measures.

In a stacked (long) layout every row is one response of one unit to one item;
the item is named by a column: `residual_covariances.by`, else the gaussian
response's `variance_by`, else the first `loadings.by`, else `data.stack.item`.
Residual covariances (lavaan's `y1 ~~ y5`) are parameters between two items
within a unit; each becomes one partable row `cov(Residual:A,B)` of block
'rescov' (a covariance, any sign), fixed or free, and can be set equal to
others through `constraints.equal` like any parameter.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmrun.compile.partable import ParTableBuilder
from mlmrun.errors import Loc, SpecError
from mlmrun.spec.model import ResidualPair, Spec


@dataclass(frozen=True)
class Items:
    """Item of every row (codes into `labels`) and the residual covariances between items."""

    column: str | None
    codes: np.ndarray | None
    labels: tuple[str, ...]
    rescov: tuple[tuple[int, int, int], ...]
    """(item a, item b, partable row) for each residual covariance."""


def item_column(spec: Spec) -> str | None:
    """The column naming each row's item (see the module docstring), None when the spec names none."""
    if spec.residual_covariances is not None and spec.residual_covariances.by:
        return spec.residual_covariances.by
    for eq in spec.responses:
        if eq.variance_by:
            return eq.variance_by
    for lat in spec.latent:
        if lat.loadings is not None and lat.loadings.by:
            return lat.loadings.by
    return spec.data.stack.item if spec.data.stack is not None else None


def _pair(entry: list | ResidualPair) -> tuple[list[str], float | None, float | None]:
    if isinstance(entry, ResidualPair):
        return [str(x) for x in entry.between], entry.fix, entry.start
    return [str(x) for x in entry], None, None


def _unit_level(spec: Spec) -> str:
    levels = {lat.level for lat in spec.latent}
    if len(levels) == 1:
        return next(iter(levels))
    nested = [lv.name for lv in spec.levels if not lv.crossed]
    if len(levels) == 0 and len(nested) == 1:
        return nested[0]
    raise SpecError.at(("residual_covariances",), "residual covariances are between items of one unit: the latent "
                                                  "variables must all vary over one level (the unit), here "
                                                  f"{sorted(levels) or 'none'}; put the latent variables at one level")


def compile_items(spec: Spec, frame: pd.DataFrame, pt: ParTableBuilder) -> Items:
    """Item codes per row and the partable rows of the residual covariances."""
    column = item_column(spec)
    rc = spec.residual_covariances
    if column is None or column not in frame.columns:
        if rc is not None:
            raise SpecError.at(("residual_covariances",), "no column names the item of each row; write "
                                                          "`by: COLUMN` (e.g. the data.stack item column)")
        return Items(None, None, (), ())
    codes, uniques = pd.factorize(frame[column].astype(str), sort=True)
    labels = tuple(str(u) for u in uniques)
    if rc is None:
        return Items(column, codes.astype(np.intp), labels, ())
    not_gaussian = [k for k, eq in enumerate(spec.responses) if eq.family != "gaussian" or eq.link not in (None, "identity")]
    if not_gaussian:
        raise SpecError.at(("responses", not_gaussian[0], "family"), "residual covariances are only defined between "
                                                                    "gaussian responses with the identity link; drop "
                                                                    "`residual_covariances:` or use family: gaussian")
    level = _unit_level(spec)
    entries: list[tuple[int, int, int]] = []
    seen: dict[frozenset[str], int] = {}
    for j, entry in enumerate(rc.pairs):
        items, fix, start = _pair(entry)
        base: Loc = ("residual_covariances", "pairs", j) + (("between",) if isinstance(entry, ResidualPair) else ())
        if len(items) != 2:
            raise SpecError.at(base, f"a residual covariance joins two items, {len(items)} given; write [A, B]")
        for k, item in enumerate(items):
            if item not in labels:
                close = difflib.get_close_matches(item, labels, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"its items are {list(labels)[:20]}"
                raise SpecError.at(base + (k,), f"'{item}' is not an item (a value of column '{column}'); {hint}")
        if items[0] == items[1]:
            raise SpecError.at(base, f"[{items[0]}, {items[1]}] names one item twice; a residual variance is "
                                     "sd(Residual...) in the parameter table, a covariance needs two different items")
        key = frozenset(items)
        if key in seen:
            raise SpecError.at(base, f"the covariance of {items[0]} and {items[1]} is already pair {seen[key]}; "
                                     "list each pair once")
        seen[key] = j
        a, b = labels.index(items[0]), labels.index(items[1])
        value = fix if fix is not None else (start if start is not None else 0.0)
        row = pt.add(f"cov(Residual:{items[0]},{items[1]})", "rescov", value=float(value), free=fix is None,
                     lhs=items[0], op="~~", rhs=items[1], level=level)
        entries.append((a, b, row))
    return Items(column, codes.astype(np.intp), labels, tuple(entries))
