"""The exact Gaussian likelihood and its gradient with dense matrices, for models with few random effects.

The block machinery (likelihood/sparse) pays a fixed Python cost per level,
pair and step that dominates when M = I + A'WA is a few dozen square (lme4's
sleepstudy, penicillin, pig): there, one dense Cholesky of M and a handful of
BLAS products do the same work. The random-effects design is A = Xi Hb, with
Xi (n x Kq) the loading-design columns of every unit (fixed) and Hb the
block-diagonal I_units (x) H_l of the loading maps (likelihood/gaussian/design.py),
so with the fixed Grams XX = Xi'Xi, XF = Xi'F and FF = F'F (one residual class,
weight w):

    M = I + w Hb' XX Hb,   R = w Hb' XF E,   ff = w E' FF E,   S = ff - R' M^-1 R.

The criterion follows from S as in deviance.py (`profile_schur`), and its
gradient from G_M = M^-1 + U P U', G_R = -2 U P (gradient.py) as

    dD/dHb = w (2 XX Hb G_M + XF E G_R'),   dD/dE = w (2 FF E P + XF' Hb G_R),
    dD/dw  = (tr(G_M (M - I)) + tr(G_R' R) + tr(P ff)) / w,

summed over units into dD/dH_l; adjoint.matrix_gradient carries them to the
model matrices as on the block path. Used only without residual structures or
log-linear SDs, with one residual class and at most DENSE_SMALL_MAX random
effects (and loading columns); the block path is the reference it is tested
against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from mlmrun.compile.matrices import ModelMatrices
from mlmrun.likelihood.gaussian.design import GaussianDesign, LevelDesign

DENSE_SMALL_MAX = 64
"""Most random effects (and loading-design columns) for which the dense path replaces the block path."""


@dataclass(frozen=True)
class DenseSmall:
    """Parameter-free Grams and the scatter of the loading maps into Hb."""

    XX: np.ndarray
    XF: np.ndarray
    FF: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    """Positions in Hb (Kq x q) of the entries of every level's H_l, unit by unit."""
    source: np.ndarray
    """Index of each of those entries in the concatenation of the H_l (raveled)."""
    shapes: tuple[tuple[int, int, int], ...]
    """Per level: (units, K_l, k_l)."""
    q: int

    @classmethod
    def build(cls, design: GaussianDesign) -> DenseSmall:
        Xi, rows, cols, source, shapes = loading_design(design.levels, design.n)
        F = design.F
        q = sum(u * k for u, _, k in shapes)
        return cls((Xi.T @ Xi).toarray(), np.asarray(Xi.T @ F), F.T @ F, rows, cols, source, shapes, q)

    def hb(self, H: list[np.ndarray]) -> np.ndarray:
        """Hb (Kq x q) from the loading maps H_l."""
        out = np.zeros((len(self.XX), self.q))
        if len(self.rows):
            out[self.rows, self.cols] = np.concatenate([h.ravel() for h in H])[self.source]
        return out

    def unit_sums(self, dHb: np.ndarray) -> list[np.ndarray]:
        """dD/dH_l from dD/dHb: each level's unit blocks summed."""
        flat = dHb[self.rows, self.cols]
        out, start = [], 0
        for u, K, k in self.shapes:
            out.append(flat[start:start + u * K * k].reshape(u, K, k).sum(axis=0))
            start += u * K * k
        return out


def loading_design(levels: Sequence[LevelDesign], n: int
                   ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, tuple[tuple[int, int, int], ...]]:
    """Xi (n x Kq, sparse: K_l columns per unit of every level) and where each level's H_l lands in Hb.

    Returns Xi, the (rows, cols) positions in Hb (Kq x q) of every unit's copy of H_l, the index of each in
    the concatenation of the raveled H_l (`source`), and per level (units, K_l, k_l). Sparse, so that
    forming Xi'Xi costs memory in the rows' non-zeros, never n x Kq.
    """
    r_idx, c_idx, vals, rows, cols, source, shapes = [], [], [], [], [], [], []
    off_K = off_q = off_h = 0
    for lv in levels:
        K, k, u = lv.xi.shape[1], len(lv.members), lv.n_units
        r_idx.append(np.repeat(np.arange(n), K))
        c_idx.append((off_K + lv.codes[:, None] * K + np.arange(K)[None, :]).ravel())
        vals.append(lv.xi.ravel())
        units = np.arange(u)[:, None, None]
        r, c = np.broadcast_arrays(off_K + units * K + np.arange(K)[None, :, None],
                                   off_q + units * k + np.arange(k)[None, None, :])
        rows.append(r.ravel())
        cols.append(c.ravel())
        source.append(np.broadcast_to(off_h + np.arange(K * k).reshape(1, K, k), (u, K, k)).ravel())
        shapes.append((u, K, k))
        off_K, off_q, off_h = off_K + u * K, off_q + u * k, off_h + K * k
    empty = np.zeros(0, dtype=np.int64)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else empty

    Xi = sp.csr_matrix((cat(vals).astype(float), (cat(r_idx), cat(c_idx))), shape=(n, off_K))
    return Xi, cat(rows), cat(cols), cat(source), tuple(shapes)


def dense_small(design: GaussianDesign) -> DenseSmall | None:
    """The design's DenseSmall (built on first use and kept on it), or None where the block path applies."""
    cached = design.__dict__.get("_dense_small", False)
    if cached is not False:
        return cached
    plan = None
    if (design.residual is None and not design.hetero and len(design.class_rows) == 1 and design.levels
            and sum(lv.n_units * len(lv.members) for lv in design.levels) <= DENSE_SMALL_MAX
            and sum(lv.n_units * lv.xi.shape[1] for lv in design.levels) <= DENSE_SMALL_MAX):
        plan = DenseSmall.build(design)
    design._dense_small = plan
    return plan


@dataclass(frozen=True)
class DenseSystem:
    """One evaluation's dense pieces: what the criterion and its gradient share."""

    H: list[np.ndarray]
    E: np.ndarray
    w: float
    Hb: np.ndarray
    XXHb: np.ndarray
    chol: np.ndarray
    R: np.ndarray
    U: np.ndarray
    S: np.ndarray
    logdet: float


def dense_system(plan: DenseSmall, design: GaussianDesign, mats: ModelMatrices, w: float) -> DenseSystem:
    """Factor M and form S = ff - R'M^-1R (raises LinAlgError where M is not positive definite)."""
    H = design.loading_maps(mats)
    E = design.fixed_map(mats)
    Hb = plan.hb(H)
    XXHb = plan.XX @ Hb
    M = w * (Hb.T @ XXHb)
    M[np.diag_indices_from(M)] += 1.0
    L = np.linalg.cholesky(M)
    R = w * (Hb.T @ (plan.XF @ E))
    U = sla.cho_solve((L, True), R, check_finite=False)
    S = w * (E.T @ plan.FF @ E) - R.T @ U
    logdet = 2.0 * float(np.sum(np.log(np.diag(L))))
    return DenseSystem(H, E, w, Hb, XXHb, L, R, U, 0.5 * (S + S.T), logdet)


def dense_adjoint(plan: DenseSmall, ds: DenseSystem, P: np.ndarray, need_weight: bool
                  ) -> tuple[list[np.ndarray], np.ndarray, float]:
    """dD/dH_l, dD/dE and dD/dw from the coefficients P of the Schur complement (gradient.py's P)."""
    q = plan.q
    Minv = sla.cho_solve((ds.chol, True), np.eye(q), check_finite=False)
    UP = ds.U @ P
    G_M = Minv + UP @ ds.U.T
    G_R = -2.0 * UP
    XFE = plan.XF @ ds.E
    dHb = ds.w * (2.0 * ds.XXHb @ G_M + XFE @ G_R.T)
    FFE = plan.FF @ ds.E
    dE = ds.w * (2.0 * FFE @ P + plan.XF.T @ (ds.Hb @ G_R))
    dw = 0.0
    if need_weight:
        MI = ds.Hb.T @ ds.XXHb
        dw = float(np.sum(G_M * MI) + np.sum(G_R * (ds.Hb.T @ XFE)) + np.sum(P * (ds.E.T @ FFE)))
    return plan.unit_sums(dHb), dE, dw
