"""Sufficient statistics of an all-gaussian factor model: per missing-data pattern, the sample means and covariances.

The moments engine applies when every response is gaussian with the identity
link, every latent variable varies over one (nested) level, the unit, with
`by:` item loadings (no random coefficients on row-level covariates, no
Gamma covariates, no `variance:` formula), and every unit's rows come from
one small set of row designs (items): the same fixed-part row, loading
design, residual SD and offset for an item in every unit, each item at most
once per unit. Units are then independent draws of a p-variate normal with
the same mean and covariance, observed on a pattern of items, so the log
likelihood depends on the data only through each pattern's unit count,
mean vector and covariance (divisor n), as in lavaan's `missing = "fiml"`.

`moments_data(model)` returns those statistics, or the reason the engine does
not apply (a sentence).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from mlmrun.compile.model import CompiledModel

MAX_ITEMS = 200
"""More distinct row designs than this (e.g. a covariate that varies by row): the exact engine fits it."""


@dataclass(frozen=True)
class ItemDesign:
    """The design of each of the p items: one row of every model array."""

    X: np.ndarray
    """(p, n_beta) fixed-part rows."""
    offset: np.ndarray
    Z: tuple[np.ndarray, ...]
    """Per latent variable, (p, K_m) loading design rows."""
    scale_row: np.ndarray
    """(p,) partable row of each item's residual SD."""
    labels: tuple[str, ...]
    """Item names (the item column's value, else item1, item2, ...)."""


@dataclass(frozen=True)
class Pattern:
    """Units that observe the same items: their count, mean vector and covariance (divisor n)."""

    items: np.ndarray
    n: int
    mean: np.ndarray
    cov: np.ndarray
    units: np.ndarray


@dataclass(frozen=True)
class MomentsData:
    """Everything the moments likelihood reads from the data."""

    design: ItemDesign
    patterns: tuple[Pattern, ...]
    n_units: int
    unit_level: int
    Y: np.ndarray
    """(n_units, p) responses, nan where a unit has no row for an item."""
    item_of_label: dict[str, int]
    """Item index of each label of the model's item column (items sharing a label map to the first)."""
    rescov: tuple[tuple[int, int, int], ...] = ()
    """Residual covariances as (item a, item b, partable row), items numbered as in `design`."""

    @property
    def p(self) -> int:
        return len(self.design.labels)

    @cached_property
    def complete(self) -> bool:
        return len(self.patterns) == 1 and len(self.patterns[0].items) == self.p


def applicable(model: CompiledModel) -> str | None:
    """None when the model's structure suits the moments engine, else why not (before looking at rows)."""
    spec = model.spec
    if not model.is_linear_gaussian:
        return "not every response is gaussian with the identity link"
    if spec.estimation.method == "REML":
        return "REML is asked for (the moments engine fits by ML)"
    if not spec.estimation.exact:
        return "`exact: false` asks for quadrature"
    if not model.latent:
        return "the model has no latent variables"
    if any(lat.origin != "latent" for lat in model.latent):
        return "it has `random:` effects (the exact engine fits those)"
    levels = {lat.level for lat in model.latent}
    if len(levels) != 1:
        return "its latent variables vary over several levels"
    if model.levels[next(iter(levels))].crossed:
        return "its latent variables vary over a crossed level"
    if model.Gamma_entries:
        return "structural.Gamma has covariates"
    if any(eq.hetero is not None for eq in model.equations):
        return "a response has a `variance:` formula"
    if any(spec.latent[m].loadings is not None and spec.latent[m].loadings.on is not None
           for m in range(len(spec.latent))):
        return "a latent variable loads on covariates (`loadings.on`)"
    return None


def _row_scale(model: CompiledModel) -> np.ndarray:
    scale = np.zeros(model.n, dtype=np.intp)
    for eq in model.equations:
        scale[eq.rows] = eq.scale_rows
    return scale


def _signatures(model: CompiledModel, scale: np.ndarray, k: int = 1) -> np.ndarray:
    """k random projections of each row's whole design (fixed part, loadings, offset, residual SD, equation),
    shape (n, k); each design array is read once."""
    rng = np.random.default_rng(20261129)
    h = model.X @ rng.uniform(1, 2, (model.X.shape[1], k)) if model.X.shape[1] else np.zeros((model.n, k))
    for lat in model.latent:
        if lat.Z.shape[1]:
            h += lat.Z @ rng.uniform(1, 2, (lat.Z.shape[1], k))
    for column in (model.offset, scale, model.eq_of_row):
        h += column[:, None] * rng.uniform(1, 2, k)
    return h


def _constant_within(h: np.ndarray, codes: np.ndarray, rep: np.ndarray) -> bool:
    """True when h is the same (to rounding) on every row of each group."""
    return bool(np.max(np.abs(h - h[rep][codes]), initial=0.0) <= 1e-9 * max(1.0, float(np.max(np.abs(h), initial=0.0))))


def _first_rows(codes: np.ndarray, n_groups: int) -> np.ndarray:
    rep = np.zeros(n_groups, dtype=np.intp)
    rep[codes[::-1]] = np.arange(len(codes))[::-1]
    return rep


def _items(model: CompiledModel) -> tuple[np.ndarray, np.ndarray] | str:
    """(item of every row, one representative row per item), or why rows do not fall into few items.

    Rows are grouped by the item column when the model has one (a random projection of the whole design
    then checks that each item has one design), else by that projection (a second one checks the grouping).
    """
    scale = _row_scale(model)
    if model.item_codes is not None:
        h = _signatures(model, scale, 1)[:, 0]
        codes = model.item_codes
        n_groups = int(codes.max(initial=-1)) + 1
        rep = _first_rows(codes, n_groups)
        if _constant_within(h, codes, rep):
            return codes.astype(np.intp), rep
    h2 = _signatures(model, scale, 2)
    if model.item_codes is not None:
        h2[:, 0] += model.item_codes * np.pi
    codes, uniques = pd.factorize(np.round(h2[:, 0], 8))
    if len(uniques) > MAX_ITEMS:
        return (f"its rows have {len(uniques)} distinct designs (more than {MAX_ITEMS} items: a covariate varies "
                "from row to row)")
    rep = _first_rows(codes, len(uniques))
    if not _constant_within(h2[:, 1], codes, rep):
        return "rows of one apparent item differ in design"
    return codes.astype(np.intp), rep


def _labels(model: CompiledModel, rep: np.ndarray) -> tuple[str, ...]:
    if model.item_codes is None:
        return tuple(f"item{j + 1}" for j in range(len(rep)))
    raw = [model.item_labels[model.item_codes[r]] for r in rep]
    return tuple(lab if raw.count(lab) == 1 else f"{lab}#{j + 1}" for j, lab in enumerate(raw))


def _pattern_codes(observed: np.ndarray) -> np.ndarray:
    """Pattern number of every unit from its (n_units, p) observed mask."""
    p = observed.shape[1]
    words = []
    for start in range(0, p, 50):
        chunk = observed[:, start:start + 50]
        words.append(chunk @ (2.0 ** np.arange(chunk.shape[1])))
    if len(words) == 1:
        return np.unique(words[0], return_inverse=True)[1].reshape(-1)
    return np.unique(np.stack(words, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def moments_data(model: CompiledModel) -> MomentsData | str:
    """Per-pattern sufficient statistics, or the reason the moments engine does not apply."""
    why = applicable(model)
    if why is not None:
        return why
    found = _items(model)
    if isinstance(found, str):
        return found
    item, rep = found
    unit_level = model.latent[0].level
    unit = model.levels[unit_level].codes
    n_units, p = model.levels[unit_level].n_units, len(rep)
    counts = np.bincount(unit * p + item, minlength=n_units * p)
    if counts.max(initial=0) > 1:
        return "a unit has two rows of the same item (the same row design)"
    Y = np.full((n_units, p), np.nan)
    Y[unit, item] = model.y
    observed = counts.reshape(n_units, p).astype(bool)
    seen = observed.any(axis=1)
    pcodes = _pattern_codes(observed)
    patterns = []
    for g in np.unique(pcodes[seen]):
        units = np.flatnonzero((pcodes == g) & seen)
        obs = np.flatnonzero(observed[units[0]])
        Yg = Y[np.ix_(units, obs)]
        mean = Yg.mean(axis=0)
        centred = Yg - mean
        patterns.append(Pattern(obs, len(units), mean, centred.T @ centred / len(units), units))
    design = ItemDesign(X=model.X[rep], offset=model.offset[rep], Z=tuple(lat.Z[rep] for lat in model.latent),
                        scale_row=_row_scale(model)[rep], labels=_labels(model, rep))
    of_label: dict[str, int] = {}
    if model.item_codes is not None:
        for j, r in enumerate(rep):
            of_label.setdefault(model.item_labels[model.item_codes[r]], j)
    rescov = tuple((of_label[model.item_labels[a]], of_label[model.item_labels[b]], r) for a, b, r in model.rescov)
    return MomentsData(design, tuple(patterns), int(seen.sum()), unit_level, Y, of_label, rescov)
