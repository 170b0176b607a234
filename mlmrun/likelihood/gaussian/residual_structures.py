"""Residual covariance structures in the exact Gaussian likelihood: per-cluster whitening and its adjoint.

With residual covariance R = blockdiag(R_j) over the clusters j (units of the
lowest level above the rows) and R_j = L_j L_j' (Cholesky), the model
y = X beta + A u + e, e ~ N(0, R), is the independent-residual model of
likelihood/gaussian/deviance.py for the whitened rows L_j^-1 [X, y, xi] of every
cluster, with unit residual weights, plus log|R| = 2 sum_j log|L_j| (nlme's
and Stata's approach). Every row of a cluster belongs to the same unit of
every level above it (the clusters are the lowest level), so whitening keeps
the block structure of A and nothing n x n is ever formed.

Clusters with the same time values (and `by` group) share R_j: they form a
pattern, factorised once per evaluation; patterns that are leading parts of
the longest one (one series observed for different lengths) share its factor
(`ResidualPlan._share_prefixes`). Clusters are whitened in one batch,
smaller ones padded with independent all-zero rows (which add nothing), or in
batches of equal size where padding would more than double the rows. R_j = D C D with D the rows' residual SDs and C the structure's
correlation matrix (`correlation`): AR(p) autocorrelations from the
Yule-Walker equations, MA(q) from the theta weights, Toeplitz and banded
correlations given directly, exponential rho^|t_a - t_b|, exchangeable and
unstructured.

The gradient: with G the deviance's derivative with respect to the whitened
rows X* (gaussian_adjoint's row-wise adjoint), dD = sum_j tr(G_j' dX*_j) +
d log|R|, dX*_j = -L_j^-1 dL_j X*_j, so dD/dL_j = -L_j^-T G_j X*_j' +
2 diag(1/L_j,ii); the Cholesky adjoint (as in compile/matrices.block_L_adjoint)
turns it into dD/dR_j, summed per pattern, and with R_p = D C D it is carried
analytically onto the SDs and correlations, and from the autocorrelations
(dD/dR_p summed by lag) onto the AR, MA or Toeplitz coefficients through the
analytic Jacobian of the autocorrelation map (`ar_autocorrelation`,
`ma_autocorrelation`). Everything parameter-free (lags, group masks, the
AR system's index) is laid out once per model (`BatchIndex`), and the
correlations found for whitening are kept for the gradient at the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.linalg import lapack

from mlmrun.compile.residuals import ResidualStructure
from mlmrun.likelihood.sparse.spd import lower_cholesky

MAX_LOOPED_PATTERNS = 256
"""Up to this many patterns per batch, each pattern is one matrix product over its clusters; beyond, batched."""


@lru_cache(maxsize=64)
def _constant(kind: str, s: int) -> np.ndarray:
    """Read-only s x s constants looked up at every evaluation: 'eye', 'off' (off-diagonal mask), 'lower' (np.tri)."""
    out = {"eye": lambda: np.eye(s), "off": lambda: ~np.eye(s, dtype=bool), "lower": lambda: np.tri(s)}[kind]()
    out.flags.writeable = False
    return out


def _apply(M: np.ndarray, arrays: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """out[rows[c]] = M @ arrays[rows[c]] for every cluster c (rows (c, s)), as one matrix product."""
    s = rows.shape[1]
    X = arrays[rows.T]  # (s, c, m): contiguous, so the reshape below costs nothing
    out[rows.T] = (M @ X.reshape(s, -1)).reshape(X.shape)


def _gram(G: np.ndarray, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """sum_c G[rows[c]] X[rows[c]]' (s x s), as one matrix product."""
    s = rows.shape[1]
    return G[rows.T].reshape(s, -1) @ X[rows.T].reshape(s, -1).T


def ar_system_index(p: int, n_lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays of the AR(p) autocorrelation system over rho_0..rho_{n_lags - 1} (parameter-free).

    `flat`: for rows k = 1..n_lags-1 and coefficients i = 1..p, the flat position (k, |k - i|) of -phi_i in the
    system matrix; `lag`: |k - i| for every row k = 0..n_lags-1 (row 0 unused), the lags whose autocorrelations
    form the right-hand sides of the derivative; `coef`: i - 1 for every entry of `flat`.
    """
    k = np.arange(n_lags)[:, None]
    lag = np.abs(k - np.arange(1, p + 1)[None, :])
    return (k[1:] * n_lags + lag[1:]).ravel(), lag, np.tile(np.arange(p), n_lags - 1)


def ar_autocorrelation(phi: np.ndarray, max_lag: int, index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                       jacobian: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """rho_0..rho_max_lag of a stationary AR(p) with coefficients phi; with `jacobian` also d rho / d phi.

    The autocorrelations solve one linear system M(phi) rho = e_0: rho_0 = 1 and
    rho_k - sum_i phi_i rho_|k-i| = 0 for k >= 1 (the Yule-Walker equations for
    k <= p, the AR recursion beyond). M is linear in phi with dM/dphi_i = -1 at
    (k, |k-i|), so d rho / d phi_i = M^-1 r_i with r_i[k] = rho_|k-i| (k >= 1).
    `index`: ar_system_index(p, max(max_lag, p) + 1), precomputed by the caller.
    M is factorised once (LAPACK's LU, as numpy's solve) for rho and the Jacobian.
    Raises LinAlgError where phi is not stationary (the system is singular or
    the autocorrelations leave [-1, 1]).
    """
    phi = np.asarray(phi, float)
    p = len(phi)
    n = max(max_lag, p) + 1
    flat, lag, coef = ar_system_index(p, n) if index is None else index
    M = _constant("eye", n).ravel() - np.bincount(flat, weights=phi[coef], minlength=n * n)
    lu, piv, info = lapack.dgetrf(M.reshape(n, n))
    if info != 0:
        raise np.linalg.LinAlgError("AR coefficients outside the stationary region")
    e0 = np.zeros(n)
    e0[0] = 1.0
    rho = lapack.dgetrs(lu, piv, e0)[0]
    rho[0] = 1.0
    gamma0 = 1.0 - float(phi @ rho[1:p + 1])
    if not gamma0 > 0 or float(np.max(np.abs(rho))) > 1.0 + 1e-12:
        raise np.linalg.LinAlgError("AR coefficients outside the stationary region")
    if not jacobian:
        return rho[:max_lag + 1]
    rhs = rho[lag]
    rhs[0] = 0.0
    J = lapack.dgetrs(lu, piv, rhs)[0]
    J[0] = 0.0
    return rho[:max_lag + 1], J[:max_lag + 1]


def ma_autocorrelation(theta: np.ndarray, max_lag: int, jacobian: bool = False
                       ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """rho_0..rho_max_lag of an MA(q), e_t = a_t + theta_1 a_{t-1} + ... + theta_q a_{t-q}; with `jacobian`
    also d rho / d theta.

    gamma_k = sum_j w_j w_{j+k} (w = [1, theta]), so d gamma_k / d w_i = w_{i+k} + w_{i-k} (where defined)
    and rho_k = gamma_k / gamma_0.
    """
    w = np.concatenate([[1.0], np.asarray(theta, float)])
    q = len(w) - 1
    gamma = np.array([float(np.dot(w[:len(w) - k], w[k:])) for k in range(q + 1)])
    rho = np.zeros(max_lag + 1)
    m = min(q, max_lag) + 1
    rho[:m] = gamma[:m] / gamma[0]
    if not jacobian:
        return rho
    dgamma = np.zeros((q + 1, q))
    for k in range(q + 1):
        for i in range(1, q + 1):
            dgamma[k, i - 1] = (w[i + k] if i + k <= q else 0.0) + (w[i - k] if i - k >= 0 else 0.0)
    J = np.zeros((max_lag + 1, q))
    J[:m] = (dgamma[:m] - rho[:m, None] * dgamma[0][None, :]) / gamma[0]
    return rho, J


def _lower_inverse(L: np.ndarray) -> np.ndarray:
    """Inverses of a stack of lower-triangular Cholesky factors (P, s, s).

    LAPACK's triangular inverse per pattern where the matrices are large and few (a few microseconds
    each, against a general LU inverse of the whole stack that costs several times more); the batched
    general inverse where they are small or many (the loop's fixed cost would dominate).
    """
    P, s = L.shape[:2]
    if s < 10 or P > 64:
        return np.linalg.inv(L)
    out = np.empty_like(L)
    for p in range(P):
        out[p], info = lapack.dtrtri(L[p], lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("residual covariance factor is singular")
    return out


def _cholesky(R: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack of matrices (P, s, s): LAPACK's potrf directly for a single one (numpy's
    stacked routine costs several times more there), else numpy's. Raises LinAlgError where one is not PD."""
    if R.shape[0] != 1:
        return np.linalg.cholesky(R)
    return lower_cholesky(R[0], "residual covariance")[None]


def _unique_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(key, axis=0, return_index=True, return_inverse=True) for an integer matrix, by one lexsort.

    The same sorted rows, first occurrences and inverse, without the structured-dtype view that makes
    np.unique on rows cost a fixed half millisecond.
    """
    order = np.lexsort(key.T[::-1])
    ordered = key[order]
    new = np.concatenate([[True], np.any(ordered[1:] != ordered[:-1], axis=1)])
    inverse = np.empty(len(key), dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], order[new], inverse


@dataclass(frozen=True)
class SizeBatch:
    """The clusters of one size s: their rows and the pattern (shared R) of each."""

    rows: np.ndarray
    """(n_clusters, s): row numbers, in data order within each cluster."""
    pattern: np.ndarray
    """(n_clusters,): pattern of each cluster (index into the batch's patterns)."""
    counts: np.ndarray
    """(n_patterns,): clusters per pattern."""
    time: np.ndarray
    """(n_patterns, s): time values of the pattern's rows."""
    time_index: np.ndarray
    """(n_patterns, s): positions of those times among the structure's time values."""
    group: np.ndarray
    """(n_patterns, s): `by` group of the pattern's rows (-1 for padding)."""
    valid: np.ndarray
    """(n_patterns, s): False where a smaller cluster is padded to the batch size (row number n, all zeros)."""
    members: list[np.ndarray] | None
    """Clusters (positions in `rows`) of each pattern when there are few patterns (one matrix product each)."""


@dataclass(frozen=True)
class BatchIndex:
    """Parameter-free index arrays of one batch (built once): what `_batch_parts` and the gradient look up."""

    both: np.ndarray | None
    """(P, s, s): both rows valid (None when no pattern is padded)."""
    sel: list[np.ndarray]
    """Per group: patterns (P,) whose first row is in the group (all patterns for `independent`)."""
    rows: list[np.ndarray]
    """Per group: (P, s) rows in the group."""
    lag: list[np.ndarray | None]
    """Per group (ar, ma, toeplitz): (n_sel, s, s) lag of every pair of the selected patterns, capped at max_lag."""
    dist: list[np.ndarray | None]
    """Per group (exponential): (n_sel, s, s) |t_a - t_b| of the selected patterns."""


class ResidualPlan:
    """Clusters grouped by size and pattern (built once per model): R_p per evaluation, whitening, adjoint."""

    def __init__(self, structure: ResidualStructure, n: int):
        self.structure = structure
        self.n = n
        st = structure
        order = np.lexsort((np.arange(n), st.cluster))
        sizes = np.bincount(st.cluster)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        present = sizes[sizes > 0]
        # One batch, smaller clusters padded with independent zero rows, unless that more than doubles the rows.
        if int(present.max()) * len(present) <= 2 * n:
            spans = [(np.flatnonzero(sizes > 0), int(present.max()))]
        else:
            spans = [(np.flatnonzero(sizes == s), int(s)) for s in np.unique(present)]
        time = np.append(st.time, 0.0)
        time_index = np.append(st.time_index, -1)
        group = np.append(st.group, -1)
        self.batches: list[SizeBatch] = []
        for clusters, s in spans:
            pos = np.arange(s)[None, :]
            rows = np.where(pos < sizes[clusters][:, None], order[np.minimum(starts[clusters][:, None] + pos, n - 1)], n)
            key = np.concatenate([time_index[rows], group[rows]], axis=1)
            uniq, first, inverse = _unique_rows(key)
            rep = rows[first]
            members = None
            if len(uniq) <= MAX_LOOPED_PATTERNS:
                by_pattern = np.argsort(inverse, kind="stable")
                members = np.split(by_pattern, np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1])
            self.batches.append(SizeBatch(rows, inverse, np.bincount(inverse, minlength=len(uniq)),
                                          time[rep], time_index[rep], group[rep], rep < n, members))
        lags = [np.where(b.valid[:, :, None] & b.valid[:, None, :],
                         np.abs(b.time[:, :, None] - b.time[:, None, :]), 0.0) for b in self.batches]
        self.max_lag = int(max((float(x.max()) for x in lags), default=0.0))
        self.rows = structure.rows
        self._segments()
        self.shared: list[SizeBatch] = []
        """Per batch, the patterns whose R is factorised: the batch itself, or (`_share_prefixes`) one pattern."""
        self.row_weight: list[np.ndarray] = []
        """Per shared batch (P', s or 1): clusters whose row a has the pattern's factor (log|R| and its adjoint)."""
        for i, b in enumerate(self.batches):
            sb, weight = self._share_prefixes(i, b)
            self.shared.append(sb)
            self.row_weight.append(weight)
        self.index = [self._batch_index(b) for b in self.shared]
        self._ar_index = None
        if st.structure == "ar" and st.groups:
            p = len(st.groups[0].par_rows)
            self._ar_index = ar_system_index(p, max(self.max_lag, p) + 1)
        self._last: tuple[bytes, list, list[tuple[np.ndarray, np.ndarray]]] | None = None
        """The correlations (with their Jacobians) and (D, C) of every batch at the last values asked for
        (whitening, then its gradient)."""

    def _batch_index(self, b: SizeBatch) -> BatchIndex:
        """The parameter-free lookups of one batch (`BatchIndex`)."""
        st = self.structure
        P, s = b.time.shape
        diff = b.time[:, :, None] - b.time[:, None, :]
        both = None if b.valid.all() else b.valid[:, :, None] & b.valid[:, None, :]
        sel, rows, lag, dist = [], [], [], []
        for g in range(len(st.groups)):
            sg = b.group[:, 0] == g if st.structure != "independent" else np.ones(P, dtype=bool)
            sel.append(sg)
            rows.append(b.group == g)
            lag.append(np.minimum(np.rint(np.abs(diff[sg])).astype(int), self.max_lag)
                       if st.structure in ("ar", "ma", "toeplitz") else None)
            dist.append(np.abs(diff[sg]) if st.structure == "exponential" else None)
        return BatchIndex(both, sel, rows, lag, dist)

    def _segments(self) -> None:
        """With few patterns: a row order in which every pattern's rows form one block (time position, cluster).

        `perm[k]` is the data row at position k; `segments` lists (batch, pattern, valid positions, start, stop,
        index of the valid block of an s x s matrix: slices where the valid positions come first, as padding is
        appended, so the block is a view; None when every position is valid).
        Whitening a block is then one matrix product on a contiguous slice, with no gathering of rows.
        """
        self.perm: np.ndarray | None = None
        self.segments: list[tuple[int, int, np.ndarray, int, int, tuple | None]] = []
        if any(b.members is None for b in self.batches):
            return
        pieces, start = [], 0
        for i, b in enumerate(self.batches):
            for p, mem in enumerate(b.members):
                v = np.flatnonzero(b.valid[p])
                piece = b.rows[mem][:, v].T.ravel()
                pieces.append(piece)
                k = len(v)
                block = None if k == b.valid.shape[1] else (
                    (slice(0, k), slice(0, k)) if np.array_equal(v, np.arange(k)) else np.ix_(v, v))
                self.segments.append((i, p, v, start, start + len(piece), block))
                start += len(piece)
        self.perm = np.concatenate(pieces)

    def _share_prefixes(self, i: int, b: SizeBatch) -> tuple[SizeBatch, np.ndarray]:
        """Batch i as factorised: one pattern where every pattern is a leading part of the longest one, else itself.

        When each pattern's valid rows come first and carry the same times and groups as the first rows of the
        longest pattern (clusters of one series observed for different lengths, as in nlme's Ovary), every R_p is
        a leading block of that pattern's R, so L_p and L_p^-1 are leading blocks of its factor and inverse, and
        dD/dR_p, embedded, add up to dD/dR of the longest one: one factorisation and one Cholesky adjoint serve
        them all. Only in the `perm` layout, whose segments then point at pattern 0 (`_segments`).
        Returns the batch and the row weights (clusters per row of each pattern factorised).
        """
        P, s = b.valid.shape
        k = b.valid.sum(axis=1)
        m = int(np.argmax(k))
        prefix = b.valid == (np.arange(s)[None, :] < k[:, None])
        first = np.arange(s)[None, :] < k[:, None]
        same = all(np.array_equal(np.where(first, a, 0), np.where(first, a[m][None, :], 0))
                   for a in (b.time, b.time_index, b.group))
        if self.perm is None or P < 2 or not prefix.all() or not same:
            return b, b.counts[:, None]
        weight = (b.counts[:, None] * first).sum(axis=0)[None, :]
        one = SizeBatch(b.rows, np.zeros_like(b.pattern), np.array([b.counts.sum()]), b.time[m:m + 1],
                        b.time_index[m:m + 1], b.group[m:m + 1], b.valid[m:m + 1], [np.arange(len(b.rows))])
        self.segments = [(j, 0 if j == i else p, v, start, stop, block)
                         for j, p, v, start, stop, block in self.segments]
        return one, weight

    def covariances(self, values: np.ndarray) -> list[np.ndarray]:
        """R_p for every pattern of every batch, shape (n_patterns, s, s) per batch."""
        return [sd[:, :, None] * C * sd[:, None, :] for sd, C in self._parts(values)[1]]

    def _parts(self, values: np.ndarray) -> tuple[list[np.ndarray | None], list[tuple[np.ndarray, np.ndarray]]]:
        """Autocorrelations per group and (D, C) per batch at `values`, kept for the next call at the same values."""
        key = values[self.rows].tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1], self._last[2]
        st = self.structure
        acfs = [self._group_correlation(g, values) for g in range(len(st.groups))]
        parts = [self._batch_parts(st, b, ix, values, [None if a is None else a[0] for a in acfs])
                 for b, ix in zip(self.shared, self.index, strict=True)]
        self._last = (key, acfs, parts)
        return acfs, parts

    def _group_correlation(self, g: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Autocorrelations rho_0..rho_max_lag of group g (ar, ma, toeplitz), else None; for AR with their
        Jacobian, which costs one more solve with the same matrix here and a whole second one in the gradient."""
        st = self.structure
        par = values[st.groups[g].par_rows]
        if st.structure == "ar":
            return ar_autocorrelation(par, self.max_lag, self._ar_index, jacobian=True)
        if st.structure == "ma":
            return ma_autocorrelation(par, self.max_lag), None
        if st.structure == "toeplitz":
            rho = np.zeros(self.max_lag + 1)
            rho[0] = 1.0
            m = min(len(par), self.max_lag)
            rho[1:m + 1] = par[:m]
            return rho, None
        return None

    def _acf_jacobian(self, g: int, values: np.ndarray) -> np.ndarray:
        """d rho_0..rho_max_lag / d (group g's correlation parameters), (max_lag + 1, n_par): analytic."""
        st = self.structure
        par = values[st.groups[g].par_rows]
        if st.structure == "ar":
            acf = self._parts(values)[0][g]
            assert acf is not None and acf[1] is not None
            return acf[1]
        if st.structure == "ma":
            return ma_autocorrelation(par, self.max_lag, jacobian=True)[1]
        J = np.zeros((self.max_lag + 1, len(par)))
        m = min(len(par), self.max_lag)
        J[np.arange(1, m + 1), np.arange(m)] = 1.0
        return J

    def _batch_parts(self, st: ResidualStructure, b: SizeBatch, ix: BatchIndex, values: np.ndarray,
                     acfs: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """(D, C) with R_p = D C D for the patterns of one batch: row SDs (P, s) and correlations (P, s, s)."""
        P, s = b.time.shape
        eye = _constant("eye", s)
        C = np.empty((P, s, s))
        C[...] = eye
        kind = st.structure
        sd = np.zeros((P, s))
        for g, grp in enumerate(st.groups):
            sel = ix.sel[g]
            if kind in ("unstructured", "banded"):
                sdv = values[grp.sd_rows]
                sd[sel] = sdv[b.time_index[sel]]
                T = len(sdv)
                corr = np.eye(T)
                if len(grp.pairs):
                    corr[grp.pairs[:, 0], grp.pairs[:, 1]] = values[grp.par_rows]
                    corr[grp.pairs[:, 1], grp.pairs[:, 0]] = values[grp.par_rows]
                ti = b.time_index[sel]
                C[sel] = corr[ti[:, :, None], ti[:, None, :]]
                continue
            if kind == "independent":
                sd[ix.rows[g]] = values[grp.sd_rows[0]]
                continue
            sd[sel] = values[grp.sd_rows[0]]
            if not sel.any():
                continue
            if kind == "exchangeable":
                C[sel] = np.where(eye > 0, 1.0, values[grp.par_rows[0]])
            elif kind == "exponential":
                rho = values[grp.par_rows[0]]
                with np.errstate(divide="ignore", invalid="ignore"):
                    C[sel] = np.where(eye > 0, 1.0, np.power(rho, ix.dist[g]))
            else:
                C[sel] = acfs[g][ix.lag[g]]
        if ix.both is not None:
            C = np.where(ix.both, C, eye[None])
            sd = np.where(b.valid, sd, 1.0)
        return sd, C

    def whiten(self, values: np.ndarray, arrays: np.ndarray) -> tuple[np.ndarray, float, list[tuple[np.ndarray, np.ndarray]]]:
        """L_j^-1 applied to the rows of every cluster of `arrays` (n, m); log|R|; per batch (L, L^-1) by pattern.

        With `perm` (few patterns), `arrays` and the result are in that row order. Raises LinAlgError where
        some R_p is not positive definite.
        """
        logdet, factors = self._factors(values)
        if self.perm is not None:
            out = np.empty_like(arrays)
            m = arrays.shape[1]
            for i, p, v, start, stop, block in self.segments:
                Linv = factors[i][1][p] if block is None else factors[i][1][p][block]
                out[start:stop] = (Linv @ arrays[start:stop].reshape(len(v), -1)).reshape(-1, m)
            return out, logdet, factors
        ext = None
        out = np.empty((len(arrays) + 1, arrays.shape[1]))
        for b, (_, Linv) in zip(self.batches, factors, strict=True):
            if b.members is not None:  # padding rows (identity blocks of R) are left out of each pattern
                for p, mem in enumerate(b.members):
                    v = np.flatnonzero(b.valid[p])
                    _apply(Linv[p][np.ix_(v, v)], arrays, b.rows[mem][:, v], out)
            else:
                if ext is None:
                    ext = np.vstack([arrays, np.zeros((1, arrays.shape[1]))])
                out[b.rows] = Linv[b.pattern] @ ext[b.rows]
        return out[:self.n], logdet, factors

    def _factors(self, values: np.ndarray) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
        """log|R| and (L, L^-1) per batch (patterns stacked)."""
        logdet = 0.0
        factors = []
        for b, weight, R in zip(self.shared, self.row_weight, self.covariances(values), strict=True):
            if not np.isfinite(np.sum(R)):  # a NaN or infinity anywhere (or an overflowing R) spoils the sum
                raise np.linalg.LinAlgError("residual covariance is not finite")
            L = _cholesky(R)
            diag = np.diagonal(L, axis1=1, axis2=2)
            if weight.shape[1] == 1:
                logdet += 2.0 * float(np.sum(b.counts * np.sum(np.log(diag), axis=1)))
            else:
                logdet += 2.0 * float(np.sum(weight * np.log(diag)))
            factors.append((L, _lower_inverse(L)))
        return logdet, factors

    def values_gradient(self, values: np.ndarray, factors: list[tuple[np.ndarray, np.ndarray]], G: np.ndarray,
                        Xw: np.ndarray) -> np.ndarray:
        """d deviance / d value of every partable row of the structure (zeros elsewhere).

        G (n, m): d deviance / d whitened rows Xw (n, m). dD/dR_p per pattern
        (Cholesky adjoint, `_bar_R`), then `covariance_gradient`.
        """
        blocks = self._block_grams(G, Xw) if self.perm is not None else None
        bars = [self._bar_R(b, self.row_weight[i], L, Linv, G, Xw, None if blocks is None else blocks[i])
                for i, (b, (L, Linv)) in enumerate(zip(self.shared, factors, strict=True))]
        return self.covariance_gradient(values, bars)

    def covariance_gradient(self, values: np.ndarray, bars: list[np.ndarray]) -> np.ndarray:
        """d deviance / d value of every partable row of the structure from dD/dR_p of every pattern factorised.

        `bars`: per batch of `shared`, (n_patterns, s, s) symmetric dD/dR_p (entries at padded positions are
        ignored). With R = D C D: dD/dsd_a = 2 sum_b dR_ab C_ab sd_b and dD/dC_ab = dR_ab sd_a sd_b,
        scattered onto the structure's parameters.
        """
        st = self.structure
        _, parts = self._parts(values)
        grad = np.zeros(len(values))
        by_lag = [np.zeros(self.max_lag + 1) for _ in st.groups]
        for b, ix, bar, (sd, C) in zip(self.shared, self.index, bars, parts, strict=True):
            if ix.both is not None:
                bar = np.where(ix.both, bar, 0.0)
            g_sd = 2.0 * np.einsum("pab,pab,pb->pa", bar, C, sd)
            dC = bar * sd[:, :, None] * sd[:, None, :]
            P, s = sd.shape
            off = _constant("off", s)
            for g, grp in enumerate(st.groups):
                rows_g = ix.rows[g]
                if len(grp.sd_rows) > 1:
                    np.add.at(grad, grp.sd_rows[b.time_index[rows_g]], g_sd[rows_g])
                else:
                    grad[grp.sd_rows[0]] += float(g_sd[rows_g].sum())
                if st.structure == "independent":
                    continue
                sel = ix.sel[g]
                if not sel.any():
                    continue
                dCg = np.where(off[None], dC[sel], 0.0)
                kind = st.structure
                if kind == "exchangeable":
                    grad[grp.par_rows[0]] += float(dCg.sum())
                elif kind == "exponential":
                    rho = values[grp.par_rows[0]]
                    lag = ix.dist[g]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        d = np.where(off[None] & (lag > 0), lag * np.power(rho, lag - 1.0), 0.0)
                    grad[grp.par_rows[0]] += float(np.sum(dCg * d))
                elif kind in ("unstructured", "banded"):
                    T = len(grp.sd_rows)
                    lookup = np.full((T, T), -1)
                    lookup[grp.pairs[:, 0], grp.pairs[:, 1]] = grp.par_rows
                    lookup[grp.pairs[:, 1], grp.pairs[:, 0]] = grp.par_rows
                    ti = b.time_index[sel]
                    target = lookup[ti[:, :, None], ti[:, None, :]]
                    keep = target >= 0
                    np.add.at(grad, target[keep], dCg[keep])
                else:
                    by_lag[g] += np.bincount(ix.lag[g].ravel(), weights=dCg.ravel(), minlength=self.max_lag + 1)
        if st.structure in ("ar", "ma", "toeplitz"):
            for g, grp in enumerate(st.groups):
                np.add.at(grad, grp.par_rows, by_lag[g] @ self._acf_jacobian(g, values))
        return grad

    def _block_grams(self, G: np.ndarray, Xw: np.ndarray) -> list[np.ndarray]:
        """Per batch, sum_c G_c X_c' of every pattern from the contiguous blocks of the `perm` order."""
        out = [np.zeros(b.time.shape + (b.time.shape[1],)) for b in self.shared]
        for i, p, v, start, stop, block in self.segments:
            Q = G[start:stop].reshape(len(v), -1) @ Xw[start:stop].reshape(len(v), -1).T
            if block is None:
                out[i][p] += Q
            else:
                out[i][p][block] += Q
        return out

    @staticmethod
    def _bar_R(b: SizeBatch, weight: np.ndarray, L: np.ndarray, Linv: np.ndarray, G: np.ndarray, Xw: np.ndarray,
               Q: np.ndarray | None = None) -> np.ndarray:
        """dD/dR_p (symmetric) of every pattern of a batch, from dD/d(whitened rows) (module docstring).

        `weight`: clusters per pattern (P, 1), or per row of each pattern (P, s) where patterns share a factor.
        """
        P, s = b.time.shape
        if Q is None:  # rows in data order (`perm` is None): gather each pattern's clusters
            Q = np.zeros((P, s, s))
            if b.members is not None:
                for p, mem in enumerate(b.members):
                    v = np.flatnonzero(b.valid[p])
                    Q[p][np.ix_(v, v)] = _gram(G, Xw, b.rows[mem][:, v])
            else:
                pad = np.zeros((1, G.shape[1]))
                Gc, Xc = np.vstack([G, pad])[b.rows], np.vstack([Xw, pad])[b.rows]
                np.add.at(Q, b.pattern, Gc @ np.swapaxes(Xc, 1, 2))
        LinvT = np.swapaxes(Linv, 1, 2)
        barL = LinvT @ Q
        np.negative(barL, out=barL)
        barL.reshape(P, s * s)[:, ::s + 1] += 2.0 * weight / np.diagonal(L, axis1=1, axis2=2)
        lower = _constant("lower", s)
        barL *= lower
        phi = np.swapaxes(L, 1, 2) @ barL
        phi *= lower
        phi.reshape(P, s * s)[:, ::s + 1] *= 0.5
        S = LinvT @ phi @ Linv
        return 0.5 * (S + np.swapaxes(S, 1, 2))
