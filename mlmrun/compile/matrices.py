"""Natural parameter values <-> model matrices (beta, lambda, B, Gamma, L per level, family parameters).

`model_matrices` is the one place that reads parameter values into arrays; its
adjoint `values_gradient` maps a likelihood's gradient with respect to those
arrays back onto partable rows, so likelihood code never touches the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.model import CompiledModel, CovBlock


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
    """Per equation: ordinal thresholds or None."""
    valid: bool
    """False when a correlation matrix is not positive semi-definite."""

    @property
    def T(self) -> np.ndarray:
        """(I - B)^-1, mapping disturbances zeta to latent variables eta."""
        return np.linalg.inv(np.eye(len(self.B)) - self.B)


def block_L(block: CovBlock, values: np.ndarray) -> tuple[np.ndarray, bool]:
    """L with L L' = D R D for one covariance block; flags an indefinite R."""
    k = len(block.members)
    sd = values[block.sd_rows]
    R = np.eye(k)
    if len(block.corr_rows):
        r = values[block.corr_rows]
        rows, cols = np.tril_indices(k, -1)
        R[rows, cols] = r
        R[cols, rows] = r
    if k == 1:
        return sd.reshape(1, 1).copy(), True
    try:
        C = np.linalg.cholesky(R)
        ok = True
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(R)
        ok = bool(w.min() > -1e-10)
        C = V * np.sqrt(np.clip(w, 0, None))
    return sd[:, None] * C, ok


def _level_members(model: CompiledModel) -> dict[int, list[int]]:
    return {lvl: model.latent_at(lvl) for lvl in sorted({lat.level for lat in model.latent})}


def model_matrices(model: CompiledModel, values: np.ndarray) -> ModelMatrices:
    """Arrange natural parameter values into the model matrices."""
    M = len(model.latent)
    B = np.zeros((M, M))
    for i, j, row in model.B_entries:
        B[i, j] = values[row]
    Gamma = np.zeros((M, model.W.shape[1]))
    for m, c, row in model.Gamma_entries:
        Gamma[m, c] = values[row]
    L: dict[int, np.ndarray] = {}
    valid = True
    for lvl, members in _level_members(model).items():
        pos = {m: p for p, m in enumerate(members)}
        Ll = np.zeros((len(members), len(members)))
        for block in model.blocks:
            if block.level != lvl:
                continue
            idx = [pos[m] for m in block.members]
            Lb, ok = block_L(block, values)
            valid &= ok
            Ll[np.ix_(idx, idx)] = Lb
        L[lvl] = Ll
    scale = np.full(model.n, np.nan)
    thresholds: list[np.ndarray | None] = []
    for eq in model.equations:
        if eq.scale_rows is not None:
            scale[eq.rows] = values[eq.scale_rows]
        thresholds.append(values[eq.threshold_rows] if eq.threshold_rows is not None else None)
    return ModelMatrices(
        beta=values[model.beta_rows],
        lambdas=tuple(values[lat.loading_rows] for lat in model.latent),
        B=B, Gamma=Gamma, L=L, scale=scale, thresholds=tuple(thresholds), valid=valid,
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

    @classmethod
    def zeros(cls, mm: ModelMatrices) -> MatrixGradient:
        return cls(
            beta=np.zeros_like(mm.beta), lambdas=[np.zeros_like(x) for x in mm.lambdas],
            B=np.zeros_like(mm.B), Gamma=np.zeros_like(mm.Gamma),
            L={k: np.zeros_like(v) for k, v in mm.L.items()}, scale=np.zeros_like(mm.scale),
            thresholds=[None if t is None else np.zeros_like(t) for t in mm.thresholds],
        )


def values_gradient(model: CompiledModel, values: np.ndarray, grad: MatrixGradient, eps: float = 1e-7) -> np.ndarray:
    """Adjoint of `model_matrices`: d loglik / d value for every partable row."""
    g = np.zeros(len(values))
    np.add.at(g, model.beta_rows, grad.beta)
    for lat, gl in zip(model.latent, grad.lambdas, strict=True):
        np.add.at(g, lat.loading_rows, gl)
    for i, j, row in model.B_entries:
        g[row] += grad.B[i, j]
    for m, c, row in model.Gamma_entries:
        g[row] += grad.Gamma[m, c]
    members_of = _level_members(model)
    for block in model.blocks:
        pos = {m: p for p, m in enumerate(members_of[block.level])}
        idx = [pos[m] for m in block.members]
        gL = grad.L[block.level][np.ix_(idx, idx)]
        for row in np.concatenate([block.sd_rows, block.corr_rows]).astype(int):
            up, down = values.copy(), values.copy()
            up[row] += eps
            down[row] -= eps
            dL = (block_L(block, up)[0] - block_L(block, down)[0]) / (2 * eps)
            g[row] += float(np.sum(gL * dL))
    for eq, gt in zip(model.equations, grad.thresholds, strict=True):
        if eq.scale_rows is not None:
            np.add.at(g, eq.scale_rows, grad.scale[eq.rows])
        if eq.threshold_rows is not None and gt is not None:
            np.add.at(g, eq.threshold_rows, gt)
    return g
