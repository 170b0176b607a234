"""The parameter-dependent pieces of the Laplace engine and the numeric blocks of H = I + A'WA.

In the standardised u-space (notation of mlmrun.compile.model),

    nu_i = x_i'beta + offset_i + z_i' T Gamma w_i + A_i u_(i),   A_i = z_i' T L,

with one column of A per latent variable (A is n x M, every row touching one
unit of every level; L is block-diagonal by level). `Pieces` holds these per
parameter vector; `hessian_blocks` forms the unit blocks and unit-pair blocks
of A'WA for a row weight vector W without ever forming A as a (rows x random
effects) matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.matrices import ModelMatrices, model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.laplace.rowfamilies import RowFamilies
from mlmrun.likelihood.laplace.structure import LaplaceStructure
from mlmrun.likelihood.sparse.blocks import BlockSystem


@dataclass
class Pieces:
    """Arrays shared by the value and the gradient at one free vector."""

    free: np.ndarray
    values: np.ndarray
    mm: ModelMatrices
    Z: np.ndarray
    """(n, M): z_m(i) = Z_m[i] @ lambda_m."""
    T: np.ndarray
    Lfull: np.ndarray
    WG: np.ndarray
    """(n, M): Gamma w_i."""
    fixed: np.ndarray
    """(n,): the linear predictor at u = 0."""
    A: np.ndarray
    """(n, M): the random-effects design in latent-variable columns."""
    fam: RowFamilies


def pieces(model: CompiledModel, free: np.ndarray, kernels: list | None = None) -> Pieces:
    """Unpack the free vector and build the linear predictor in u-space."""
    values = model.partable.unpack(free)
    mm = model_matrices(model, values)
    n, M = model.n, len(model.latent)
    Z = np.zeros((n, M))
    for m, lat in enumerate(model.latent):
        if lat.Z.shape[1]:
            Z[:, m] = lat.Z @ mm.lambdas[m]
    T = np.linalg.inv(np.eye(M) - mm.B) if len(model.B_entries) else np.eye(M)
    Lfull = np.zeros((M, M))
    for lvl, L in mm.L.items():
        members = model.latent_at(lvl)
        Lfull[np.ix_(members, members)] = L
    WG = model.W @ mm.Gamma.T if model.W.shape[1] else np.zeros((n, M))
    ZT = Z @ T if len(model.B_entries) else Z
    fixed = model.X @ mm.beta + model.offset
    if model.W.shape[1]:
        fixed = fixed + np.einsum("im,im->i", ZT, WG)
    A = ZT @ Lfull
    row_weight = None if model.weighting is None else model.weighting.row
    return Pieces(free, values, mm, Z, T, Lfull, WG, fixed, A, RowFamilies(model, mm, row_weight, kernels))


def level_coef(st: LaplaceStructure, A: np.ndarray) -> list[np.ndarray]:
    """Per level in elimination order: the rows' coefficients on their unit's u, (n, k_l)."""
    return [A[:, lv.members] for lv in st.levels]


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[:, :, None] * b[:, None, :]).reshape(len(a), -1)


def hessian_blocks(st: LaplaceStructure, coef: list[np.ndarray], w: np.ndarray) -> BlockSystem:
    """A'WA by unit blocks (per level) and unit-pair blocks (per pair of levels), as a BlockSystem."""
    wcoef = [c * w[:, None] for c in coef]
    diag = []
    for lv, c, wc in zip(st.levels, coef, wcoef, strict=True):
        k = lv.k
        if k == 1:
            diag.append((lv.agg @ (wc[:, 0] * c[:, 0])).reshape(-1, 1, 1))
        else:
            diag.append((lv.agg @ _outer(wc, c)).reshape(lv.n_units, k, k))
    off = {}
    for (a, b), agg in st.pair_agg.items():
        ka, kb = st.levels[a].k, st.levels[b].k
        if ka == 1 and kb == 1:
            off[(a, b)] = (agg @ (wcoef[a][:, 0] * coef[b][:, 0])).reshape(-1, 1, 1)
        else:
            off[(a, b)] = (agg @ _outer(wcoef[a], coef[b])).reshape(-1, ka, kb)
    return BlockSystem(diag, off, [], np.zeros((0, 0)))


def gather(st: LaplaceStructure, u: list[np.ndarray], M: int) -> np.ndarray:
    """(n, M): each row's units' u in latent-variable columns."""
    out = np.zeros((st.n, M))
    for lv, ul in zip(st.levels, u, strict=True):
        out[:, lv.members] = ul[lv.codes]
    return out


def scatter(st: LaplaceStructure, coef: list[np.ndarray], r: np.ndarray) -> list[np.ndarray]:
    """A'r per level: sum over rows of r_i times their coefficients, (units, k) each."""
    return [lv.agg @ (c * r[:, None]) for lv, c in zip(st.levels, coef, strict=True)]


def linear_predictor(pc: Pieces, st: LaplaceStructure, coef: list[np.ndarray], u: list[np.ndarray]) -> np.ndarray:
    """nu = fixed + A u."""
    nu = pc.fixed.copy()
    for lv, c, ul in zip(st.levels, coef, u, strict=True):
        nu += np.einsum("ik,ik->i", c, ul[lv.codes]) if lv.k > 1 else c[:, 0] * ul[lv.codes, 0]
    return nu
