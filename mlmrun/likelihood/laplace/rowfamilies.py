"""Per-equation dispatch of the row log densities and their derivatives for the Laplace engine.

The Laplace objective and its exact gradient need, per row i and at the
linear predictor nu_i: ll_i, its first three derivatives in nu, and for the
family parameters phi (thresholds, residual SD, gamma shape, dispersions)
d ll/d phi, d ll'/d phi and d ll''/d phi. Families provide ll, ll', ll''
(`loglik_derivs`), d ll/d phi (`param_score`) and d3 ll/dnu3 with d ll''/d phi
(`curvature_derivs`) and d ll'/d phi (`cross_derivs`); closed-form kernels
(laplace/kernels.py) replace the first for the commonest family/link pairs.
A family without the latter two (NotImplementedError) gets central
differences in nu (the third derivative from ll'', d ll'/d phi and
d ll''/d phi = d/dnu and d^2/dnu^2 of the score; error ~1e-9).
Row weights (frequency x level-1 sampling) multiply every term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.matrices import ModelMatrices
from mlmrun.compile.model import CompiledModel, Equation
from mlmrun.families import Family
from mlmrun.likelihood.laplace.kernels import Kernel, kernel_for

STEP = 1e-4
"""Central-difference step in nu (nu is O(1); truncation ~ STEP^2 / 6, far below the tests' 1e-5)."""


@dataclass(frozen=True)
class RowDerivs:
    """Row-wise (weighted) log density and its derivatives in nu at one linear predictor."""

    ll: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    d3: np.ndarray | None


@dataclass(frozen=True)
class ParamDerivs:
    """Per equation with family parameters: (rows of the equation x P) arrays d ll/d phi, d ll'/d phi, d ll''/d phi."""

    equation: int
    score: np.ndarray
    d1: np.ndarray
    d2: np.ndarray


def equation_params(eq: Equation, e: int, mm: ModelMatrices) -> tuple[np.ndarray | None, bool]:
    """The family parameters of one equation as the family call takes them, and whether they are per row."""
    if eq.ordinal is not None:
        return mm.thresholds[e][eq.rows], True
    if eq.threshold_rows is not None:
        return mm.thresholds[e], False
    if eq.scale_rows is not None:
        return mm.scale[eq.rows], True
    if eq.family_params is not None:
        return mm.family[e], True
    return None, False


class RowFamilies:
    """The model's equations over its rows (data order), with the parameters of one ModelMatrices."""

    def __init__(self, model: CompiledModel, mm: ModelMatrices, row_weight: np.ndarray | None,
                 kernels: list[Kernel | None] | None = None) -> None:
        self.n = model.n
        self.parts: list[tuple[int, Family, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]] = []
        self.kernels: list[Kernel | None] = []
        for e, eq in enumerate(model.equations):
            params, _ = equation_params(eq, e, mm)
            trials = None if model.trials is None else model.trials[eq.rows]
            wt = None if row_weight is None else row_weight[eq.rows]
            self.parts.append((e, eq.family, eq.rows, params, trials, wt))
            if kernels is None:
                self.kernels.append(kernel_for(eq.family, model.y[eq.rows], trials))
        if kernels is not None:
            self.kernels = kernels
        self.y = model.y
        self.whole = len(self.parts) == 1 and np.array_equal(self.parts[0][2], np.arange(self.n))
        """One equation over all rows in order: no scatter into row arrays."""

    def derivs(self, nu: np.ndarray, third: bool) -> RowDerivs:
        """ll, ll', ll'' (and ll''' when `third`) per row."""
        whole = self.whole
        if not whole:
            ll, d1, d2 = (np.empty(self.n) for _ in range(3))
            d3 = np.empty(self.n) if third else None
        for (_, fam, rows, params, trials, wt), kernel in zip(self.parts, self.kernels, strict=True):
            y, x = (self.y, nu) if whole else (self.y[rows], nu[rows])
            if kernel is not None:
                a, b, c, t = kernel(x, params, third)
            else:
                a, b, c = fam.loglik_derivs(y, x, params, trials, 2)
                t = self._third(fam, y, x, params, trials, c) if third else None
            if wt is not None:
                a, b, c = a * wt, b * wt, c * wt
                t = None if t is None else t * wt
            if whole:
                return RowDerivs(a, b, c, t)
            ll[rows], d1[rows], d2[rows] = a, b, c
            if third:
                d3[rows] = t
        return RowDerivs(ll, d1, d2, d3)

    @staticmethod
    def _third(fam: Family, y: np.ndarray, x: np.ndarray, params: np.ndarray | None, trials: np.ndarray | None,
               d2: np.ndarray) -> np.ndarray:
        exact = _curvature(fam, y, x, params, trials)
        if exact is not None:
            return np.asarray(exact[0], float)
        up = fam.loglik_derivs(y, x + STEP, params, trials, 2)[2]
        down = fam.loglik_derivs(y, x - STEP, params, trials, 2)[2]
        return (up - down) / (2 * STEP)

    def params(self, nu: np.ndarray) -> list[ParamDerivs]:
        """For every equation with family parameters: the score and its first two derivatives in nu, per row."""
        out = []
        for e, fam, rows, params, trials, wt in self.parts:
            if params is None:
                continue
            y, x = self.y[rows], nu[rows]
            score = _as_2d(fam.param_score(y, x, params, trials))
            d1 = _cross(fam, y, x, params, trials)
            exact = _curvature(fam, y, x, params, trials)
            d2 = _as_2d(np.asarray(exact[1], float)) if exact is not None and exact[1] is not None else None
            if d1 is None or d2 is None:
                up = _as_2d(fam.param_score(y, x + STEP, params, trials))
                down = _as_2d(fam.param_score(y, x - STEP, params, trials))
                d1 = (up - down) / (2 * STEP) if d1 is None else d1
                d2 = (up - 2 * score + down) / STEP**2 if d2 is None else d2
            if wt is not None:
                score, d1, d2 = score * wt[:, None], d1 * wt[:, None], d2 * wt[:, None]
            out.append(ParamDerivs(e, score, d1, d2))
        return out


def model_kernels(model: CompiledModel) -> list[Kernel | None]:
    """The closed-form kernel of every equation (parameter-free: built once per engine)."""
    return [kernel_for(eq.family, model.y[eq.rows], None if model.trials is None else model.trials[eq.rows])
            for eq in model.equations]


def _cross(fam: Family, y: np.ndarray, x: np.ndarray, params: np.ndarray | None,
           trials: np.ndarray | None) -> np.ndarray | None:
    """The family's exact d ll'/d phi (cross_derivs), or None where it does not give it."""
    try:
        got = fam.cross_derivs(y, x, params, trials)
    except NotImplementedError:
        return None
    return None if got is None else _as_2d(np.asarray(got, float))


def _curvature(fam: Family, y: np.ndarray, x: np.ndarray, params: np.ndarray | None,
               trials: np.ndarray | None) -> tuple | None:
    """The family's exact (d3 ll, d ll''/d phi), or None where it does not give them."""
    try:
        return fam.curvature_derivs(y, x, params, trials)
    except NotImplementedError:
        return None


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    return x[:, None] if x.ndim == 1 else x
