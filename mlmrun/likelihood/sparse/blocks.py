"""Block Cholesky factorisation of M = I + A'WA, one block row per random-effect level.

This is the sparse core of the exact Gaussian likelihood (lme4's and
MixedModels.jl's blocked Cholesky factor). Every row of the random-effects
design A belongs to exactly one unit of every level, so the diagonal block of
a level is block-diagonal: one k x k block per unit. Levels are eliminated in
the order given, each with batched dense Cholesky factors of its unit blocks;
eliminating a level subtracts K'K (K = L_a^-1 M_ab) from the blocks of later
levels. When every unit of the eliminated level meets a single unit of each
later level (nesting), the later diagonal blocks stay block-diagonal and the
whole hierarchy costs O(units * k^3). Crossed levels create fill between units
of a later level; once the next level carries such fill (or eliminating it
would create too much), the remaining levels are factorised together: dense
Cholesky when small, sparse LU otherwise.

`BlockStructure` is the symbolic analysis (which unit pairs are non-zero,
where every update lands); it depends only on which units share a row, so it
is built once per model. `factorize` does the numeric work for one parameter
value and returns a `BlockFactor` (log determinant, solves, Schur complements).
The blocks of M^-1 the gradient needs are recovered from that factor by
mlmrun.likelihood.sparse.selected_inverse, using the structure's `links`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mlmrun.likelihood.sparse.batched import bmm, chol, summing, tinv

DENSE_MAX = 5000
"""Largest remainder factorised densely; larger remainders use sparse LU."""
DENSE_PRODUCT_MAX = 4_000_000
"""An eliminated level's K (units * k x remainder size) up to this many entries updates the remainder densely..."""
SPARSE_PRODUCT_GAIN = 1000
"""...unless its dense product K'K costs this many times its sparse one (rows x q^2 vs sum of squared row counts):
a BLAS flop is about that much cheaper than a sparse product's, so only very sparse K (each student of a
crossed design meeting one middle school) is worth the sparse product."""
COMBO_MAX = 20_000_000
"""Most block products one blockwise elimination may create before the rest goes dense instead."""
DIRECT_MIN = 200_000
"""A level eliminated just before the remainder, with at least this many neighbour pairs among its units, skips
the symbolic clique of every unit's neighbours (one index entry per pair, the memory of a crossed design such
as InstEval's students x lecturers): its K'K update is one sparse product and its selected inverse one sparse
times dense product K Z_r (`direct`)."""

Pair = tuple[int, int]


def _locate(existing: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each key of `new` in `existing`, appending unseen keys; returns (positions, extended keys)."""
    idx = np.empty(len(new), dtype=np.int64)
    found = np.zeros(len(new), dtype=bool)
    if len(existing):
        order = np.argsort(existing, kind="stable")
        ordered = existing[order]
        pos = np.minimum(np.searchsorted(ordered, new), len(ordered) - 1)
        found = ordered[pos] == new
        idx[found] = order[pos[found]]
    missing, inverse = np.unique(new[~found], return_inverse=True)
    idx[~found] = len(existing) + inverse
    return idx, np.concatenate([existing, missing])


@dataclass(frozen=True)
class Update:
    """Where eliminating one level sends its products K_ab[left]' K_ac[right] within the block (b, c)."""

    b: int
    c: int
    left: np.ndarray
    right: np.ndarray
    agg: sp.csr_matrix
    """Targets x products: for b == c the units of b (diagonal blocks), else the (b, c) pairs."""


class BlockStructure:
    """Symbolic block elimination over levels given in elimination order.

    `n_units[l]` units of `k[l]` coefficients each; `pairs[(a, b)]` (a < b) the
    unit pairs (ia, ib) that share at least one row. Attributes used by
    `factorize`: `n_blockwise` (levels eliminated with batched unit blocks),
    `pairs` (initial pairs followed by fill), `intra` (fill pairs i1 < i2
    inside a level), `updates[a]`, and the remainder layout.
    """

    def __init__(self, n_units: Sequence[int], k: Sequence[int], pairs: Mapping[Pair, tuple[np.ndarray, np.ndarray]]):
        self.n_units = [int(u) for u in n_units]
        self.k = [int(x) for x in k]
        L = len(self.n_units)
        keys: dict[Pair, np.ndarray] = {}
        self.n_initial: dict[Pair, int] = {}
        for a in range(L):
            for b in range(a + 1, L):
                ia, ib = pairs.get((a, b), (np.zeros(0, np.int64), np.zeros(0, np.int64)))
                keys[(a, b)] = np.asarray(ia, np.int64) * self.n_units[b] + np.asarray(ib, np.int64)
                self.n_initial[(a, b)] = len(ia)
        intra_keys = [np.zeros(0, np.int64) for _ in range(L)]
        raw_updates: list[list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]] = []
        n_blockwise = 0
        self.direct: list[bool] = []
        """Per eliminated level: True when it was eliminated `direct` (no `links`; see DIRECT_MIN)."""
        for a in range(L):
            remaining = sum(self.n_units[j] * self.k[j] for j in range(a, L))
            links = {b: divmod(keys[(a, b)], self.n_units[b]) for b in range(a + 1, L) if len(keys[(a, b)])}
            degree = {b: np.bincount(ia, minlength=self.n_units[a]) for b, (ia, _) in links.items()}
            combos = sum(int(np.dot(degree[b], degree[c])) * self.k[b] * self.k[c]
                         for b in links for c in links if b <= c)
            if len(intra_keys[a]) or (combos > COMBO_MAX and remaining <= DENSE_MAX) or any(self.direct):
                break
            # The next level gets fill inside itself (so it ends the blockwise levels) when a unit of this
            # one meets two of its units: every neighbour of this level is then in the remainder.
            nxt = a + 1
            last = nxt < L and (len(intra_keys[nxt]) > 0 or (nxt in degree and int(degree[nxt].max()) >= 2))
            if last and combos >= DIRECT_MIN:
                raw_updates.append([])
                self.direct.append(True)
                n_blockwise += 1
                continue
            self.direct.append(False)
            step = []
            for b in links:
                for c in links:
                    if c < b:
                        continue
                    left, right = self._join(links[b][0], links[c][0])
                    ib, ic = links[b][1][left], links[c][1][right]
                    if b == c:
                        keep = ib <= ic
                        left, right, ib, ic = left[keep], right[keep], ib[keep], ic[keep]
                        target = ib.copy()
                        off = ib < ic
                        pos, intra_keys[b] = _locate(intra_keys[b], ib[off] * self.n_units[b] + ic[off])
                        target[off] = self.n_units[b] + pos
                    else:
                        target, keys[(b, c)] = _locate(keys[(b, c)], ib * self.n_units[c] + ic)
                    step.append((b, c, left, right, target))
            raw_updates.append(step)
            n_blockwise += 1
        self.n_blockwise = n_blockwise
        self.links = raw_updates
        """Per eliminated level: (b, c, left, right, target) for every pair of its units' neighbours (selected inverse)."""
        self.pairs = {p: divmod(v, self.n_units[p[1]]) for p, v in keys.items()}
        self.intra = [divmod(v, self.n_units[b]) for b, v in enumerate(intra_keys)]
        self._remainder_layout()
        # Updates landing inside the remainder are done numerically as one sparse product K'K per
        # eliminated level (scipy, in C) instead of block by block: crossed designs make many of them.
        self.updates: list[list[Update]] = []
        for step in raw_updates:
            ups = []
            for b, c, left, right, target in step:
                if b >= n_blockwise and c >= n_blockwise:
                    continue
                n_t = self.n_units[b] if b == c else len(self.pairs[(b, c)][0])
                ups.append(Update(b, c, left, right, summing(target, n_t, -1.0)))
            self.updates.append(ups)
        self.to_b = {p: summing(ib, self.n_units[p[1]]) for p, (ia, ib) in self.pairs.items() if p[0] < n_blockwise}
        self.to_a = {p: summing(ia, self.n_units[p[0]]) for p, (ia, ib) in self.pairs.items() if p[0] < n_blockwise}
        self.into_remainder: list[tuple[list[int], np.ndarray, np.ndarray]] = []
        for a in range(n_blockwise):
            targets = [b for b in self.remainder if len(self.pairs[(a, b)][0])]
            rows, cols = [], []
            for b in targets:
                ia, ib = self.pairs[(a, b)]
                ka, kb = self.k[a], self.k[b]
                r = ia[:, None, None] * ka + np.arange(ka)[None, :, None]
                c = self.offsets[b] + ib[:, None, None] * kb + np.arange(kb)[None, None, :]
                r, c = np.broadcast_arrays(r, c)
                rows.append(r.ravel())
                cols.append(c.ravel())
            self.into_remainder.append((targets, np.concatenate(rows) if rows else np.zeros(0, np.int64),
                                        np.concatenate(cols) if cols else np.zeros(0, np.int64)))
        self.dense_product = []
        for a, (_, rows, _) in enumerate(self.into_remainder):
            sparse_work = float(np.sum(np.bincount(rows, minlength=self.n_units[a] * self.k[a]).astype(float) ** 2))
            self.dense_product.append(self.n_units[a] * self.k[a] * self.q_remainder ** 2
                                      <= SPARSE_PRODUCT_GAIN * sparse_work)

    @staticmethod
    def _join(left_keys: np.ndarray, right_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All (i, j) with left_keys[i] == right_keys[j] (an inner join on the eliminated unit)."""
        order = np.argsort(right_keys, kind="stable")
        lo = np.searchsorted(right_keys[order], left_keys, "left")
        counts = np.searchsorted(right_keys[order], left_keys, "right") - lo
        i = np.repeat(np.arange(len(left_keys), dtype=np.int64), counts)
        within = np.arange(len(i)) - np.repeat(np.cumsum(counts) - counts, counts)
        return i, order[np.repeat(lo, counts) + within].astype(np.int64)

    def _remainder_layout(self) -> None:
        """Flat positions of every remainder block in the q_r x q_r matrix (scatter indices)."""
        rem = list(range(self.n_blockwise, len(self.n_units)))
        self.remainder = rem
        offsets, q = {}, 0
        for b in rem:
            offsets[b] = q
            q += self.n_units[b] * self.k[b]
        self.q_remainder = q
        self.offsets = offsets

        def positions(b: int, c: int, ub: np.ndarray, uc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            kb, kc = self.k[b], self.k[c]
            rows = offsets[b] + ub[:, None, None] * kb + np.arange(kb)[None, :, None]
            cols = offsets[c] + uc[:, None, None] * kc + np.arange(kc)[None, None, :]
            rows, cols = np.broadcast_arrays(rows, cols)
            return rows.ravel(), cols.ravel()

        self.scatter: list[tuple[str, Pair, np.ndarray, np.ndarray]] = []
        for b in rem:
            units = np.arange(self.n_units[b])
            self.scatter.append(("diag", (b, b), *positions(b, b, units, units)))
            for c in rem:
                n0 = self.n_initial[(b, c)] if c > b else 0
                if n0:
                    ib, ic = self.pairs[(b, c)]
                    self.scatter.append(("pair", (b, c), *positions(b, c, ib[:n0], ic[:n0])))


@dataclass
class BlockSystem:
    """Numeric blocks of A'WA (diagonal unit blocks, off-diagonal pairs in structure order), A'WF and F'WF."""

    diag: list[np.ndarray]
    """Per level, shape (n_units, k, k)."""
    off: dict[Pair, np.ndarray]
    """(a, b) -> (n_initial_pairs, k_a, k_b) at the structure's initial pairs."""
    rhs: list[np.ndarray]
    """Per level, shape (n_units, k, c): A'WF grouped by unit."""
    ff: np.ndarray
    """F'WF, shape (c, c)."""


class BlockFactor:
    """Numeric block Cholesky factor of M = I + A'WA (from `factorize`)."""

    def __init__(self, structure: BlockStructure, diag: Sequence[np.ndarray], off: Mapping[Pair, np.ndarray]):
        st = self.structure = structure
        D = [d.copy() for d in diag]
        for d in D:
            idx = np.arange(d.shape[1])
            d[:, idx, idx] += 1.0
        offv: dict[Pair, np.ndarray] = {}
        for p, (ia, _) in st.pairs.items():
            a, b = p
            n0 = st.n_initial[p]
            if a >= st.n_blockwise:
                offv[p] = off[p] if n0 else np.zeros((0, st.k[a], st.k[b]))
                continue
            full = np.zeros((len(ia), st.k[a], st.k[b]))
            if n0:
                full[:n0] = off[p]
            offv[p] = full
        logdet = 0.0
        self.Linv: list[np.ndarray] = []
        self.K: list[dict[int, np.ndarray]] = []
        self.remainder_updates: list[sp.csr_matrix] = []
        self.remainder_dense: np.ndarray | float = 0.0
        self.K_remainder: dict[int, np.ndarray] = {}
        """Direct levels: K's values at the structure's `into_remainder` (rows, cols) (selected_inverse's K Z_r)."""
        for a in range(st.n_blockwise):
            La = chol(D[a])
            logdet += 2.0 * float(np.sum(np.log(np.diagonal(La, axis1=1, axis2=2))))
            Li = tinv(La)
            Ka = {}
            for b in range(a + 1, len(D)):
                ia = st.pairs[(a, b)][0]
                if len(ia):
                    Ka[b] = bmm(Li[ia], offv[(a, b)])
            targets, rows, cols = st.into_remainder[a]
            if targets:
                data = np.concatenate([Ka[b].ravel() for b in targets])
                shape = (st.n_units[a] * st.k[a], st.q_remainder)
                if st.direct[a]:
                    self.K_remainder[a] = data
                if shape[0] * shape[1] <= DENSE_PRODUCT_MAX and shape[1] <= DENSE_MAX and st.dense_product[a]:
                    Kd = np.zeros(shape)
                    Kd[rows, cols] = data
                    self.remainder_dense = self.remainder_dense + Kd.T @ Kd
                else:
                    Kr = sp.csr_matrix((data, (rows, cols)), shape=shape)
                    self.remainder_updates.append((Kr.T @ Kr).tocsr())
            for up in st.updates[a]:
                prod = bmm(np.swapaxes(Ka[up.b][up.left], 1, 2), Ka[up.c][up.right])
                delta = up.agg @ prod.reshape(len(prod), -1)
                kb, kc = st.k[up.b], st.k[up.c]
                if up.b == up.c:
                    D[up.b] += delta.reshape(-1, kb, kb)
                else:
                    offv[(up.b, up.c)] += delta.reshape(-1, kb, kc)
            self.Linv.append(Li)
            self.K.append(Ka)
        self.dense: np.ndarray | None = None
        self.lu = None
        if st.remainder:
            logdet += self._factor_remainder(D, offv)
        self.logdet = logdet

    def _factor_dense(self, D: list[np.ndarray], offv: dict[Pair, np.ndarray]) -> float:
        """Assemble the remainder in one dense array and factor it in place (LAPACK potrf).

        The sparse K'K updates are expanded straight into that array and
        dropped, so the remainder exists once (not as coo triplets, a dense
        copy and a separate factor).
        """
        st = self.structure
        q = st.q_remainder
        updates, self.remainder_updates = self.remainder_updates, []
        if updates:
            dense = (updates[0] if len(updates) == 1 else sum(updates[1:], updates[0])).toarray()
            np.negative(dense, out=dense)
        else:
            dense = np.zeros((q, q))
        del updates
        for kind, (b, c), r, cc in st.scatter:
            v = (D[b] if kind == "diag" else offv[(b, c)][:st.n_initial[(b, c)]]).ravel()
            dense[r, cc] += v
            if kind != "diag":
                dense[cc, r] += v
        if isinstance(self.remainder_dense, np.ndarray):
            dense -= self.remainder_dense
            self.remainder_dense = 0.0
        upper, info = sla.lapack.dpotrf(dense.T, lower=0, overwrite_a=1, clean=1)
        if info != 0:
            raise np.linalg.LinAlgError("the remainder of M is not positive definite")
        self.dense = upper.T
        return 2.0 * float(np.sum(np.log(np.diag(self.dense))))

    def _factor_remainder(self, D: list[np.ndarray], offv: dict[Pair, np.ndarray]) -> float:
        """Assemble the remainder (unit blocks, data pairs, sparse K'K updates) and factor it."""
        st = self.structure
        q = st.q_remainder
        if q <= DENSE_MAX:
            return self._factor_dense(D, offv)
        rows, cols, vals = [], [], []
        for kind, (b, c), r, cc in st.scatter:
            v = D[b] if kind == "diag" else offv[(b, c)][:st.n_initial[(b, c)]]
            rows.append(r)
            cols.append(cc)
            vals.append(v.ravel())
            if kind != "diag":
                rows.append(cc)
                cols.append(r)
                vals.append(v.ravel())
        for upd in (u.tocoo() for u in self.remainder_updates):
            rows.append(upd.row)
            cols.append(upd.col)
            vals.append(-upd.data)
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        mat = sp.csc_matrix((v, (r, c)), shape=(q, q))
        self.lu = spla.splu(mat, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                            options={"SymmetricMode": True})
        return float(np.sum(np.log(np.abs(self.lu.U.diagonal()))))

    def _forward_blockwise(self, rhs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """y_a = L_a^-1 b_a for blockwise levels, pushing -K'y into later levels' right-hand sides."""
        st = self.structure
        b = [np.array(r, dtype=float, copy=True) for r in rhs]
        ys = []
        for a in range(st.n_blockwise):
            ya = self.Linv[a] @ b[a]
            for lvl, K in self.K[a].items():
                ia, _ = st.pairs[(a, lvl)]
                contrib = np.swapaxes(K, 1, 2) @ ya[ia]
                b[lvl] -= (st.to_b[(a, lvl)] @ contrib.reshape(len(ia), -1)).reshape(b[lvl].shape)
            ys.append(ya)
        return ys, b

    def _remainder_solve(self, b: list[np.ndarray]) -> np.ndarray:
        st = self.structure
        stacked = np.concatenate([b[lvl].reshape(st.n_units[lvl] * st.k[lvl], -1) for lvl in st.remainder])
        if self.dense is not None:  # the transposed view is Fortran-ordered: LAPACK takes it without a copy
            return sla.cho_solve((self.dense.T, False), stacked, check_finite=False)
        return self.lu.solve(stacked)

    def solve(self, rhs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """x = M^-1 b for right-hand sides given per level, shape (n_units, k, m)."""
        st = self.structure
        ys, b = self._forward_blockwise(rhs)
        x: list[np.ndarray] = [np.zeros_like(r) for r in b]
        if st.remainder:
            xr = self._remainder_solve(b)
            for lvl in st.remainder:
                o, size = st.offsets[lvl], st.n_units[lvl] * st.k[lvl]
                x[lvl] = xr[o:o + size].reshape(b[lvl].shape)
        for a in range(st.n_blockwise - 1, -1, -1):
            t = ys[a].copy()
            for lvl, K in self.K[a].items():
                ia, ib = st.pairs[(a, lvl)]
                contrib = K @ x[lvl][ib]
                t -= (st.to_a[(a, lvl)] @ contrib.reshape(len(ia), -1)).reshape(t.shape)
            x[a] = np.swapaxes(self.Linv[a], 1, 2) @ t
        return x

    def quad(self, rhs: Sequence[np.ndarray]) -> np.ndarray:
        """R' M^-1 R for R given per level (n_units, k, c); shape (c, c)."""
        st = self.structure
        ys, b = self._forward_blockwise(rhs)
        c = rhs[0].shape[2] if rhs else 0
        out = np.zeros((c, c))
        for ya in ys:
            flat = ya.reshape(-1, c)
            out += flat.T @ flat
        if st.remainder:
            stacked = np.concatenate([b[lvl].reshape(-1, c) for lvl in st.remainder])
            out += stacked.T @ self._remainder_solve(b)
        return 0.5 * (out + out.T)


def factorize(structure: BlockStructure, system: BlockSystem) -> BlockFactor:
    """Factor M = I + A'WA from its blocks (raises numpy/scipy LinAlgError if not positive definite)."""
    return BlockFactor(structure, system.diag, system.off)


def schur(factor: BlockFactor, system: BlockSystem) -> np.ndarray:
    """F'V^-1F in W-scaled form: F'WF - F'WA M^-1 A'WF (the profiled cross-product matrix)."""
    if not system.rhs:
        return system.ff.copy()
    return system.ff - factor.quad(system.rhs)
