"""Selected inverse of M = I + A'WA from its block Cholesky factor (Takahashi, Fagan & Chen 1973).

The gradient of the exact Gaussian likelihood needs tr(M^-1 dM), and the
empirical Bayes SDs need the posterior covariance M^-1 of the disturbances:
both only on the blocks where M itself is non-zero, i.e. each unit's diagonal
block and the blocks of unit pairs that share a row. With M = L L' (block
lower L: L_uu a unit's Cholesky block and L_ku = K_u[k]' its off-diagonal
blocks, sparse_blocks.BlockFactor), Z = M^-1 satisfies Z L = L^-T, which gives
for a unit u of an eliminated level and the units k it is linked to (its
neighbours N(u), a clique of the filled graph):

    Y_k  = sum_{j in N(u)} K_u[j] Z_jk,
    Z_uk = -L_uu^-T Y_k,
    Z_uu = L_uu^-T (I + sum_{k in N(u)} Y_k K_u[k]') L_uu^-1.

Levels are processed in reverse elimination order; each needs Z only on pairs
of its units' neighbours, which later levels (or the remainder) have already
produced: the structure's `links` list exactly those pairs. The remainder
(levels factorised together at the end) is inverted densely from its Cholesky
factor (LAPACK potri). A `direct` level (blocks.DIRECT_MIN: eliminated just before
the remainder, every neighbour in it) gets its Y_k from one sparse times
dense product K Z_r, in chunks, instead of per-pair links. A remainder factorised by sparse LU has no selected
inverse here (`selected_inverse` returns None and callers fall back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from mlmrun.likelihood.sparse.batched import bmm, summing
from mlmrun.likelihood.sparse.blocks import BlockFactor, BlockStructure, Pair


@dataclass(frozen=True)
class Link:
    """Products K_a[b][left]' ... for unit pairs (neighbour via pair `left` of (a, b), via `right` of (a, c))."""

    b: int
    c: int
    left: np.ndarray
    right: np.ndarray
    source: str
    """Where Z between the two neighbours lives: 'diag' or 'pair' (an eliminated level b), 'dense' (remainder)."""
    index: np.ndarray
    """'diag'/'pair': the block's target; 'dense': flat positions of the (N, k_b, k_c) blocks in the remainder inverse."""
    to_right: sp.csr_matrix
    """Sums products into the pairs of (a, c)."""
    mirror: np.ndarray
    """Combinations that also feed the pair `left` (all but a neighbour with itself)."""
    mirror_index: np.ndarray | None
    """'dense': flat positions of the transposed blocks (len(mirror), k_c, k_b) of those combinations."""
    to_left: sp.csr_matrix


def _remainder_rows(st: BlockStructure, b: int, units: np.ndarray) -> np.ndarray:
    """Positions in the remainder of the k_b coefficients of each unit, shape (len(units), k_b)."""
    return st.offsets[b] + units[:, None] * st.k[b] + np.arange(st.k[b])[None, :]


CHUNK_ENTRIES = 1 << 18
"""Products K[r, c_i] Z_r[c_i, c_j] of a direct level formed at a time (a few MB of temporaries)."""


@dataclass(frozen=True)
class DirectPlan:
    """A direct level's K as a row-sorted sparse matrix over the remainder, its rows grouped by length.

    Only Y = K Z_r at K's own pattern is needed, and for a row r with entries
    (c_1..c_L) that is Y[r, c_j] = sum_i K[r, c_i] Z_r[c_i, c_j]: an L x L block
    of Z_r per row (a unit's neighbours with each other). Rows of one length
    are done together, at most CHUNK_ENTRIES block entries at a time, so the
    per-pair index arrays of the `links` are never stored.
    """

    order: np.ndarray
    """Entries of `into_remainder` (K's values in BlockFactor order) sorted by row then column."""
    cols: np.ndarray
    """Remainder column of each sorted entry."""
    groups: tuple[tuple[int, np.ndarray], ...]
    """(L, first sorted entry of each row of length L), split into chunks."""
    targets: tuple[tuple[int, int, int], ...]
    """(level b, start, stop) of each neighbour level's blocks in K's values."""

    @classmethod
    def build(cls, st: BlockStructure, a: int) -> DirectPlan:
        targets, rows, cols = st.into_remainder[a]
        order = np.lexsort((cols, rows))
        indptr = np.searchsorted(rows[order], np.arange(st.n_units[a] * st.k[a] + 1))
        lens = np.diff(indptr)
        groups = []
        for length in np.unique(lens[lens > 0]):
            starts = indptr[:-1][lens == length]
            per = max(1, CHUNK_ENTRIES // int(length) ** 2)
            groups += [(int(length), starts[i:i + per]) for i in range(0, len(starts), per)]
        spans, start = [], 0
        for b in targets:
            size = len(st.pairs[(a, b)][0]) * st.k[a] * st.k[b]
            spans.append((b, start, start + size))
            start += size
        return cls(order, cols[order], tuple(groups), tuple(spans))


def _direct_products(factor: BlockFactor, plan: DirectPlan, a: int, Zr: np.ndarray) -> dict[int, np.ndarray]:
    """Y_b = sum_j K_u[j] Z_jb for a direct level a (every neighbour in the remainder), at its pairs with b."""
    q = factor.structure.q_remainder
    values = factor.K_remainder[a][plan.order]
    out = np.empty_like(values)
    flat = Zr.ravel()
    for length, starts in plan.groups:
        idx = starts[:, None] + np.arange(length)[None, :]
        c = plan.cols[idx]
        block = flat.take(c[:, :, None] * q + c[:, None, :])
        out[idx] = (values[idx][:, None, :] @ block)[:, 0, :]
    Y = np.empty_like(out)
    Y[plan.order] = out
    return {b: Y[s0:s1].reshape(factor.K[a][b].shape) for b, s0, s1 in plan.targets}


class InversePlan:
    """Parameter-free index arrays of the selected inversion (built once per BlockStructure)."""

    def __init__(self, st: BlockStructure):
        self.structure = st
        self.links: list[list[Link]] = []
        for a in range(st.n_blockwise):
            links = []
            for b, c, left, right, target in st.links[a]:
                ib, ic = st.pairs[(a, b)][1][left], st.pairs[(a, c)][1][right]
                mirror = np.flatnonzero(~((b == c) & (left == right)))
                mirror_index = None
                if b >= st.n_blockwise:
                    rows = _remainder_rows(st, b, ib)[:, :, None]
                    cols = _remainder_rows(st, c, ic)[:, None, :]
                    source, index = "dense", rows * st.q_remainder + cols
                    mirror_index = np.swapaxes(cols[mirror] * st.q_remainder + rows[mirror], 1, 2).copy()
                else:
                    source, index = ("diag" if b == c else "pair"), target
                links.append(Link(b, c, left, right, source, index, summing(right, len(st.pairs[(a, c)][0])),
                                  mirror, mirror_index, summing(left[mirror], len(st.pairs[(a, b)][0]))))
            self.links.append(links)
        self.direct = {a: DirectPlan.build(st, a) for a in range(st.n_blockwise) if st.direct[a]}
        self.remainder_pairs: dict[Pair, tuple[np.ndarray, np.ndarray]] = {}
        for b in st.remainder:
            for c in st.remainder:
                n0 = st.n_initial.get((b, c), 0)
                if c > b and n0:
                    ib, ic = st.pairs[(b, c)]
                    rows = _remainder_rows(st, b, ib[:n0])[:, :, None]
                    cols = _remainder_rows(st, c, ic[:n0])[:, None, :]
                    self.remainder_pairs[(b, c)] = tuple(np.broadcast_arrays(rows, cols))


@dataclass(frozen=True)
class SelectedInverse:
    """Blocks of Z = M^-1 where M is non-zero, in the structure's level order."""

    diag: list[np.ndarray]
    """Per level, (n_units, k, k)."""
    pairs: dict[Pair, np.ndarray]
    """(a, b) -> (n_initial, k_a, k_b): Z between the units of each initial pair (units sharing a row)."""


def _remainder_inverse(factor: BlockFactor) -> np.ndarray:
    """Dense inverse of the remainder from its lower Cholesky factor."""
    upper, info = lapack.dpotri(factor.dense.T, lower=0)  # Fortran view of L': no copy on the way in
    if info != 0:
        raise np.linalg.LinAlgError("the remainder of M could not be inverted")
    Z = upper.T  # C-ordered, inverse in the lower triangle: mirror it in place, a band of rows at a time
    q = len(Z)
    for i0 in range(0, q, 256):
        i1 = min(i0 + 256, q)
        Z[i0:i1, i1:] = Z[i1:, i0:i1].T
        block = Z[i0:i1, i0:i1]
        upper_idx = np.triu_indices(i1 - i0, 1)
        block[upper_idx] = block.T[upper_idx]
    return Z


def selected_inverse(factor: BlockFactor, plan: InversePlan) -> SelectedInverse | None:
    """The selected inverse of the factored M (None when its remainder was factorised by sparse LU)."""
    st = factor.structure
    if st.remainder and factor.dense is None:
        return None
    Zr = _remainder_inverse(factor) if st.remainder else np.zeros((0, 0))
    flat = Zr.ravel()
    L = len(st.n_units)
    diag: list[np.ndarray] = [np.zeros((u, k, k)) for u, k in zip(st.n_units, st.k, strict=True)]
    full: dict[Pair, np.ndarray] = {}
    for a in range(st.n_blockwise - 1, -1, -1):
        Li, K = factor.Linv[a], factor.K[a]
        ka = st.k[a]
        Y = _direct_products(factor, plan.direct[a], a, Zr) if a in plan.direct else \
            {b: np.zeros_like(Kb) for b, Kb in K.items()}
        for link in plan.links[a]:
            if link.source == "dense":
                Zlr = flat.take(link.index)
            elif link.source == "diag":
                Zlr = diag[link.b][link.index]
            else:
                Zlr = full[(link.b, link.c)][link.index]
            kb, kc = st.k[link.b], st.k[link.c]
            prod = bmm(K[link.b][link.left], Zlr)
            Y[link.c] += (link.to_right @ prod.reshape(len(prod), -1)).reshape(-1, ka, kc)
            if len(link.mirror):
                Zrl = flat.take(link.mirror_index) if link.mirror_index is not None else \
                    np.swapaxes(Zlr[link.mirror], 1, 2)
                back = bmm(K[link.c][link.right[link.mirror]], Zrl)
                Y[link.b] += (link.to_left @ back.reshape(len(back), -1)).reshape(-1, ka, kb)
        LiT = np.swapaxes(Li, 1, 2)
        inner = np.broadcast_to(np.eye(ka), (st.n_units[a], ka, ka)).copy()
        for b, Yb in Y.items():
            ia = st.pairs[(a, b)][0]
            full[(a, b)] = -bmm(LiT[ia], Yb)
            inner += (st.to_a[(a, b)] @ bmm(Yb, np.swapaxes(K[b], 1, 2)).reshape(len(ia), -1)).reshape(-1, ka, ka)
        diag[a] = bmm(bmm(LiT, inner), Li)
    for b in st.remainder:
        idx = _remainder_rows(st, b, np.arange(st.n_units[b]))
        diag[b] = Zr[idx[:, :, None], idx[:, None, :]]
    pairs: dict[Pair, np.ndarray] = {}
    for a in range(L):
        for b in range(a + 1, L):
            n0 = st.n_initial[(a, b)]
            if a < st.n_blockwise:
                pairs[(a, b)] = full[(a, b)][:n0] if (a, b) in full else np.zeros((0, st.k[a], st.k[b]))
            elif (a, b) in plan.remainder_pairs:
                rows, cols = plan.remainder_pairs[(a, b)]
                pairs[(a, b)] = Zr[rows, cols]
            else:
                pairs[(a, b)] = np.zeros((0, st.k[a], st.k[b]))
    return SelectedInverse(diag, pairs)
