"""Residual covariance structures of a gaussian equation (`responses[k].residuals`), compiled from the data.

Stata's `mixed ..., residuals(S, t(time) by(g))`: the residuals of the rows of
one unit of the lowest level above the rows (a cluster) are correlated with
covariance R_j = D_j C_j D_j, D_j the residual SDs of its rows and C_j a
correlation matrix of structure S (likelihood/gaussian/residual_structures.py builds
them). Lags are differences of the time values, not of row positions, so gaps
count. `by` gives every category its own set of residual parameters.

This module checks the spec and the data (each problem located at its key),
adds the residual parameters to the table with Stata-like names (`phi1`,
`theta1`, `rho1`, `corr(e)`, `sd(e)`, per time `sd(e4)` and `corr(e0,e4)`; a
`by` category appends `[g=value]`) and records per row its cluster, time and
group.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mlmrun.compile.model import Equation
from mlmrun.compile.partable import ParTableBuilder
from mlmrun.data.levels import LevelIndex, unit_parent_pairs
from mlmrun.data.shown import excerpt, excerpts
from mlmrun.errors import DataError, SpecError
from mlmrun.spec.model import Residuals, Spec

ORDERED = ("ar", "ma", "banded", "toeplitz")
MAX_PARAMETERS = 1000
"""Most parameters one residual structure may have (they grow with the squared number of time values and with
the `by` categories, so a spec's cost stays bounded before any row is added to the parameter table)."""
"""Structures with an order."""
TIMED = ORDERED + ("unstructured", "exponential")
"""Structures that need a time column."""
INTEGER_TIME = ORDERED + ("unstructured",)
"""Structures whose time column must hold integers."""
TITLES = {"independent": "Independent", "exchangeable": "Exchangeable", "ar": "AR", "ma": "MA",
          "unstructured": "Unstructured", "banded": "Banded", "toeplitz": "Toeplitz", "exponential": "Exponential"}


@dataclass(frozen=True)
class ResidualGroup:
    """The residual parameters of one `by` category (or of all rows)."""

    label: str | None
    sd_rows: np.ndarray
    """Partable rows of the residual SDs: one, or one per time value (unstructured, banded)."""
    par_rows: np.ndarray
    """Partable rows of the correlation parameters (phi, theta, rho, corr), in the structure's order."""
    pairs: np.ndarray
    """unstructured/banded: (len(par_rows), 2) time-value indices (a, b), a < b, of each correlation."""


@dataclass(frozen=True)
class ResidualStructure:
    """A compiled `residuals:` block: per row its cluster, time and group; per group its partable rows."""

    structure: str
    order: int
    equation: int
    level: int
    """Index into CompiledModel.levels of the cluster level (the lowest level above the rows)."""
    cluster: np.ndarray
    """Per row: unit of the cluster level."""
    time: np.ndarray
    """Per row: time value (0 where the structure needs none)."""
    time_index: np.ndarray
    """Per row: position of its time value among `time_values`."""
    time_values: np.ndarray
    group: np.ndarray
    """Per row: index into `groups`."""
    groups: tuple[ResidualGroup, ...]
    by: str | None

    @property
    def title(self) -> str:
        """'AR(2)', 'Unstructured', 'Exponential, by sex'... (Stata's residual block header)."""
        text = TITLES[self.structure] + (f"({self.order})" if self.structure in ORDERED else "")
        return text + (f", by {self.by}" if self.by else "")

    @property
    def rows(self) -> np.ndarray:
        """Every partable row of the structure (SDs and correlation parameters)."""
        return np.concatenate([np.concatenate([g.par_rows, g.sd_rows]) for g in self.groups]).astype(int)


def is_structured(eq_spec) -> bool:
    """True when a response asks for anything but independent homoscedastic residuals."""
    res = eq_spec.residuals
    return res is not None and (res.structure != "independent" or res.by is not None)


def residual_columns(spec: Spec) -> dict[str, str]:
    """Time and by columns of every `residuals:` block -> where the spec names them."""
    cols: dict[str, str] = {}
    for k, eq in enumerate(spec.responses):
        if eq.residuals is not None:
            for key in ("time", "by"):
                col = getattr(eq.residuals, key)
                if col:
                    cols.setdefault(col, f"responses.{k}.residuals.{key}")
    return cols


def _check_spec(spec: Spec, k: int, res: Residuals) -> None:
    """Problems that need no data: family, engine, one equation, options that do not go together."""
    loc = ("responses", k, "residuals")
    eq = spec.responses[k]
    if eq.family != "gaussian" or (eq.link not in (None, "identity")):
        raise SpecError.at(loc, f"residual structures are for gaussian responses with the identity link (found "
                                f"{eq.family}, link {eq.link or 'default'}); drop `residuals:` or use family: gaussian "
                                "with the identity link")
    if len(spec.responses) > 1:
        raise SpecError.at(loc, "residual structures need a model with one response equation; drop `residuals:` "
                                "or fit the equations separately")
    if not spec.estimation.exact:
        raise SpecError.at(loc, "residual structures are fitted by the exact gaussian likelihood only; drop "
                                "`estimation.exact: false` or drop `residuals:`")
    if eq.variance_by or eq.variance:
        raise SpecError.at(loc, "give either `residuals:` or variance_by/variance, not both; "
                                "`residuals: {structure: independent, by: COLUMN}` is variance_by: COLUMN")
    if res.structure in TIMED and res.time is None:
        raise SpecError.at(loc + ("structure",), f"structure {res.structure} needs a time column; add `time: COLUMN`")
    if res.order is not None and res.structure not in ORDERED:
        raise SpecError.at(loc + ("order",), f"structure {res.structure} has no order; drop `order:` (orders are "
                                             f"for {', '.join(ORDERED)})")
    nested = [lv for lv in spec.levels if not lv.crossed]
    if not nested:
        raise SpecError.at(loc, "residual structures are within the units of the lowest level above the rows, and "
                                "no (nested) level is declared; add one under `levels:` (e.g. {name: id, id: id})")
    lowest = nested[0].name
    if res.structure in ("unstructured", "exchangeable"):
        for i, block in enumerate(spec.random):
            if block.level == lowest and any(str(t) == "1" for t in block.terms):
                raise SpecError.at(("random", i, "level"),
                                   f"a random intercept at level '{lowest}' together with {res.structure} residuals "
                                   f"within '{lowest}' is not identified (both add a constant covariance within a "
                                   "unit); drop the random intercept or use another residual structure")


def _time_values(frame: pd.DataFrame, res: Residuals, k: int) -> np.ndarray:
    """The time column as numbers (integers where the structure needs them), or a DataError at `time`."""
    col = frame[res.time]
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iuf" and not np.isnan(col.to_numpy(dtype=float)).any():
        values = col  # numbers already: what to_numeric would return
    else:
        values = pd.to_numeric(col, errors="coerce")
    if values.isna().any() or not pd.api.types.is_numeric_dtype(col):
        bad = col[values.isna()]
        raise DataError.at(("responses", k, "residuals", "time"),
                           f"time column {excerpt(res.time)} must be numeric; it holds values such as "
                           f"{excerpts(pd.unique(bad.astype(str)), 3)}; recode it as numbers (e.g. 1, 2, 3)")
    t = values.to_numpy(dtype=float)
    if res.structure in INTEGER_TIME and np.any(t != np.round(t)):
        bad = t[t != np.round(t)]
        raise DataError.at(("responses", k, "residuals", "time"),
                           f"structure {res.structure} needs integer time values; column {excerpt(res.time)} holds "
                           f"{excerpts(pd.unique(bad), 3)}; round or recode them, or use structure: exponential "
                           "for real-valued times")
    return t


def _check_times(t: np.ndarray, cluster: np.ndarray, res: Residuals, k: int, level: LevelIndex) -> None:
    """No cluster may hold one time value twice (the structure would not know which residual is which)."""
    order = np.lexsort((t, cluster))
    same = (cluster[order][1:] == cluster[order][:-1]) & (t[order][1:] == t[order][:-1])
    dup = np.zeros(len(t), dtype=bool)
    dup[order[1:][same]] = dup[order[:-1][same]] = True
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        raise DataError.at(("responses", k, "residuals", "time"),
                           f"time column {excerpt(res.time)} has the value {excerpt(_label(t[first]))} twice "
                           f"within {level.name} {excerpt(level.labels[int(cluster[first])])}; each row of a "
                           f"{level.name} unit needs its own time value")


def _check_nesting(spec: Spec, levels: list[LevelIndex], cluster: np.ndarray, level: LevelIndex) -> None:
    """Every level with random effects must hold whole clusters (a crossed factor may not split one).

    Whitening mixes the rows of a cluster; a random effect whose unit changes
    within a cluster would then load on several units in one row.
    """
    used = [(("random", i, "level"), b.level) for i, b in enumerate(spec.random)]
    used += [(("latent", i, "level"), lat.level) for i, lat in enumerate(spec.latent)]
    by_name = {lv.name: lv for lv in levels}
    for loc, name in used:
        other = by_name.get(name)
        if other is None or other is level:
            continue
        clusters, _ = unit_parent_pairs(cluster, other.codes)
        split = np.bincount(clusters)[clusters] > 1
        if split.any():
            unit = level.labels[int(clusters[split][0])]
            raise SpecError.at(loc, f"level '{name}' changes within {level.name} {excerpt(unit)}, whose residuals "
                                    f"are correlated (`residuals:`); a residual structure needs every level with "
                                    f"random effects to contain whole {level.name} units: drop these random effects "
                                    "or the residual structure")


def _label(v: float) -> str:
    return str(int(v)) if float(v) == int(v) else f"{v:g}"


def _check_order(res: Residuals, order: int, cluster: np.ndarray, k: int, level: LevelIndex) -> None:
    """The order must be smaller than the largest cluster (else its parameters are not identified)."""
    biggest = int(np.bincount(cluster).max())
    if order >= biggest:
        raise DataError.at(("responses", k, "residuals", "order"),
                           f"{res.structure} order {order} is not smaller than the largest {level.name} unit "
                           f"({biggest} rows); lower `order:` to at most {max(biggest - 1, 1)}")


def _check_lags(t: np.ndarray, cluster: np.ndarray, order: int, k: int, res: Residuals) -> None:
    """Toeplitz: every lag 1..order must occur within some cluster, else its correlation is not identified."""
    order_rows = np.lexsort((t, cluster))
    seen: set[int] = set()
    tc, cc = t[order_rows], cluster[order_rows]
    for shift in range(1, int(np.bincount(cluster).max())):
        same = cc[shift:] == cc[:-shift]
        seen.update(int(x) for x in np.abs(tc[shift:] - tc[:-shift])[same] if x <= order)
    missing = [q for q in range(1, order + 1) if q not in seen]
    if missing:
        raise DataError.at(("responses", k, "residuals", "order"),
                           f"toeplitz order {order}: no two rows of a unit are {missing[0]} apart in "
                           f"{excerpt(res.time)}, so rho{missing[0]} is not identified; lower `order:` or use "
                           "structure: exponential for irregular times")


def _groups(frame: pd.DataFrame, res: Residuals, k: int, cluster: np.ndarray,
            level: LevelIndex) -> tuple[np.ndarray, list[str | None]]:
    """Group index per row and the labels (one unlabelled group without `by`)."""
    if res.by is None:
        return np.zeros(len(frame), dtype=int), [None]
    col = frame[res.by]
    values = pd.to_numeric(col, errors="coerce")
    if values.isna().any() or not pd.api.types.is_numeric_dtype(col):
        bad = col[values.isna()]
        raise DataError.at(("responses", k, "residuals", "by"),
                           f"by column {excerpt(res.by)} must be numeric (as Stata's by()); it holds values such as "
                           f"{excerpts(pd.unique(bad.astype(str)), 3)}; recode its categories as numbers (1, 2, ...)")
    codes, uniques = pd.factorize(values.to_numpy(dtype=float), sort=True)
    labels = [_label(v) for v in uniques]
    if res.structure != "independent":
        per = pd.DataFrame({"c": cluster, "g": codes}).drop_duplicates()
        varying = per["c"].duplicated(keep=False)
        if varying.any():
            unit = level.labels[int(per.loc[varying, "c"].iloc[0])]
            raise DataError.at(("responses", k, "residuals", "by"),
                               f"by column {excerpt(res.by)} varies within {level.name} {excerpt(unit)}; with "
                               f"structure {res.structure} it must be constant within each {level.name} unit "
                               "(only structure: independent allows it to vary)")
    return codes.astype(int), labels


def _check_size(res: Residuals, order: int, n_times: int, n_groups: int, k: int) -> None:
    """Refuse a structure with more than MAX_PARAMETERS parameters (counted as _add_rows would add them)."""
    s = res.structure
    if s in ("unstructured", "banded"):
        band = n_times if s == "unstructured" else order
        per_group = n_times + sum(min(band, n_times - 1 - a) for a in range(n_times))
    else:
        per_group = 1 + (order if s in ORDERED else int(s in ("exponential", "exchangeable")))
    total = per_group * n_groups
    if total > MAX_PARAMETERS:
        raise SpecError.at(("responses", k, "residuals"),
                           f"structure {s} over {n_times} time values and {n_groups} `by` group(s) would have "
                           f"{total} parameters, more than the {MAX_PARAMETERS} allowed; use fewer time values or "
                           "groups, or a structure with fewer parameters (ar, toeplitz, exponential)")


def _add_rows(pt: ParTableBuilder, res: Residuals, order: int, label: str | None, suffix: str, eq_name: str,
              time_values: np.ndarray, ystd: float) -> ResidualGroup:
    """The partable rows of one group, in Stata's order (correlation parameters first, then the SDs)."""
    common = dict(equation=eq_name, lhs=eq_name, group=label or "")
    s = res.structure
    par: list[int] = []
    pairs: list[tuple[int, int]] = []
    sds: list[int] = []
    if s == "ar":
        for j in range(order):
            bound = (-1.0, 1.0) if order == 1 else (-np.inf, np.inf)
            par.append(pt.add(f"phi{j + 1}{suffix}", "rescorr", value=0.0, lower=bound[0], upper=bound[1],
                              op="ar", rhs=str(j + 1), **common))
    elif s == "ma":
        par = [pt.add(f"theta{j + 1}{suffix}", "rescorr", value=0.0, op="ma", rhs=str(j + 1), **common)
               for j in range(order)]
    elif s == "toeplitz":
        par = [pt.add(f"rho{j + 1}{suffix}", "rescorr", value=0.0, lower=-1.0, upper=1.0, op="toeplitz",
                      rhs=str(j + 1), **common) for j in range(order)]
    elif s == "exponential":
        par = [pt.add(f"rho{suffix}", "rescorr", value=0.5, lower=0.0, upper=1.0, op="exponential", **common)]
    elif s == "exchangeable":
        par = [pt.add(f"corr(e){suffix}", "rescorr", value=0.0, lower=-1.0, upper=1.0, op="exchangeable", **common)]
    if s in ("unstructured", "banded"):
        names = [f"e{_label(v)}" for v in time_values]
        sds = [pt.add(f"sd({nm}){suffix}", "residual", value=ystd, transform="log", op="~~", rhs=nm, **common)
               for nm in names]
        band = len(names) if s == "unstructured" else order
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                if b - a <= band:
                    pairs.append((a, b))
                    par.append(pt.add(f"corr({names[a]},{names[b]}){suffix}", "rescorr", value=0.0, lower=-1.0,
                                      upper=1.0, op="~~", rhs=f"{names[a]},{names[b]}", **common))
    else:
        sds = [pt.add(f"sd(e){suffix}", "residual", value=ystd, transform="log", op="~~", rhs="e", **common)]
    return ResidualGroup(label, np.array(sds, dtype=int), np.array(par, dtype=int),
                         np.array(pairs, dtype=int).reshape(-1, 2))


def compile_residuals(spec: Spec, frame: pd.DataFrame, levels: list[LevelIndex], equations: list[Equation],
                      y: np.ndarray, pt: ParTableBuilder) -> tuple[list[Equation], ResidualStructure | None]:
    """Check every `residuals:` block, add its parameters, and return the equations with their SD rows set."""
    for k, eq in enumerate(spec.responses):
        if is_structured(eq):
            _check_spec(spec, k, eq.residuals)
    ks = [k for k, eq in enumerate(spec.responses) if is_structured(eq)]
    if not ks:
        return equations, None
    k = ks[0]
    res = spec.responses[k].residuals
    lowest = next(lv.name for lv in spec.levels if not lv.crossed)
    level_pos = next(i for i, lv in enumerate(levels) if lv.name == lowest)
    level = levels[level_pos]
    cluster = level.codes
    _check_nesting(spec, levels, cluster, level)
    order = res.order or 1
    n = len(frame)
    t = _time_values(frame, res, k) if res.time else np.zeros(n)
    if res.time:
        _check_times(t, cluster, res, k, level)
    if res.structure in ORDERED:
        _check_order(res, order, cluster, k, level)
    if res.structure == "toeplitz":
        _check_lags(t, cluster, order, k, res)
    time_values, time_index = np.unique(t, return_inverse=True)
    group, labels = _groups(frame, res, k, cluster, level)
    eq = equations[k]
    ystd = float(np.std(y[eq.rows])) or 1.0
    groups = []
    for g, label in enumerate(labels):
        suffix = f"[{res.by}={label}]" if label is not None else ""
        present = np.unique(time_index[group == g]) if res.structure in ("unstructured", "banded") else None
        if present is not None and len(present) != len(time_values):
            missing = [_label(v) for j, v in enumerate(time_values) if j not in set(present)]
            raise DataError.at(("responses", k, "residuals", "by"),
                               f"by category {excerpt(label)} has no rows at time values {excerpts(missing, 5)}, "
                               f"so its {res.structure} variances there are not identified; drop those times or "
                               "the `by:`")
        _check_size(res, order, len(time_values), len(labels), k)
        groups.append(_add_rows(pt, res, order, label, suffix, eq.name, time_values, ystd))
    scale_rows = np.empty(len(eq.rows), dtype=int)
    for g, grp in enumerate(groups):
        mine = group[eq.rows] == g
        idx = time_index[eq.rows][mine] if len(grp.sd_rows) > 1 else np.zeros(int(mine.sum()), dtype=int)
        scale_rows[mine] = grp.sd_rows[idx]
    equations = list(equations)
    equations[k] = replace(eq, scale_rows=scale_rows)
    structure = ResidualStructure(res.structure, order, k, level_pos, cluster, t, time_index.ravel(), time_values,
                                  group, tuple(groups), res.by)
    return equations, structure
