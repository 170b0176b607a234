"""The rows quadrature works on: sorted by lowest-level unit and, where the family allows, deduplicated.

Quadrature evaluates every row at every node, so rows are the unit of cost.
Two parameter-free rearrangements, done once per fit:

- Sorting by the lowest latent level's unit makes each unit's rows a
  contiguous block, so sums over a unit's rows are `np.add.reduceat` over
  cache-sized chunks instead of scattered adds. Within a unit, rows are
  sorted by their number of trials: the separable binomial-logit form takes
  one logarithm per run of equal trials (likelihood/quadrature/separable.py).
- Rows whose linear predictor is the same function of the parameters (same
  units at every latent level, same x, offset, loading design z and
  structural covariates w) and whose log density is linear in the response
  (binomial: y and trials; Poisson: y and exposure count) merge into one
  "pattern" row with summed statistics. Panel data with time-constant
  covariates (issue 4's persons x items x waves) shrink by the number of
  waves. The log likelihood is unchanged: log f of the merged row is the sum
  of the originals' (the binomial coefficients and log y! are summed
  separately, not recomputed for the merged counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.families.special import sc


@dataclass(frozen=True)
class RowSet:
    """Row arrays in quadrature order; `eq_rows[e]` are the positions of equation e's rows."""

    X: np.ndarray
    offset: np.ndarray
    Z: tuple[np.ndarray, ...]
    """Per latent variable, its loading design (rows x K_m)."""
    W: np.ndarray
    codes: dict[int, np.ndarray]
    """Per model level index (latent levels only): unit of each row."""
    y: np.ndarray
    trials: np.ndarray | None
    """Binomial trials (summed for merged rows), or Poisson: number of merged rows (None: all ones)."""
    constant: np.ndarray | None
    """Merged rows only: sum of the rows' log binomial coefficients / -log y! terms."""
    eq_rows: tuple[np.ndarray, ...]
    original: np.ndarray | None
    """Original row of each row (None when rows were merged)."""

    @property
    def n(self) -> int:
        return len(self.offset)


def mergeable(model: CompiledModel) -> bool:
    """True when every equation's log density is linear in (y, trials): binomial (any link) or Poisson,
    and rows carry no weights or robust-SE clusters (merged rows would mix them)."""
    return model.weighting is None and all(eq.family.name in ("binomial", "poisson") for eq in model.equations)


def row_set(model: CompiledModel, levels: tuple[int, ...], merge: bool = True) -> RowSet:
    """Rows sorted by lowest latent unit, then trials (runs for separable.py), then original order; merged when allowed."""
    n = model.n
    codes = {lvl: model.levels[lvl].codes for lvl in levels}
    key_cols = [codes[lvl][:, None].astype(float) for lvl in levels]
    key_cols += [model.X, model.offset[:, None], model.eq_of_row[:, None].astype(float), model.W]
    key_cols += [lat.Z for lat in model.latent if lat.Z.shape[1]]
    if merge and mergeable(model) and n > 1:
        _, first, inverse = np.unique(np.concatenate(key_cols, axis=1), axis=0, return_index=True,
                                      return_inverse=True)
        inverse = inverse.reshape(-1)
    else:
        first, inverse = np.arange(n), np.arange(n)
    lowest = codes[levels[0]][first] if levels else np.zeros(len(first), dtype=int)
    base = model.trials if model.trials is not None else np.ones(n)
    pattern_trials = np.bincount(inverse, weights=base, minlength=len(first)) if len(first) < n else base[first]
    order = np.lexsort((first, pattern_trials, lowest))
    rep = first[order]
    position = np.empty(len(first), dtype=np.intp)
    position[order] = np.arange(len(first))
    group = position[inverse]
    merged = len(rep) < n
    y = np.bincount(group, weights=model.y, minlength=len(rep)) if merged else model.y[rep]
    trials, constant = None, None
    if merged:
        per_row = np.zeros(n)
        for eq in model.equations:
            r = eq.rows
            if eq.family.name == "binomial":
                t = base[r]
                per_row[r] = sc.gammaln(t + 1) - sc.gammaln(model.y[r] + 1) - sc.gammaln(t - model.y[r] + 1)
            else:
                per_row[r] = -sc.gammaln(model.y[r] + 1)
        trials = np.bincount(group, weights=base, minlength=len(rep))
        constant = np.bincount(group, weights=per_row, minlength=len(rep))
    elif model.trials is not None:
        trials = model.trials[rep]
    eq_of = model.eq_of_row[rep]
    return RowSet(
        X=model.X[rep], offset=model.offset[rep], Z=tuple(lat.Z[rep] for lat in model.latent), W=model.W[rep],
        codes={lvl: c[rep] for lvl, c in codes.items()}, y=y, trials=trials, constant=constant,
        eq_rows=tuple(np.flatnonzero(eq_of == e) for e in range(len(model.equations))),
        original=None if merged else rep,
    )
