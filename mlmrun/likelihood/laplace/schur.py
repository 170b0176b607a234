"""H = I + A'WA for crossed designs by one Schur complement: the largest level blockwise, the rest dense.

Order the levels with the most units first (LaplaceStructure). With level 0's
unit blocks D (block-diagonal, U units of k coefficients), the coupling C of
its units to every other level's coefficients (U k x q_r) and the remaining
levels' block E (q_r x q_r, small for crossed designs such as persons x items),

    H = [[D, C], [C', E]],   D = L L' (per unit),   K = L^-1 C,   S = E - K'K = R R',
    log|H| = 2 sum log diag L + 2 sum log diag R.

The blocks of H^-1 the gradient and EB need: Z_rr = S^-1, Z_0r = -L^-T K Z_rr
and the unit blocks Z_uu = L_u^-T (I + Y_u K_u') L_u^-1 with Y = K Z_rr. Memory
is O(U k q_r) (K and Y as dense U k x q_r arrays) plus q_r^2: linear in the
units of the large level; nothing of size (units)^2 and no list of
unit-pair combinations (which a blocked elimination of a fully crossed design
would enumerate: units x q_r^2 of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from mlmrun.likelihood.sparse.batched import chol, tinv
from mlmrun.likelihood.sparse.blocks import BlockSystem
from mlmrun.likelihood.sparse.spd import inverse_from_cholesky

REMAINDER_MAX = 4000
"""Largest remainder (coefficients of all but the largest level) this factorisation takes."""
WIDTH_MAX = 30_000_000
"""Largest U k x q_r coupling held densely."""
DENSE_FLOPS = 1e8
SPARSE_GAIN = 1000.0
"""Above DENSE_FLOPS, the dense K'K (U k q_r^2 flops) must cost at most SPARSE_GAIN times the sparse products
a blocked elimination would form (sum over units of their coupled coefficients squared; BLAS flops are that
much cheaper), else likelihood/sparse's blocked elimination is used."""


@dataclass(frozen=True)
class SchurLayout:
    """Where every block of H lands in the [level 0 | remainder] partition (parameter-free)."""

    n_units: list[int]
    k: list[int]
    offsets: list[int]
    """Per remainder level (index >= 1), first remainder column; offsets[0] unused."""
    q_r: int
    pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]
    cache: dict
    """Scatter positions by key (`index`)."""

    @classmethod
    def build(cls, n_units: list[int], k: list[int], pairs: dict) -> SchurLayout:
        offsets, q = [0], 0
        for b in range(1, len(n_units)):
            offsets.append(q)
            q += n_units[b] * k[b]
        return cls(list(n_units), list(k), offsets, q, pairs, {})

    def index(self, key: tuple) -> tuple:
        """Flat scatter positions (built on first use): ('C', b) into C, ('E', a, b) into E, ('diag', b) into E."""
        got = self.cache.get(key)
        if got is None:
            got = self.cache[key] = self._index(key)
        return got

    def _index(self, key: tuple) -> np.ndarray:
        k0, q = self.k[0], self.q_r
        if key[0] == "C":
            ia, ib = self.pairs[(0, key[1])]
            cols = self.cols(key[1], ib)
            return (ia[:, None, None] * k0 + np.arange(k0)[None, :, None]) * q + cols[:, None, :]
        if key[0] == "E":
            ia, ib = self.pairs[(key[1], key[2])]
            rows, cols = self.cols(key[1], ia), self.cols(key[2], ib)
            return rows[:, :, None] * q + cols[:, None, :]
        idx = self.cols(key[1], np.arange(self.n_units[key[1]]))
        return idx[:, :, None] * q + idx[:, None, :]

    def fits(self) -> bool:
        """Small remainder, dense coupling of bounded size, and a dense K'K not far costlier than a sparse one."""
        if len(self.n_units) < 2 or self.q_r > REMAINDER_MAX:
            return False
        width = self.n_units[0] * self.k[0]
        if width * self.q_r > WIDTH_MAX:
            return False
        row_nnz = np.zeros(self.n_units[0])
        for (a, b), (ia, _) in self.pairs.items():
            if a == 0:
                row_nnz += self.k[b] * np.bincount(ia, minlength=self.n_units[0])
        dense = float(width) * self.q_r**2
        return dense <= DENSE_FLOPS or dense <= SPARSE_GAIN * self.k[0] * float(np.sum(row_nnz**2))

    def cols(self, b: int, units: np.ndarray) -> np.ndarray:
        """Remainder columns of the coefficients of `units` of level b, shape (len(units), k_b)."""
        return self.offsets[b] + units[:, None] * self.k[b] + np.arange(self.k[b])[None, :]


def _transpose(pos: np.ndarray, q: int) -> np.ndarray:
    """Flat positions of the transposed blocks (entries (c, r) for each (r, c)), in swapped block order."""
    rows, cols = np.divmod(np.swapaxes(pos, 1, 2), q)
    return (cols * q + rows).ravel()


class SchurFactor:
    """Numeric factor of H from its blocks (raises LinAlgError where H is not positive definite)."""

    def __init__(self, lay: SchurLayout, system: BlockSystem) -> None:
        self.lay = lay
        U, k0, q = lay.n_units[0], lay.k[0], lay.q_r
        D = system.diag[0].copy()
        D[:, np.arange(k0), np.arange(k0)] += 1.0
        L = chol(D)
        self.Linv = tinv(L)
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
        C = np.zeros(U * k0 * q)
        E = np.eye(q)
        Ef = E.ravel()
        for (a, b), blk in system.off.items():
            if a == 0:
                C[lay.index(("C", b))] = blk
            else:
                pos = lay.index(("E", a, b))
                Ef[pos] += blk
                Ef[_transpose(pos, q)] += np.swapaxes(blk, 1, 2).ravel()
        for b in range(1, len(lay.n_units)):
            Ef[lay.index(("diag", b))] += system.diag[b]
        C = C.reshape(U, k0, q)
        self.K = self.Linv @ C
        Kf = self.K.reshape(U * k0, q)
        S = E - Kf.T @ Kf
        self.R = sla.cholesky(S, lower=True, check_finite=False)
        self.logdet = logdet + 2.0 * float(np.sum(np.log(np.diag(self.R))))

    def solve(self, rhs: list[np.ndarray]) -> list[np.ndarray]:
        """x = H^-1 b for right-hand sides per level (units, k, m), as BlockFactor.solve."""
        lay = self.lay
        m = rhs[0].shape[2]
        y0 = self.Linv @ rhs[0]
        Kf = self.K.reshape(-1, lay.q_r)
        br = np.concatenate([r.reshape(-1, m) for r in rhs[1:]]) - Kf.T @ y0.reshape(-1, m)
        xr = sla.cho_solve((self.R, True), br, check_finite=False)
        x0 = np.swapaxes(self.Linv, 1, 2) @ (y0 - (Kf @ xr).reshape(y0.shape))
        out = [x0]
        for b in range(1, len(lay.n_units)):
            o, size = lay.offsets[b], lay.n_units[b] * lay.k[b]
            out.append(xr[o:o + size].reshape(lay.n_units[b], lay.k[b], m))
        return out

    def selected(self) -> tuple[list[np.ndarray], dict[tuple[int, int], np.ndarray]]:
        """Blocks of H^-1: unit blocks per level and the unit-pair blocks at `pairs` (SelectedInverse layout)."""
        lay = self.lay
        Zr = inverse_from_cholesky(self.R, "the Schur complement of H")
        Y = self.K @ Zr
        LiT = np.swapaxes(self.Linv, 1, 2)
        inner = np.einsum("uiq,ujq->uij", Y, self.K)
        inner[:, np.arange(lay.k[0]), np.arange(lay.k[0])] += 1.0
        diag = [LiT @ inner @ self.Linv]
        flat = Zr.ravel()
        for b in range(1, len(lay.n_units)):
            diag.append(flat[lay.index(("diag", b))])
        Z0r = -(LiT @ Y).ravel()
        pairs = {}
        for (a, b) in lay.pairs:
            pairs[(a, b)] = Z0r[lay.index(("C", b))] if a == 0 else flat[lay.index(("E", a, b))]
        return diag, pairs
