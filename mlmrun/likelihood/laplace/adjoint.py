"""Adjoint of the u-space linear predictor: per-row sensitivities -> gradient on the free vector.

Every term of the Laplace gradient is the partial derivative, at fixed u
(and fixed auxiliary vectors), of a sum over rows of es_i * nu_i-like and
esu_i . A_i terms plus family-parameter terms. `free_gradient` maps

    es (n,):      multiplier of d fixed_i,
    esu (n, M):   multiplier of d A_im,
    fam:          per equation with family parameters, multipliers of d phi (rows x P),

to d/d free through `values_gradient` and the partable Jacobian. `row_jacobians`
gives the same map row by row (for per-unit scores), by central differences of
the parameter -> (fixed, A, phi) map, which is smooth and cheap.
"""

from __future__ import annotations

import numpy as np

from mlmrun.compile.matrices import MatrixGradient, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.laplace.rowfamilies import ParamDerivs, equation_params
from mlmrun.likelihood.laplace.system import Pieces, pieces


def free_gradient(model: CompiledModel, pc: Pieces, es: np.ndarray, esu: np.ndarray,
                  fam: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Gradient on the free vector of sum_i es_i fixed_i + esu_i . A_i + sum fam . phi (partials in theta)."""
    mm = pc.mm
    grad = MatrixGradient.zeros(mm)
    grad.beta = model.X.T @ es
    M = len(model.latent)
    if M:
        v_s = esu @ pc.Lfull.T
        if model.W.shape[1]:
            v_s = v_s + es[:, None] * pc.WG
        eta_s = v_s @ pc.T.T
        ZT = pc.Z @ pc.T
        grad.lambdas = [lat.Z.T @ eta_s[:, m] for m, lat in enumerate(model.latent)]
        gL = ZT.T @ esu
        grad.L = {lvl: gL[np.ix_(model.latent_at(lvl), model.latent_at(lvl))] for lvl in mm.L}
        if model.W.shape[1]:
            grad.Gamma = ZT.T @ (es[:, None] * model.W)
        if len(model.B_entries):
            grad.B = pc.T.T @ (pc.Z.T @ v_s) @ pc.T.T
    for e, f in fam:
        eq = model.equations[e]
        if eq.ordinal is not None:
            grad.thresholds[e] = np.zeros_like(mm.thresholds[e])
            grad.thresholds[e][eq.rows] = f
        elif eq.threshold_rows is not None:
            grad.thresholds[e] = f.sum(axis=0)
        elif eq.scale_rows is not None:
            grad.scale[eq.rows] = f[:, 0]
        elif eq.family_params is not None:
            grad.family[e] = f.copy()
    g_values = values_gradient(model, pc.values, grad)
    return model.partable.jacobian(pc.free).T @ g_values


def family_terms(parts: list[ParamDerivs], weights: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None],
                 model: CompiledModel) -> list[tuple[int, np.ndarray]]:
    """Combine score, d score/d nu and d^2 score/d nu^2 with per-row multipliers (None: zero) into `fam` terms."""
    out = []
    for p in parts:
        rows = model.equations[p.equation].rows
        f = np.zeros_like(p.score)
        for arr, mult in zip((p.score, p.d1, p.d2), weights, strict=True):
            if mult is not None:
                f += arr * mult[rows][:, None]
        out.append((p.equation, f))
    return out


ROW_STEP = 1e-6


def row_jacobians(model: CompiledModel, free: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """d fixed_i / d free (n, F), d A_i / d free (n, M, F) and per equation with parameters d phi / d free.

    Central differences (step 1e-6 relative) of a map that is linear in beta and
    smooth in the rest: accurate to about 1e-10, enough for sandwich meat.
    """
    F = len(free)
    base = pieces(model, free)
    d_fixed = np.zeros((model.n, F))
    d_A = np.zeros(base.A.shape + (F,))
    d_phi: list = []
    phis = [(e, equation_params(eq, e, base.mm)) for e, eq in enumerate(model.equations)]
    phis = [(e, p) for e, (p, _) in phis if p is not None]
    for e, p in phis:
        eq = model.equations[e]
        a = np.asarray(p, float)
        width = a.size if (eq.threshold_rows is not None and eq.ordinal is None) else (1 if a.ndim == 1 else a.shape[1])
        d_phi.append((e, np.zeros((len(eq.rows), width, F))))
    for j in range(F):
        h = ROW_STEP * max(1.0, abs(free[j]))
        up, down = free.copy(), free.copy()
        up[j] += h
        down[j] -= h
        pu, pd = pieces(model, up), pieces(model, down)
        d_fixed[:, j] = (pu.fixed - pd.fixed) / (2 * h)
        d_A[:, :, j] = (pu.A - pd.A) / (2 * h)
        for (e, store), _ in zip(d_phi, phis, strict=True):
            eq = model.equations[e]
            a = np.asarray(equation_params(eq, e, pu.mm)[0], float)
            b = np.asarray(equation_params(eq, e, pd.mm)[0], float)
            diff = (a - b) / (2 * h)
            if eq.threshold_rows is not None and eq.ordinal is None:
                diff = np.broadcast_to(diff, (len(eq.rows), diff.size))
            store[:, :, j] = diff.reshape(len(eq.rows), -1)
    return d_fixed, d_A, d_phi
