"""Choice responses: multinomial (conditional) logit and rank-ordered (exploded) logit over choice sets.

Rows are alternatives; a choice set is a group of rows (one chooser's alternatives), and
row j's linear predictor nu_j is its utility. The response is a rank: 1 for the first
choice, 2 for the second, ..., 0 for an alternative left unranked (a multinomial choice is
rank 1 for the chosen row and 0 elsewhere). The exploded logit writes a ranking as a
sequence of choices: the alternative ranked r is chosen from its risk set, every
alternative of the set ranked r or later or unranked,

    log L_set = sum over ranked rows j of [nu_j - log sum_{i in risk(j)} exp(nu_i)].

Ties (two rows with the same rank) follow Breslow's rule, as Stata's rologit does by
default: each tied row is chosen from the same risk set, which contains all the tied rows.
A stage whose risk set holds only its chosen row (the last of a complete ranking)
contributes 0 and is skipped. A pairwise comparison is the set of two alternatives.

A set's log likelihood is one term, but the quadrature engine sums per-row terms: each
stage's term is carried by its chosen row, and d/dnu_j is the derivative of the whole
set's term in row j's predictor, so sums over rows and the Fisher-identity gradient are
exact. The Hessian in nu is not diagonal: per stage it is -(diag(p) - p p'). `derivs`
returns its diagonal; `cross` returns the stage groups and probabilities from which the
mode finder adds the off-diagonal part (likelihood/quadrature/modes.py).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from mlmrun.errors import DataError
from mlmrun.families.families import Curvature, Derivs, Family, FloatArray, _check, _response


class ChoiceSets:
    """The stage structure of choice sets: for each stage its chosen row and its risk set (entries)."""

    def __init__(self, rank: ArrayLike, set_id: ArrayLike) -> None:
        rank = np.asarray(rank, dtype=np.float64)
        codes = np.unique(np.asarray(set_id), return_inverse=True)[1].reshape(-1)
        self.n = n = len(rank)
        key = np.where(rank > 0, rank, np.inf)
        order = np.lexsort((key, codes))
        sc, sk = codes[order], key[order]
        pos = np.arange(n)
        new = np.r_[True, (sc[1:] != sc[:-1]) | (sk[1:] != sk[:-1])] if n else np.zeros(0, dtype=bool)
        first = np.maximum.accumulate(np.where(new, pos, 0)) if n else pos
        end = np.searchsorted(sc, sc, side="right")
        stage = np.flatnonzero(np.isfinite(sk) & (end - first >= 2))
        start, length = first[stage], (end - first)[stage]
        group = np.repeat(np.arange(len(stage)), length)
        within = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
        self.entry_row = order[start[group] + within]
        self.entry_group = group
        self.chosen = order[stage]
        self.n_groups = len(stage)
        self._blocks: dict = {}

    def _block(self, rows: slice | np.ndarray) -> tuple:
        """Entries and stages of the rows `rows` (whole sets), local to the block, entries grouped by risk-set size.

        Stages of one size L are reduced as a (stages, L, ...) array: one vectorised max/sum over
        axis 1 instead of segment reductions, which numpy runs slowly on node axes.
        """
        key = (rows.start, rows.stop, rows.step) if isinstance(rows, slice) else None
        if key is not None and key in self._blocks:
            return self._blocks[key]
        idx = np.arange(self.n)[rows]
        local = np.full(self.n, -1, dtype=np.intp)
        local[idx] = np.arange(len(idx))
        keep_g = local[self.chosen] >= 0
        groups = np.flatnonzero(keep_g)
        renumber = np.full(self.n_groups, -1, dtype=np.intp)
        renumber[groups] = np.arange(len(groups))
        keep_e = keep_g[self.entry_group]
        e_row = local[self.entry_row[keep_e]]
        e_group = renumber[self.entry_group[keep_e]]
        if np.any(e_row < 0):
            raise ValueError("a block of rows must hold whole choice sets")
        size = np.bincount(e_group, minlength=len(groups))
        order = np.lexsort((np.arange(len(e_group)), size[e_group]))
        e_row, e_group = e_row[order], e_group[order]
        by_size, at = [], 0
        for L in np.unique(size):
            gids = np.flatnonzero(size == L)
            by_size.append((int(L), gids, at, at + len(gids) * int(L)))
            at += len(gids) * int(L)
        unique = len(np.unique(e_row)) == len(e_row)
        scatter = None if unique else sp.csr_matrix((np.ones(len(e_row)), (e_row, np.arange(len(e_row)))),
                                                    shape=(len(idx), len(e_row)))
        out = (len(idx), e_row, e_group, by_size, local[self.chosen[groups]], scatter)
        if key is not None:
            self._blocks[key] = out
        return out

    @staticmethod
    def _probs(nu: np.ndarray, e_row: np.ndarray, by_size: list, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
        """Per stage log sum exp over the risk set, and each entry's choice probability.

        Written as in-place passes over the (stages, L, ...) gather, slice by slice along L
        (contiguous, and no temporaries): this is the hot loop of choice models.
        """
        tail = nu.shape[1:]
        lse = np.empty((n_groups,) + tail)
        parts = []
        for L, gids, a, b in by_size:
            x = nu[e_row[a:b]].reshape((len(gids), L) + tail)
            top = x[:, 0].copy()
            for k in range(1, L):
                np.maximum(top, x[:, k], out=top)
            x -= top[:, None]
            np.exp(x, out=x)
            total = x[:, 0].copy()
            for k in range(1, L):
                total += x[:, k]
            x /= total[:, None]
            np.log(total, out=total)
            total += top
            lse[gids] = total
            parts.append(x.reshape((b - a,) + tail))
        p = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts else np.empty((0,) + tail))
        return lse, p

    def _scatter(self, values: np.ndarray, e_row: np.ndarray, n: int, scatter: sp.csr_matrix | None) -> np.ndarray:
        """Sum entry values into their rows."""
        if scatter is not None:
            return (scatter @ values.reshape(len(e_row), -1)).reshape((n,) + values.shape[1:])
        out = np.zeros((n,) + values.shape[1:])
        out[e_row] = values
        return out

    def derivs(self, nu: np.ndarray, order: int, rows: slice | np.ndarray = slice(None)) -> tuple:
        """(ll, d ll/d nu, diagonal of d2 ll/d nu2) per row of the block; a stage's term sits on its chosen row."""
        n, e_row, _, by_size, chosen, scatter = self._block(rows)
        lse, p = self._probs(nu, e_row, by_size, len(chosen))
        ll = np.zeros(nu.shape)
        ll[chosen] = nu[chosen] - lse
        if order < 1:
            return ll, None, None
        d1 = -self._scatter(p, e_row, n, scatter)
        d1[chosen] += 1.0
        if order < 2:
            return ll, d1, None
        p *= p - 1.0  # -p (1 - p), in place: p is not used again
        return ll, d1, self._scatter(p, e_row, n, scatter)

    def cross(self, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """At a 1-D nu over all rows: (row, stage, probability) of every risk-set entry.

        The Hessian of a stage in nu is -diag(p) + p p'; its off-diagonal part is
        p p' - diag(p^2), which the mode finder adds as sum over stages of
        v v' - sum over entries of p^2 a a' (v = sum of p a over the stage's entries).
        """
        _, e_row, e_group, by_size, chosen, _ = self._block(slice(None))
        return e_row, e_group, self._probs(nu, e_row, by_size, len(chosen))[1]


class ChoiceLogit(Family):
    """Exploded (rank-ordered) logit over choice sets; params are each row's choice-set id (module docstring)."""

    name = "ranking"
    allowed_links = ("logit",)
    default_link = "logit"
    __slots__ = ()

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        y = _response(y, self.name)
        _check((y < 0.0) | (np.floor(y) != y), y, f"{self.name} response must be ranks: integers 1, 2, ... for ranked "
               "alternatives and 0 for unranked ones", "rank")

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        if params is None:
            raise ValueError("choice families need each row's choice-set id as params")
        nu = np.asarray(nu, dtype=np.float64)
        return ChoiceSets(y, params).derivs(nu, order)

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        return np.zeros(np.shape(nu) + (0,))

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """Refused: the rows of a choice set are coupled, so the third derivative in nu is a tensor over the set."""
        raise NotImplementedError(
            f"the {self.name} family couples the rows of a choice set: its third derivatives in nu form a tensor "
            "over each set (per stage, the third cumulant of the choice probabilities), not one value per row, "
            "so curvature_derivs does not apply; fit choice models with the quadrature engine"
        )

    def cross_derivs(self, y, nu, params=None, trials=None) -> None:
        """No family parameters (the params are the choice-set ids)."""
        return None

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        """P(row is chosen first from its set) = softmax of nu within each set (params: set ids)."""
        if params is None:
            raise ValueError("choice families need each row's choice-set id as params")
        nu = np.asarray(nu, dtype=np.float64)
        codes = np.unique(np.asarray(params), return_inverse=True)[1].reshape(-1)
        top = np.full(codes.max() + 1, -np.inf)
        np.maximum.at(top, codes, nu)
        ex = np.exp(nu - top[codes])
        return ex / np.bincount(codes, weights=ex)[codes]


class Multinomial(ChoiceLogit):
    """Multinomial (conditional) logit: one chosen alternative (rank 1) per set, the others 0."""

    name = "multinomial"
    __slots__ = ()

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        y = _response(y, self.name)
        _check((y != 0.0) & (y != 1.0), y, "multinomial response must be 1 for the chosen alternative and 0 for "
               "the others", "chosen")


def check_sets(rank: np.ndarray, set_id: np.ndarray, family: str, where: str, labels: np.ndarray) -> None:
    """Every set has at least two alternatives and a ranked one; multinomial sets have exactly one chosen row."""
    codes = np.unique(set_id, return_inverse=True)[1].reshape(-1)
    size = np.bincount(codes)
    ranked = np.bincount(codes, weights=(rank > 0).astype(float))
    bad = np.flatnonzero(size < 2)
    what = "" if not bad.size else "has only one alternative; a choice needs two or more (drop the set with data.filter)"
    if not what and family == "multinomial":
        bad = np.flatnonzero(ranked != 1)
        what = "has no chosen alternative or several; mark exactly one row of each set as chosen (1, the others 0)"
    if not what:
        bad = np.flatnonzero(ranked < 1)
        what = "ranks no alternative; give its first choice rank 1 (unranked alternatives 0)"
    if bad.size:
        first = labels[np.flatnonzero(codes == bad[0])[0]]
        raise DataError(f"{where}: {bad.size} choice set(s) where the set {first!s:.40} {what}")
