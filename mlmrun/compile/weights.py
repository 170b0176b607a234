"""Compile `weights:`, `levels[k].pweight` and `estimation.vce` into per-row and per-unit weights and clusters.

The fit maximises the log pseudolikelihood (Rabe-Hesketh & Skrondal 2006; gllamm's
pweight()): a row's log density is multiplied by its row weight (frequency weight
times sampling weight) inside the integral over its units' latent variables, and
each unit's log integral by its own level weight inside its parent's integral.

- Row weights: `weights.fweight` (non-negative integers) times `weights.pweight`
  (non-negative), the latter rescaled within each unit of the single level by
  `pwscale` (Stata's pwscale(): `size` makes them sum to the unit's rows,
  `effective` to its effective size (sum w)^2 / sum w^2, `gk` sets them to 1 and
  multiplies the unit's weight by their mean, Graubard & Korn 1996).
- Level weights: `levels[k].pweight`, constant within each unit of level k.
  Weights of levels without latent variables fold into the next integrated level
  below (or into the rows), since such a level's log likelihood is just the
  weighted sum of its sub-units'.
- vce: `oim` (observed information), `robust` (sandwich) or `{cluster: VAR}`;
  default robust with any sampling weight (Stata's convention), clustered at
  the top level; VAR must contain whole top-level units.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmrun.compile.data_checks import numeric_column
from mlmrun.data.levels import LevelIndex, unit_ids
from mlmrun.data.shown import columns_hint, excerpt
from mlmrun.errors import DataError, SpecError
from mlmrun.spec.model import Spec, VceCluster


@dataclass(frozen=True)
class Weighting:
    """Compiled weights and the standard-error choice of a model (None on CompiledModel: unweighted, oim)."""

    row: np.ndarray | None
    """Weight of every row (frequency x sampling, rescaled), or None for all ones."""
    unit: dict[int, np.ndarray]
    """Per model level index with latent variables: the weight of each unit (levels without weights absent)."""
    sampling: bool
    """True when any sampling weight is given (the objective is a pseudolikelihood)."""
    frequency: bool
    """True when frequency weights are given."""
    vce: str
    """'oim' or 'robust'."""
    cluster_name: str | None = None
    """Robust: the level or column clustered on (None: every row its own cluster)."""
    cluster_codes: np.ndarray | None = None
    """Robust: cluster of every row, codes 0..n_clusters-1."""

    @property
    def n_clusters(self) -> int:
        return 0 if self.cluster_codes is None else int(self.cluster_codes.max(initial=-1)) + 1


WEIGHT_EXPRESSION = re.compile(r"^\s*[^*/\s]+(\s*[*/]\s*[^*/\s]+)*\s*$")
"""A weight is a column, or columns joined by * and / (Stata's [pw=w_fstuwt/wnrschbw]); nothing else is evaluated."""


def _column(frame: pd.DataFrame, text: str, key: tuple, integer: bool = False) -> np.ndarray:
    """A weight as floats: columns present and numeric, no missing value, non-negative (integer for fweights)."""
    where = ".".join(str(p) for p in key)
    if not WEIGHT_EXPRESSION.match(text):
        raise SpecError.at(key, f"{excerpt(text)} is not a weight: write a column name, or column names joined "
                                "by * or / (e.g. w_student / w_school)")
    parts = re.split(r"\s*([*/])\s*", text.strip())
    values = np.ones(len(frame))
    for op, col in zip(["*"] + parts[1::2], parts[::2], strict=True):
        if col not in frame.columns:
            close = difflib.get_close_matches(col, [str(c) for c in frame.columns], n=1)
            hint = f"did you mean {excerpt(close[0])}?" if close else columns_hint(frame.columns)
            raise DataError(f"{where}: column {excerpt(col)} is not in the data; {hint}", key)
        part = numeric_column(frame, col, np.arange(len(frame)), where)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = values * part if op == "*" else values / part
    col = text.strip()
    if not np.all(np.isfinite(values) | np.isnan(values)):
        raise DataError(f"{where}: weight {excerpt(col)} divides by zero in {int(np.isinf(values).sum())} rows; "
                        "weights must be finite", key)
    missing = np.isnan(values)
    if missing.any():
        raise DataError(f"{where}: weight column {excerpt(col)} has {int(missing.sum())} missing values in the rows "
                        f"used (first at row {int(np.argmax(missing)) + 1}); weights cannot be missing: fill them in "
                        "or drop those rows with data.filter", key)
    if (values < 0).any():
        raise DataError(f"{where}: weight column {excerpt(col)} has {int((values < 0).sum())} negative values "
                        f"(e.g. {values[values < 0][0]:g}); weights must be zero or positive", key)
    if integer and np.any(values != np.round(values)):
        bad = values[values != np.round(values)][0]
        raise DataError(f"{where}: frequency weights in column {excerpt(col)} must be whole numbers (found {bad:g}); "
                        "use `pweight:` for non-integer sampling weights", key)
    return values


def _unit_weights(frame: pd.DataFrame, lv: LevelIndex, col: str, k: int) -> np.ndarray:
    """One weight per unit of a level, refusing a unit whose rows disagree (naming the unit)."""
    key = ("levels", k, "pweight")
    values = _column(frame, col, key)
    lo = np.full(lv.n_units, np.inf)
    hi = np.full(lv.n_units, -np.inf)
    np.minimum.at(lo, lv.codes, values)
    np.maximum.at(hi, lv.codes, values)
    varies = np.flatnonzero(hi - lo > 1e-12 * np.maximum(1.0, np.abs(hi)))
    if len(varies):
        u = int(varies[0])
        raise DataError(f"levels.{k}.pweight: weight column {excerpt(col)} varies within unit "
                        f"{excerpt(lv.labels[u])} of level '{lv.name}' ({lo[u]:g} to {hi[u]:g}); a level's sampling "
                        "weight must be constant within each of its units: give the row weight as `weights.pweight`",
                        key)
    return lo


def _pwscale(how: str, w: np.ndarray, codes: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Rescaled row weights and a factor for each unit's weight (Stata's pwscale)."""
    total = np.bincount(codes, weights=w, minlength=n_units)
    if how == "size":
        size = np.bincount(codes, minlength=n_units).astype(float)
        return w * np.divide(size, total, out=np.zeros(n_units), where=total > 0)[codes], np.ones(n_units)
    if how == "effective":
        squares = np.bincount(codes, weights=w * w, minlength=n_units)
        return w * np.divide(total, squares, out=np.zeros(n_units), where=squares > 0)[codes], np.ones(n_units)
    size = np.bincount(codes, minlength=n_units).astype(float)
    return np.ones_like(w), total / size


def _vce(spec: Spec, frame: pd.DataFrame, levels: list[LevelIndex], top: int | None,
         sampling: bool) -> tuple[str, str | None, np.ndarray | None]:
    """(vce, cluster name, cluster code per row) from estimation.vce and the default."""
    asked = spec.estimation.vce
    vce = "robust" if asked is None and sampling else ("oim" if asked is None else "robust")
    if asked == "oim" or vce == "oim":
        return "oim", None, None
    nested = [i for i, lv in enumerate(levels) if not lv.crossed]
    if not isinstance(asked, VceCluster):
        if not nested:
            return "robust", None, np.arange(len(frame))
        lv = levels[nested[-1]]
        return "robust", lv.name, lv.codes
    key = ("estimation", "vce", "cluster")
    name = asked.cluster
    named = [i for i, lv in enumerate(levels) if lv.name == name]
    if named:
        lv = levels[named[0]]
        codes, label = lv.codes, f"level '{name}'"
        if lv.crossed:
            raise SpecError.at(key, f"level '{name}' is crossed; cluster on the top nested level or a column grouping "
                                    "whole top-level units")
    else:
        if name not in frame.columns:
            close = difflib.get_close_matches(name, [lv.name for lv in levels] + [str(c) for c in frame.columns], n=1)
            hint = f"did you mean {excerpt(close[0])}?" if close else "name a level or a data column"
            raise SpecError.at(key, f"{excerpt(name)} is neither a level nor a data column; {hint}")
        column = frame[name]
        if column.isna().any():
            raise DataError(f"estimation.vce.cluster: column {excerpt(name)} has {int(column.isna().sum())} missing "
                            "values in the rows used; every row needs a cluster", key)
        codes, label = unit_ids(column)[0], f"column {excerpt(name)}"
    if top is not None:
        upper = levels[top]
        first = np.full(upper.n_units, -1)
        first[upper.codes] = codes
        split = np.flatnonzero(first[upper.codes] != codes)
        if len(split):
            unit = upper.labels[upper.codes[split[0]]]
            raise SpecError.at(key, f"{label} splits unit {excerpt(unit)} of the top level '{upper.name}' across "
                                    f"clusters; cluster on '{upper.name}' or on a level above it")
    return "robust", name, codes


def compile_weights(spec: Spec, frame: pd.DataFrame, levels: list[LevelIndex],
                    latent_levels: list[int]) -> Weighting | None:
    """Weights and vce of a model, checked against its data (None when unweighted with oim standard errors)."""
    given = spec.weights
    level_cols = {k: lv.pweight for k, lv in enumerate(spec.levels) if lv.pweight}
    nested_latent = [k for k in sorted(set(latent_levels)) if not levels[k].crossed]
    top = nested_latent[-1] if nested_latent else None
    weighted = given is not None and (given.fweight or given.pweight) or bool(level_cols)
    if not weighted and spec.estimation.vce in (None, "oim"):
        return None
    if spec.estimation.method == "REML":
        what = "weighted fits (the log pseudolikelihood has no restricted form)" if weighted else "robust standard errors"
        raise SpecError.at(("estimation", "method"), f"REML is not available with {what}; write `method: ML`")
    for k in level_cols:
        if levels[k].crossed:
            raise SpecError.at(("levels", k, "pweight"), f"level '{levels[k].name}' is crossed; sampling weights "
                                                         "need nested levels: drop `pweight` or `crossed: true`")
    if any(levels[k].crossed for k in latent_levels):
        crossed = next(k for k in latent_levels if levels[k].crossed)
        raise SpecError.at(("levels", crossed, "crossed"), f"level '{levels[crossed].name}' is crossed and carries "
                           "random effects; weighted fits and robust standard errors integrate nested levels only: "
                           "drop the weights and `vce`, or make the design nested")
    n = len(frame)
    row = np.ones(n)
    unit_w = [np.ones(lv.n_units) for lv in levels]
    if given is not None and given.pwscale is not None:
        if len(spec.levels) != 1:
            raise SpecError.at(("weights", "pwscale"), f"pwscale is defined for two-level models (rows and one level); "
                                                       f"this model has {len(spec.levels) + 1} levels: drop `pwscale` "
                                                       "and give the scaled weights as columns")
        if not given.pweight:
            raise SpecError.at(("weights", "pwscale"), "pwscale rescales the row sampling weights; give them as "
                                                       "`weights.pweight` or drop `pwscale`")
    if given is not None and given.fweight:
        row = row * _column(frame, given.fweight, ("weights", "fweight"), integer=True)
    if given is not None and given.pweight:
        pw = _column(frame, given.pweight, ("weights", "pweight"))
        if given.pwscale is not None:
            pw, factor = _pwscale(given.pwscale, pw, levels[0].codes, levels[0].n_units)
            unit_w[0] = unit_w[0] * factor
        row = row * pw
    for k, col in level_cols.items():
        unit_w[k] = unit_w[k] * _unit_weights(frame, levels[k], col, k)
    unit: dict[int, np.ndarray] = {}
    for k, lv in enumerate(levels):
        if lv.crossed or np.all(unit_w[k] == 1.0):
            continue
        below = [j for j in nested_latent if j <= k]
        if k in nested_latent:
            unit[k] = unit_w[k] * unit.get(k, 1.0)
        elif below:
            j = below[-1]
            carried = np.ones(levels[j].n_units)
            carried[levels[j].codes] = unit_w[k][lv.codes]
            unit[j] = unit.get(j, np.ones(levels[j].n_units)) * carried
        else:
            row = row * unit_w[k][lv.codes]
    sampling = bool(level_cols) or bool(given is not None and given.pweight)
    vce, cluster, codes = _vce(spec, frame, levels, top, sampling)
    return Weighting(None if np.all(row == 1.0) and not (given and given.fweight) else row, unit, sampling,
                     bool(given is not None and given.fweight), vce, cluster, codes)

