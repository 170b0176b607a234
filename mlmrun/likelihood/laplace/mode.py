"""The joint posterior mode u* of all random effects: penalised Newton on the sparse system.

g(u) = sum_i ll_i(nu_i) - u'u/2 is maximised by Newton steps H d = A's - u,
H = I + A'WA (W = -ll''), each a numeric block factorisation over the model's
fixed BlockStructure. Steps are halved while g does not increase. Where
-ll'' is negative (non-log-concave densities away from the mode) the step
uses W clipped at 0, which keeps H positive definite. Iteration stops when
the Newton decrement d'Hd falls below `tol` (the mode is then accurate to
about sqrt(tol) in the H-norm, and the Laplace value, quadratic in the mode
error, to about tol); the caller's previous mode is the warm start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.likelihood.laplace.rowfamilies import RowDerivs
from mlmrun.likelihood.laplace.schur import SchurFactor
from mlmrun.likelihood.laplace.structure import LaplaceStructure
from mlmrun.likelihood.laplace.system import Pieces, hessian_blocks, level_coef, linear_predictor, scatter
from mlmrun.likelihood.sparse.blocks import BlockFactor

TOL = 1e-20
MAX_ITER = 100
MAX_HALVINGS = 40


class ModeFailure(ArithmeticError):
    """Newton could not find the joint mode (non-finite objective or no ascent)."""


@dataclass
class Mode:
    """The joint mode and what the objective needs there."""

    u: list[np.ndarray]
    """Per level in elimination order, (units, k)."""
    nu: np.ndarray
    rd: RowDerivs
    g: float
    """g(u*) = sum ll - u'u/2."""
    factor: BlockFactor | SchurFactor
    """Factor of H at u* (raises on construction where H is not positive definite)."""
    coef: list[np.ndarray]
    iterations: int


def _penalty(u: list[np.ndarray]) -> float:
    return 0.5 * float(sum(np.sum(x * x) for x in u))


def find_mode(st: LaplaceStructure, pc: Pieces, start: list[np.ndarray] | None, third: bool,
              tol: float = TOL) -> Mode:
    """Newton with step halving from `start` (zeros when None); the result carries H's factor at the mode."""
    coef = level_coef(st, pc.A)
    u = [np.zeros((lv.n_units, lv.k)) for lv in st.levels] if start is None else [x.copy() for x in start]
    nu = linear_predictor(pc, st, coef, u)
    rd = pc.fam.derivs(nu, third=False)
    g = float(np.sum(rd.ll)) - _penalty(u)
    if not np.isfinite(g) and start is not None:
        u = [np.zeros_like(x) for x in u]
        nu = linear_predictor(pc, st, coef, u)
        rd = pc.fam.derivs(nu, third=False)
        g = float(np.sum(rd.ll)) - _penalty(u)
    if not np.isfinite(g):
        raise ModeFailure("the log density is not finite at the starting values of the random effects")
    for it in range(MAX_ITER):
        w = -rd.d2
        clipped = bool(np.any(w < 0))
        if clipped:
            w = np.maximum(w, 0.0)
        factor = st.factorize(hessian_blocks(st, coef, w))
        grad = [s - x for s, x in zip(scatter(st, coef, rd.d1), u, strict=True)]
        step = [x[:, :, 0] for x in factor.solve([x[:, :, None] for x in grad])]
        decrement = float(sum(np.sum(a * b) for a, b in zip(step, grad, strict=True)))
        if decrement < tol:
            return _at_mode(st, pc, coef, u, rd, third, it, None if clipped else factor)
        t = 1.0
        for _ in range(MAX_HALVINGS):
            trial = [x + t * d for x, d in zip(u, step, strict=True)]
            nu_t = linear_predictor(pc, st, coef, trial)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a too-long step: halved below
                rd_t = pc.fam.derivs(nu_t, third=False)
            g_t = float(np.sum(rd_t.ll)) - _penalty(trial)
            if np.isfinite(g_t) and g_t >= g - 1e-12 * abs(g):
                break
            t *= 0.5
        else:
            if decrement < 1e-12:
                return _at_mode(st, pc, coef, u, rd, third, it, None if clipped else factor)
            raise ModeFailure("Newton steps for the random-effect modes found no ascent")
        u, nu, rd, g = trial, nu_t, rd_t, g_t
    raise ModeFailure(f"the random-effect modes did not converge in {MAX_ITER} Newton steps")


def _at_mode(st: LaplaceStructure, pc: Pieces, coef: list[np.ndarray], u: list[np.ndarray], rd: RowDerivs,
             third: bool, iterations: int, factor: BlockFactor | SchurFactor | None) -> Mode:
    """The Mode record; H's factor is refactorised only where the last step's W was clipped."""
    nu = linear_predictor(pc, st, coef, u)
    if third:
        rd = pc.fam.derivs(nu, third=True)
    if factor is None:
        factor = st.factorize(hessian_blocks(st, coef, -rd.d2))
    return Mode(u, nu, rd, float(np.sum(rd.ll)) - _penalty(u), factor, coef, iterations)
