"""Adjoint of the Gaussian block system: from d deviance / d (A'WA, A'WF, F'WF) to the model matrices.

mlmrun.likelihood.gaussian.design builds the blocks of the system from the
loading maps H_l (a_l(i) = H_l' xi_{l,i}), the fixed map E (F_raw E = [X, y~])
and the residual weights w_g = 1/sigma_g^2:

    M_uu = H' (sum_i w_i xi_i xi_i') H,   M_ab = H_a' (...) H_b,   R_u = H' (sum_i w_i xi_i F_i') E,   ff = E'F'WFE.

The deviance D depends on them through tr(G_M dM) + tr(G_R' dR) + tr(G_ff dff)
(`SystemGradient`, likelihood/gaussian/deviance.py), so its gradient with respect to
H_l, E and w follows by the chain rule, either from the raw sums (one product
per unit, as `system` does) or row by row. The second half maps those onto
the model matrices: H_l = blocks lambda_m (T L)[m, members] per source m,
E's Gamma rows -lambda_m[a] (T Gamma)[m, c], T = (I - B)^-1 (dT = T dB T),
and w_g onto the residual SDs. Everything here is the reverse of a forward
step in gaussian_design.py, in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.layout import level_layout
from mlmrun.compile.matrices import MatrixGradient, ModelMatrices
from mlmrun.likelihood.gaussian.design import GaussianDesign, _wsum
from mlmrun.likelihood.sparse.blocks import Pair


@dataclass(frozen=True)
class SystemGradient:
    """Coefficients of dD in the system's blocks (the shapes of BlockSystem)."""

    diag: list[np.ndarray]
    """Per level (n_units, k, k), symmetric: dD = sum_u tr(diag_u dM_uu)."""
    off: dict[Pair, np.ndarray]
    """(a, b) -> (n_initial, k_a, k_b): dD = sum_p tr(off_p' dM_ab,p) (both triangles counted)."""
    rhs: list[np.ndarray]
    """Per level (n_units, k, c): dD = sum_u tr(rhs_u' dR_u)."""
    ff: np.ndarray
    """(c, c), symmetric: dD = tr(ff dF'WF)."""


def _sum_prod(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """sum_u A[u] @ B[u] as one matrix product (A (u, i, j), B (u, j, k))."""
    return np.swapaxes(A, 0, 1).reshape(A.shape[1], -1) @ B.reshape(-1, B.shape[2])


def _sum_inner(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """sum_u A[u]' @ B[u] as one matrix product (A (u, i, r), B (u, i, c))."""
    return A.reshape(-1, A.shape[2]).T @ B.reshape(-1, B.shape[2])


def _class_dot(S: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per residual class g: sum over units and entries of S[u, g] * X[u] (raw sums S (u, G, ...))."""
    u, G = S.shape[:2]
    return np.swapaxes(S.reshape(u, G, -1), 0, 1).reshape(G, -1) @ X.ravel()


def _raw_adjoint(design: GaussianDesign, H: list[np.ndarray], E: np.ndarray, weights: np.ndarray,
                 sg: SystemGradient, need_weights: bool) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """dD/dH_l, dD/dE, dD/dw from the raw sums (one small product per unit, class and pair)."""
    FFw = _wsum(design.FF[None], weights)[0]
    dE = 2.0 * FFw @ E @ sg.ff
    dw = _class_dot(design.FF[None], (E @ sg.ff @ E.T)[None]) if need_weights else np.zeros(len(weights))
    dH = []
    for Hl, S, SF, Gd, GR in zip(H, design.S, design.SF, sg.diag, sg.rhs, strict=True):
        Sw, SFw = _wsum(S, weights), _wsum(SF, weights)
        HG = Hl @ Gd
        HGR = Hl @ GR
        dH.append(2.0 * _sum_prod(Sw, HG) + _sum_prod(SFw @ E, np.swapaxes(GR, 1, 2)))
        dE += _sum_inner(SFw, HGR)
        if need_weights:
            dw += _class_dot(S, HG @ Hl.T) + _class_dot(SF, HGR @ E.T)
    for (a, b), Sp in design.Sp.items():
        Gab = sg.off[(a, b)]
        Spw = _wsum(Sp, weights)
        HaG = H[a] @ Gab
        dH[a] += _sum_prod(Spw, H[b] @ np.swapaxes(Gab, 1, 2))
        dH[b] += _sum_inner(Spw, HaG)
        if need_weights:
            dw += _class_dot(Sp, HaG @ H[b].T)
    return dH, dE, dw


def _row_adjoint(design: GaussianDesign, H: list[np.ndarray], E: np.ndarray, weights: np.ndarray,
                 sg: SystemGradient, per_row: dict | None = None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """dD/dH_l, dD/dE, dD/dw row by row (the Fisher identity's per-row expectations).

    `per_row`, when given, receives dD/d(F E) ('Fe', n x c) and dD/d(xi_l H_l) per level ('coef'): the
    derivatives with respect to the rows themselves, which residual structures carry back through whitening.
    """
    w = weights[design.classes]
    Fe = design.F @ E
    coef = [lv.xi @ Hl for lv, Hl in zip(design.levels, H, strict=True)]
    PF = Fe @ sg.ff
    dFe = 2.0 * w[:, None] * PF
    dwi = np.einsum("ic,ic->i", Fe, PF)
    dcoef = []
    for lv, a, Gd, GR in zip(design.levels, coef, sg.diag, sg.rhs, strict=True):
        t = np.einsum("ikj,ij->ik", Gd[lv.codes], a)
        s = np.einsum("ikc,ic->ik", GR[lv.codes], Fe)
        dwi += np.einsum("ik,ik->i", a, t + s)
        dFe += w[:, None] * np.einsum("ikc,ik->ic", GR[lv.codes], a)
        dcoef.append(w[:, None] * (2.0 * t + s))
    for (a, b), rp in design.row_pair.items():
        Gab = sg.off[(a, b)][rp]
        t = np.einsum("iab,ib->ia", Gab, coef[b])
        dwi += np.einsum("ia,ia->i", coef[a], t)
        dcoef[a] += w[:, None] * t
        dcoef[b] += w[:, None] * np.einsum("iab,ia->ib", Gab, coef[a])
    dH = [lv.xi.T @ dc for lv, dc in zip(design.levels, dcoef, strict=True)]
    if per_row is not None:
        per_row["Fe"], per_row["coef"] = dFe, dcoef
    return dH, design.F.T @ dFe, np.bincount(design.classes, weights=dwi, minlength=len(weights))


def _whitened_adjoint(design: GaussianDesign, H: list[np.ndarray], E: np.ndarray, sg: SystemGradient,
                      per_row: dict | None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """`_row_adjoint` for whitened rows (unit weights, no weight gradient): fewer passes over the rows."""
    Fe = design.F @ E
    coef = [lv.xi @ Hl for lv, Hl in zip(design.levels, H, strict=True)]
    dFe = 2.0 * (Fe @ sg.ff)
    dcoef = []
    for lv, a, Gd, GR in zip(design.levels, coef, sg.diag, sg.rhs, strict=True):
        GRc = GR[lv.codes]
        if Gd.shape[1] == 1:
            s = np.einsum("ic,ic->i", GRc[:, 0, :], Fe)[:, None]
            dFe += a * GRc[:, 0, :]
            dcoef.append(2.0 * Gd[:, 0, 0][lv.codes][:, None] * a + s)
        else:
            t = np.einsum("ikj,ij->ik", Gd[lv.codes], a)
            dFe += np.einsum("ikc,ik->ic", GRc, a)
            dcoef.append(2.0 * t + np.einsum("ikc,ic->ik", GRc, Fe))
    for (a, b), rp in design.row_pair.items():
        Gab = sg.off[(a, b)][rp]
        dcoef[a] += np.einsum("iab,ib->ia", Gab, coef[b])
        dcoef[b] += np.einsum("iab,ia->ib", Gab, coef[a])
    dH = [lv.xi.T @ dc for lv, dc in zip(design.levels, dcoef, strict=True)]
    if per_row is not None:
        per_row["Fe"], per_row["coef"] = dFe, dcoef
    return dH, design.F.T @ dFe, np.zeros(1)


def system_adjoint(design: GaussianDesign, H: list[np.ndarray], E: np.ndarray, weights: np.ndarray,
                   sg: SystemGradient, need_weights: bool = True, per_row: dict | None = None
                   ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """dD/dH_l (K_l x k_l), dD/dE and dD/dw_g through `design.system` (same raw/row-wise choice).

    Without `need_weights` (sigma profiled: the weights are not parameters)
    dD/dw is left at zero on the raw-sums path, saving a product per block.
    """
    if design.raw:
        return _raw_adjoint(design, H, E, weights, sg, need_weights)
    if design.is_whitened:
        return _whitened_adjoint(design, H, E, sg, per_row)
    return _row_adjoint(design, H, E, weights, sg, per_row)


def matrix_gradient(design: GaussianDesign, mats: ModelMatrices, dH: list[np.ndarray], dE: np.ndarray,
                    dsigma: np.ndarray | None, beta_given: bool) -> MatrixGradient:
    """Gradient of the log likelihood (-D/2) on the model matrices, from dD/dH_l, dD/dE and dD/dsigma_g.

    Reverses `loading_maps` and `fixed_map`; `beta_given` when E holds a
    given beta (nothing profiled), so that beta gets its gradient too.
    """
    model = design.model
    grad = MatrixGradient.zeros(mats)
    M = len(model.latent)
    has_B = len(model.B_entries) > 0
    if not has_B and not design.gamma_cols:
        return _finish(design, grad, _plain_level_gradient(design, mats, dH, grad), dE, dsigma, beta_given)
    T = mats.T if has_B else np.eye(M)
    members_at = level_layout(model).members
    Lblk = np.zeros((M, M))
    for lvl, L in mats.L.items():
        members = members_at[lvl]
        Lblk[np.ix_(members, members)] = L
    Gm = T @ Lblk
    dGm = np.zeros((M, M))
    dlam = [np.zeros_like(x) for x in mats.lambdas]
    for lv, dHl in zip(design.levels, dH, strict=True):
        members, start = list(lv.members), 0
        for m in lv.sources:
            blk = dHl[start:start + len(mats.lambdas[m])]
            start += len(mats.lambdas[m])
            dlam[m] += blk @ Gm[m, members]
            dGm[m, members] += mats.lambdas[m] @ blk
    dT = dGm @ Lblk.T
    dLblk = T.T @ dGm
    for lvl in mats.L:
        members = members_at[lvl]
        grad.L[lvl] = -0.5 * dLblk[np.ix_(members, members)]
    p = design.p
    if design.gamma_cols:
        dh = -dE[p:p + len(design.gamma_cols), -1]
        TG = T @ mats.Gamma
        dTG = np.zeros_like(TG)
        for d, (m, a, c) in zip(dh, design.gamma_cols, strict=True):
            dlam[m][a] += d * TG[m, c]
            dTG[m, c] += d * mats.lambdas[m][a]
        grad.Gamma = -0.5 * (T.T @ dTG)
        dT += dTG @ mats.Gamma.T
    if has_B:
        grad.B = -0.5 * (T.T @ dT @ T.T)
    return _finish(design, grad, dlam, dE, dsigma, beta_given)


def _plain_level_gradient(design: GaussianDesign, mats: ModelMatrices, dH: list[np.ndarray], grad: MatrixGradient
                          ) -> list[np.ndarray]:
    """Without B and Gamma: each level's sources are its own members, G = blockdiag(L), so row m of G is
    row m of its level's L; dD/dlambda and grad.L (set here) follow level by level, with no M x M matrices."""
    dlam = [np.zeros_like(x) for x in mats.lambdas]
    for lv, dHl in zip(design.levels, dH, strict=True):
        L = mats.L[lv.level]
        gL = np.zeros_like(L)
        pos = {m: i for i, m in enumerate(lv.members)}
        start = 0
        for m in lv.sources:
            blk = dHl[start:start + len(mats.lambdas[m])]
            start += len(mats.lambdas[m])
            dlam[m] += blk @ L[pos[m]]
            gL[pos[m]] += mats.lambdas[m] @ blk
        grad.L[lv.level] = -0.5 * gL
    return dlam


def _finish(design: GaussianDesign, grad: MatrixGradient, dlam: list[np.ndarray], dE: np.ndarray,
            dsigma: np.ndarray | None, beta_given: bool) -> MatrixGradient:
    """Loadings, a given beta and the residual SDs: the parts every model has."""
    p = design.p
    grad.lambdas = [-0.5 * d for d in dlam]
    if beta_given and p:
        grad.beta[np.isin(design.model.beta_rows, design.beta_rows)] = 0.5 * dE[:p, 0]
    if dsigma is not None:
        grad.scale[design.class_first] = -0.5 * dsigma
    return grad
