"""Natural parameter values <-> model matrices (beta, lambda, B, Gamma, L per level, family parameters).

`model_matrices` is the one place that reads parameter values into arrays; its
adjoint `values_gradient` maps a likelihood's gradient with respect to those
arrays back onto partable rows, so likelihood code never touches the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlmrun.compile.layout import level_layout, tril
from mlmrun.compile.model import CompiledModel, CovBlock
from mlmrun.compile.ordinal_ext import add_row_params_gradient, row_params


@dataclass(frozen=True)
class ModelMatrices:
    """Parameter values arranged as the model's matrices."""

    beta: np.ndarray
    lambdas: tuple[np.ndarray, ...]
    B: np.ndarray
    Gamma: np.ndarray
    L: dict[int, np.ndarray]
    """Per level index: L_l with zeta_l = L_l u_l (members ordered as CompiledModel.latent_at(l))."""
    scale: np.ndarray
    """Per row: gaussian residual SD or gamma shape (nan for other families)."""
    thresholds: tuple[np.ndarray | None, ...]
    """Per equation: ordinal thresholds, or for `thresholds:`/`scale:` models (rows, K) per-row thresholds then the latent SD (nan on other equations' rows), or None."""
    valid: bool
    """False when a correlation matrix is not positive semi-definite."""
    family: tuple[np.ndarray | None, ...] = ()
    """Per equation: its family's parameter columns (equation rows x columns) or None (compile/family_params.py)."""
    values: np.ndarray | None = None
    """The natural values they came from (residual covariance structures read their rows here)."""

    @property
    def T(self) -> np.ndarray:
        """(I - B)^-1, mapping disturbances zeta to latent variables eta."""
        return np.linalg.inv(np.eye(len(self.B)) - self.B)


def block_L(block: CovBlock, values: np.ndarray) -> tuple[np.ndarray, bool]:
    """L with L L' = D R D for one covariance block; flags an indefinite R."""
    k = len(block.members)
    sd = values[block.sd_rows]
    if k == 1:
        return sd.reshape(1, 1).copy(), True
    if k == 2 and len(block.corr_rows):
        r = float(values[block.corr_rows[0]])
        if 1.0 - r * r > 0.0:  # chol([[1, r], [r, 1]]) = [[1, 0], [r, sqrt(1 - r^2)]]
            return np.array([[sd[0], 0.0], [sd[1] * r, sd[1] * np.sqrt(1.0 - r * r)]]), True
        if abs(r) == 1.0:  # semidefinite_cholesky's limit: the second pivot is 0
            return np.array([[sd[0], 0.0], [sd[1] * r, 0.0]]), True
    R = np.eye(k)
    if len(block.corr_rows):
        r = values[block.corr_rows]
        rows, cols = tril(k, -1)
        R[rows, cols] = r
        R[cols, rows] = r
    try:
        C = np.linalg.cholesky(R)
        ok = True
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(R)
        ok = bool(w.min() > -1e-10)
        C = semidefinite_cholesky(R) if ok else V * np.sqrt(np.clip(w, 0, None))
    return sd[:, None] * C, ok


def semidefinite_cholesky(R: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Lower-triangular C with C C' = R for a positive SEMI-definite R (a correlation of exactly +-1).

    Zero pivots leave their column at zero, so C is the limit of chol(R) as R
    approaches the boundary (continuous in the correlations; an eigenvector
    square root would be a rotation of it and make L jump at the bound).
    """
    k = len(R)
    C = np.zeros_like(R, dtype=float)
    for j in range(k):
        pivot = R[j, j] - C[j, :j] @ C[j, :j]
        if pivot <= tol:
            continue
        C[j, j] = np.sqrt(pivot)
        C[j + 1:, j] = (R[j + 1:, j] - C[j + 1:, :j] @ C[j, :j]) / C[j, j]
    return C


def model_matrices(model: CompiledModel, values: np.ndarray) -> ModelMatrices:
    """Arrange natural parameter values into the model matrices."""
    M = len(model.latent)
    B = np.zeros((M, M))
    for i, j, row in model.B_entries:
        B[i, j] = values[row]
    Gamma = np.zeros((M, model.W.shape[1]))
    for m, c, row in model.Gamma_entries:
        Gamma[m, c] = values[row]
    layout = level_layout(model)
    L: dict[int, np.ndarray] = {lvl: np.zeros((len(m), len(m))) for lvl, m in layout.members.items()}
    valid = True
    for block, bl in zip(model.blocks, layout.blocks, strict=True):
        if bl.diagonal:
            L[block.level][bl.pos[0], bl.pos[0]] = values[block.sd_rows[0]]
            continue
        Lb, ok = block_L(block, values)
        valid &= ok
        L[block.level][np.ix_(bl.pos, bl.pos)] = Lb
    scale = np.full(model.n, np.nan)
    thresholds: list[np.ndarray | None] = []
    for eq in model.equations:
        if eq.scale_rows is not None:
            scale[eq.rows] = values[eq.scale_rows]
            if eq.hetero is not None:
                scale[eq.rows] *= np.exp(eq.hetero @ values[eq.hetero_rows])
        if eq.ordinal is not None:
            per_row = np.full((model.n, len(eq.threshold_rows) + 1), np.nan)
            per_row[eq.rows], ok = row_params(eq.ordinal, values[eq.threshold_rows], values)
            valid &= ok
            thresholds.append(per_row)
        else:
            thresholds.append(values[eq.threshold_rows] if eq.threshold_rows is not None else None)
    return ModelMatrices(
        beta=values[model.beta_rows],
        lambdas=tuple(values[lat.loading_rows] for lat in model.latent),
        B=B, Gamma=Gamma, L=L, scale=scale, thresholds=tuple(thresholds), valid=valid, values=values,
        family=tuple(None if eq.family_params is None else eq.family_params.values(values) for eq in model.equations),
    )


@dataclass
class MatrixGradient:
    """Gradient of the log likelihood with respect to the model matrices (same shapes as ModelMatrices)."""

    beta: np.ndarray
    lambdas: list[np.ndarray]
    B: np.ndarray
    Gamma: np.ndarray
    L: dict[int, np.ndarray]
    scale: np.ndarray
    thresholds: list[np.ndarray | None]
    family: list[np.ndarray | None] = field(default_factory=list)
    residual: np.ndarray | None = None
    """Gradient on partable rows of a residual covariance structure (likelihood/gaussian/residual_structures.py), or None."""

    @classmethod
    def zeros(cls, mm: ModelMatrices) -> MatrixGradient:
        return cls(
            beta=np.zeros_like(mm.beta), lambdas=[np.zeros_like(x) for x in mm.lambdas],
            B=np.zeros_like(mm.B), Gamma=np.zeros_like(mm.Gamma),
            L={k: np.zeros_like(v) for k, v in mm.L.items()}, scale=np.zeros_like(mm.scale),
            thresholds=[None if t is None else np.zeros_like(t) for t in mm.thresholds],
            family=[None if f is None else np.zeros_like(f) for f in mm.family],
        )


def block_L_adjoint(block: CovBlock, values: np.ndarray, gL: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """d loglik / d (sd rows, corr rows) of one block, given gL = d loglik / d L (the block's part of L).

    Analytic: L = D C with C = chol(R), so dL/d sd_j = e_j e_j' C, and for a
    correlation dL = D dC with dC = C Phi(C^-1 dR C^-T), Phi = lower triangle
    with halved diagonal (the derivative of a Cholesky factor). Phi is
    self-adjoint, so the adjoint is S = C^-T Phi(C' D gL) C^-1 and
    d loglik / d r_ab = S_ab + S_ba. No step is taken, so correlations next
    to +-1 are as safe as any other value. A singular R (a correlation of
    exactly +-1) has no Cholesky inverse: there, one-sided differences that
    step away from the bound are used instead.
    """
    k = len(block.members)
    sd = values[block.sd_rows]
    if k == 1:
        return np.array([float(gL[0, 0])])
    if k == 2 and len(block.corr_rows):
        r = float(values[block.corr_rows[0]])
        if 1.0 - r * r > 0.0:
            return _pair_adjoint(sd, r, gL)
        if abs(r) == 1.0:  # R is singular: no Cholesky inverse (as the general path finds, at a cost)
            return _block_L_adjoint_numeric(block, values, gL, eps)
    R = np.eye(k)
    rows, cols = tril(k, -1)
    if len(block.corr_rows):
        r = values[block.corr_rows]
        R[rows, cols] = r
        R[cols, rows] = r
    try:
        C = np.linalg.cholesky(R)
        Cinv = np.linalg.inv(C)
    except np.linalg.LinAlgError:
        return _block_L_adjoint_numeric(block, values, gL, eps)
    g_sd = np.einsum("jk,jk->j", gL, C)
    if not len(block.corr_rows):
        return g_sd
    M = C.T @ (sd[:, None] * gL)
    phi = np.tril(M)
    phi[np.diag_indices(k)] *= 0.5
    S = Cinv.T @ phi @ Cinv
    return np.concatenate([g_sd, S[rows, cols] + S[cols, rows]])


def _pair_adjoint(sd: np.ndarray, r: float, gL: np.ndarray) -> np.ndarray:
    """`block_L_adjoint` of a 2 x 2 block with a correlation in (-1, 1), written out (no LAPACK calls).

    C = [[1, 0], [r, s]], s = sqrt(1 - r^2), C^-1 = [[1, 0], [a, b]] with a = -r/s, b = 1/s; M = C'(D gL),
    Phi = lower triangle of M with halved diagonal, S = C^-T Phi C^-1, so S_10 + S_01 = b Phi_10 + 2 a b Phi_11.
    """
    s = float(np.sqrt(1.0 - r * r))
    g00, g10, g11 = float(gL[0, 0]), float(gL[1, 0]), float(gL[1, 1])  # gL[0, 1] meets C[0, 1] = 0
    s1 = float(sd[1])
    phi10 = s * s1 * g10
    phi11 = 0.5 * s * s1 * g11
    a, b = -r / s, 1.0 / s
    return np.array([g00, g10 * r + g11 * s, b * phi10 + 2.0 * a * b * phi11])


def _block_L_adjoint_numeric(block: CovBlock, values: np.ndarray, gL: np.ndarray, eps: float) -> np.ndarray:
    """Fallback for a singular correlation matrix: differences that never step outside [-1, 1]."""
    out = []
    base = block_L(block, values)[0]
    for row in np.concatenate([block.sd_rows, block.corr_rows]).astype(int):
        moved = values.copy()
        toward = -1.0 if values[row] > 0 and row in block.corr_rows else 1.0
        moved[row] += toward * eps
        out.append(toward * float(np.sum(gL * (block_L(block, moved)[0] - base))) / eps)
    return np.array(out)


def values_gradient(model: CompiledModel, values: np.ndarray, grad: MatrixGradient, eps: float = 1e-7) -> np.ndarray:
    """Adjoint of `model_matrices`: d loglik / d value for every partable row (analytic; see block_L_adjoint)."""
    g = np.zeros(len(values))
    np.add.at(g, model.beta_rows, grad.beta)
    for lat, gl in zip(model.latent, grad.lambdas, strict=True):
        np.add.at(g, lat.loading_rows, gl)
    for i, j, row in model.B_entries:
        g[row] += grad.B[i, j]
    for m, c, row in model.Gamma_entries:
        g[row] += grad.Gamma[m, c]
    for block, bl in zip(model.blocks, level_layout(model).blocks, strict=True):
        if bl.diagonal:
            g[bl.rows[0]] += grad.L[block.level][bl.pos[0], bl.pos[0]]
            continue
        gL = grad.L[block.level][np.ix_(bl.pos, bl.pos)]
        np.add.at(g, bl.rows, block_L_adjoint(block, values, gL, eps))
    for eq, gt in zip(model.equations, grad.thresholds, strict=True):
        if eq.scale_rows is not None:
            gs = grad.scale[eq.rows]
            if eq.hetero is not None:
                mult = np.exp(eq.hetero @ values[eq.hetero_rows])
                g[eq.hetero_rows] += eq.hetero.T @ (gs * values[eq.scale_rows] * mult)
                gs = gs * mult
            np.add.at(g, eq.scale_rows, gs)
        if eq.ordinal is not None and gt is not None:
            add_row_params_gradient(eq.ordinal, eq.threshold_rows, values, gt[eq.rows], g)
        elif eq.threshold_rows is not None and gt is not None:
            np.add.at(g, eq.threshold_rows, gt)
    for eq, gf in zip(model.equations, grad.family, strict=False):
        if eq.family_params is not None and gf is not None:
            eq.family_params.adjoint(gf, g)
    if grad.residual is not None:
        g += grad.residual
    return g
