"""Analytic gradient of the exact Gaussian (restricted) log likelihood, from the same block factorisation.

With M = I + A'WA, R = A'WFE, U = M^-1 R and the Schur complement
S = ff - R'U (likelihood/gaussian/deviance.py), the deviance is a function of log|M|,
log|S_xx| (REML) and the quadratic form e'Se at e = [-delta; 1] (the GLS
residual). Beta is profiled, so by the envelope theorem its optimality makes
delta's own variation drop out (likewise sigma when profiled), and

    dD = tr(Z dM) + e'dS e * c + tr(Q dS_xx),    Z = M^-1, Q = S_xx^-1 (REML only),
    dS = dff - dR'U - U'dR + U'dM U,

with c = 1, or dof / (e'Se) when sigma is profiled. Collecting terms with
P = c ee' (+ Q in the top-left block for REML):

    G_M = Z + U P U',   G_R = -2 U P,   G_ff = P.

This is the Fisher identity of the quadrature engine in matrix form: U e is
the posterior mean of the disturbances and Z + U e e'U' their posterior second
moment. G_M is needed only where M is non-zero, so Z comes from the selected
inverse (likelihood/sparse/selected_inverse.py); gaussian_adjoint.py carries G_M,
G_R, G_ff back to H_l, E, the residual weights and the model matrices.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from mlmrun.compile.matrices import MatrixGradient, ModelMatrices
from mlmrun.likelihood.gaussian.adjoint import SystemGradient, matrix_gradient, system_adjoint
from mlmrun.likelihood.gaussian.clustered import ClusteredPlan, clustered_adjoint, clustered_plan, clustered_system
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import (
    LOG_2PI,
    Profiled,
    dense_weights,
    factor_system,
    given_beta,
    profile_schur,
)
from mlmrun.likelihood.gaussian.small_dense import dense_adjoint, dense_small, dense_system
from mlmrun.likelihood.sparse.batched import bmm
from mlmrun.likelihood.sparse.blocks import BlockSystem
from mlmrun.likelihood.sparse.selected_inverse import SelectedInverse, selected_inverse
from mlmrun.likelihood.sparse.spd import inverse_from_cholesky


def _solve_schur(factor, system: BlockSystem) -> tuple[list[np.ndarray], np.ndarray]:
    """U = M^-1 R per level and S = ff - R'U."""
    U = factor.solve(system.rhs) if system.rhs else []
    S = system.ff.copy()
    for R, Ul in zip(system.rhs, U, strict=True):
        S -= np.einsum("ukc,ukd->cd", R, Ul)
    return U, 0.5 * (S + S.T)


def system_gradient(design: GaussianDesign, inv: SelectedInverse, U: list[np.ndarray], P: np.ndarray) -> SystemGradient:
    """G_M = Z + U P U' (on M's non-zero blocks, off-diagonal pairs counted twice), G_R = -2 U P, G_ff = P."""
    UP = [Ul @ P for Ul in U]
    diag = [Z + bmm(UPl, np.swapaxes(Ul, 1, 2)) for Z, UPl, Ul in zip(inv.diag, UP, U, strict=True)]
    off = {}
    for (a, b), (ia, ib) in design.pairs.items():
        off[(a, b)] = 2.0 * (inv.pairs[(a, b)] + bmm(UP[a][ia], np.swapaxes(U[b][ib], 1, 2)))
    return SystemGradient(diag, off, [-2.0 * UPl for UPl in UP], P)


def _residual_sd_gradient(design: GaussianDesign, weights: np.ndarray, dw: np.ndarray) -> np.ndarray:
    """dD/dsigma_g from dD/dw_g (w = sigma^-2) plus the log|S| = sum_g n_g log sigma_g^2 term."""
    sd = 1.0 / np.sqrt(weights)
    return -2.0 * dw / sd**3 + 2.0 * design.class_counts / sd


def _matrix_gradient(design: GaussianDesign, mats: ModelMatrices, E: np.ndarray, weights: np.ndarray,
                     sg: SystemGradient, profile_sigma: bool, beta_given: bool) -> MatrixGradient:
    need = not profile_sigma or design.hetero  # relative SDs exp(s_i' alpha) depend on alpha even when sigma is profiled
    if design.residual is not None:  # whitened rows: the residual parameters act through R (below), not weights
        need = False
    per_row: dict = {}
    H = design.loading_maps(mats)
    dH, dE, dw = system_adjoint(design, H, E, weights, sg, need_weights=need, per_row=per_row)
    dsigma = _residual_sd_gradient(design, weights, dw) if need else None
    grad = matrix_gradient(design, mats, dH, dE, dsigma, beta_given)
    if design.residual is not None:
        G = np.hstack([per_row["Fe"] @ E.T] + [dc @ Hl.T for dc, Hl in zip(per_row["coef"], H, strict=True)])
        grad.residual = -0.5 * design.residual.values_gradient(mats.values, design.residual_factors, G,
                                                               design.whitened_rows)
    return grad


def profiled_gradient(design: GaussianDesign, mats: ModelMatrices, *, reml: bool, profile_sigma: bool
                      ) -> tuple[Profiled, MatrixGradient | None]:
    """`profiled` and the gradient of -deviance/2 on the model matrices (None: no selected inverse here).

    Beta (and sigma with `profile_sigma`) are at their profiled values, so the
    gradient is that of the profiled criterion.
    """
    clustered = clustered_plan(design)
    if clustered is not None:
        return _clustered_profiled_gradient(clustered, design, mats, reml, profile_sigma)
    design = design.whitened(mats)
    plan = dense_small(design)
    if plan is not None:
        return _dense_profiled_gradient(plan, design, mats, reml, profile_sigma)
    weights, log_s, E, system, factor = factor_system(design, mats, profile_sigma)
    inv = selected_inverse(factor, design.inverse_plan)
    U, S = _solve_schur(factor, system)
    prof = profile_schur(design, S, factor.logdet, log_s, reml=reml, profile_sigma=profile_sigma)
    if inv is None:
        return prof, None
    sg = system_gradient(design, inv, U, _schur_coefficients(design, prof, S, reml, profile_sigma))
    return prof, _matrix_gradient(design, mats, E, weights, sg, profile_sigma, beta_given=False)


def _schur_coefficients(design: GaussianDesign, prof: Profiled, S: np.ndarray, reml: bool,
                        profile_sigma: bool) -> np.ndarray:
    """P = c ee' (+ (X'V^-1X)^-1 in the beta block for REML): dD = tr(P dS) at the profiled beta (and sigma)."""
    p = design.p
    factor = prof.xtvx_factor if p else None
    if factor is not None:  # LAPACK solves with the factor profile_schur kept
        e = np.concatenate([-lapack.dpotrs(factor, S[:p, p], lower=1)[0], [1.0]])
    else:
        e = np.concatenate([-np.linalg.solve(prof.xtvx, S[:p, p]) if p else np.zeros(0), [1.0]])
    dof = design.n - p if reml else design.n
    coef = dof / max(float(e @ S @ e), 1e-300) if profile_sigma else 1.0
    P = coef * np.outer(e, e)
    if reml and p:
        if factor is not None:
            P[:p, :p] += inverse_from_cholesky(factor, "X'V^-1X")
        else:
            Q = np.linalg.inv(prof.xtvx)
            P[:p, :p] += 0.5 * (Q + Q.T)
    return P


def _dense_profiled_gradient(plan, design: GaussianDesign, mats: ModelMatrices, reml: bool, profile_sigma: bool
                             ) -> tuple[Profiled, MatrixGradient]:
    """`profiled_gradient` on likelihood/gaussian/small_dense.py's dense path (few random effects)."""
    weights, log_s = dense_weights(design, mats, profile_sigma)
    ds = dense_system(plan, design, mats, float(weights[0]))
    prof = profile_schur(design, ds.S, ds.logdet, log_s, reml=reml, profile_sigma=profile_sigma)
    need = not profile_sigma
    dH, dE, dw = dense_adjoint(plan, ds, _schur_coefficients(design, prof, ds.S, reml, profile_sigma), need)
    dsigma = _residual_sd_gradient(design, weights, np.array([dw])) if need else None
    return prof, matrix_gradient(design, mats, dH, dE, dsigma, beta_given=False)


def _clustered_profiled_gradient(clustered: ClusteredPlan, design: GaussianDesign, mats: ModelMatrices, reml: bool,
                                 profile_sigma: bool) -> tuple[Profiled, MatrixGradient]:
    """`profiled_gradient` on likelihood/gaussian/clustered.py's per-cluster path (residual structures)."""
    assert design.residual is not None
    cs = clustered_system(clustered, design, mats)
    prof = profile_schur(design, cs.S, cs.logdet, cs.log_r, reml=reml, profile_sigma=profile_sigma, direct=True)
    dH, bars = clustered_adjoint(clustered, design, cs, _schur_coefficients(design, prof, cs.S, reml, profile_sigma))
    grad = matrix_gradient(design, mats, dH, np.zeros((design.F.shape[1], design.p + 1)), None, beta_given=False)
    grad.residual = -0.5 * design.residual.covariance_gradient(mats.values, bars)
    return prof, grad


def deviance_gradient(design: GaussianDesign, mats: ModelMatrices) -> tuple[float, MatrixGradient | None]:
    """-2 log L at the beta in `mats` (as `deviance_at`) and the gradient of log L, beta included."""
    design = design.whitened(mats)
    weights, log_s, E, system, factor = factor_system(design, mats, False, given_beta(design, mats))
    inv = selected_inverse(factor, design.inverse_plan)
    U, S = _solve_schur(factor, system)
    deviance = design.n * LOG_2PI + log_s + factor.logdet + float(S[0, 0])
    if inv is None:
        return deviance, None
    sg = system_gradient(design, inv, U, np.ones((1, 1)))
    return deviance, _matrix_gradient(design, mats, E, weights, sg, False, beta_given=True)
