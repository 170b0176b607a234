"""Residual covariance structures in the exact Gaussian likelihood: per-cluster whitening and its adjoint.

With residual covariance R = blockdiag(R_j) over the clusters j (units of the
lowest level above the rows) and R_j = L_j L_j' (Cholesky), the model
y = X beta + A u + e, e ~ N(0, R), is the independent-residual model of
likelihood/gaussian.py for the whitened rows L_j^-1 [X, y, xi] of every
cluster, with unit residual weights, plus log|R| = 2 sum_j log|L_j| (nlme's
and Stata's approach). Every row of a cluster belongs to the same unit of
every level above it (the clusters are the lowest level), so whitening keeps
the block structure of A and nothing n x n is ever formed.

Clusters with the same time values (and `by` group) share R_j: they form a
pattern, factorised once per evaluation; clusters are whitened in batches of
equal size. R_j = D C D with D the rows' residual SDs and C the structure's
correlation matrix (`correlation`): AR(p) autocorrelations from the
Yule-Walker equations, MA(q) from the theta weights, Toeplitz and banded
correlations given directly, exponential rho^|t_a - t_b|, exchangeable and
unstructured.

The gradient: with G the deviance's derivative with respect to the whitened
rows X* (gaussian_adjoint's row-wise adjoint), dD = sum_j tr(G_j' dX*_j) +
d log|R|, dX*_j = -L_j^-1 dL_j X*_j, so dD/dL_j = -L_j^-T G_j X*_j' +
2 diag(1/L_j,ii); the Cholesky adjoint (as in compile/matrices.block_L_adjoint)
turns it into dD/dR_j, summed per pattern, and the entries of R_p are
differentiated in each partable row by central differences of this small,
cheap function (the data enter only through the summed dD/dR_p).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.residuals import ResidualStructure

STEP = 1e-6
"""Central-difference step of the small map from parameter values to R_p."""


def ar_autocorrelation(phi: np.ndarray, max_lag: int) -> np.ndarray:
    """rho_0..rho_max_lag of a stationary AR(p) with coefficients phi (Yule-Walker, then the recursion).

    Raises LinAlgError where phi is not stationary (the system is singular or
    the autocorrelations leave [-1, 1]).
    """
    p = len(phi)
    A = np.eye(p)
    b = np.zeros(p)
    for k in range(1, p + 1):  # rho_k - sum_i phi_i rho_|k-i| = 0, rho_0 = 1
        for i in range(1, p + 1):
            lag = abs(k - i)
            if lag == 0:
                b[k - 1] += phi[i - 1]
            else:
                A[k - 1, lag - 1] -= phi[i - 1]
    rho = np.ones(max(max_lag, p) + 1)
    rho[1:p + 1] = np.linalg.solve(A, b)
    for k in range(p + 1, len(rho)):
        rho[k] = float(np.dot(phi, rho[k - p:k][::-1]))
    gamma0 = 1.0 - float(np.dot(phi, rho[1:p + 1]))
    if not gamma0 > 0 or np.any(np.abs(rho) > 1.0 + 1e-12):
        raise np.linalg.LinAlgError("AR coefficients outside the stationary region")
    return rho[:max_lag + 1]


def ma_autocorrelation(theta: np.ndarray, max_lag: int) -> np.ndarray:
    """rho_0..rho_max_lag of an MA(q), e_t = a_t + theta_1 a_{t-1} + ... + theta_q a_{t-q}."""
    w = np.concatenate([[1.0], theta])
    q = len(theta)
    gamma = np.array([float(np.dot(w[:len(w) - k], w[k:])) for k in range(q + 1)])
    rho = np.zeros(max_lag + 1)
    m = min(q, max_lag) + 1
    rho[:m] = gamma[:m] / gamma[0]
    return rho


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
    """(n_patterns, s): `by` group of the pattern's rows."""


class ResidualPlan:
    """Clusters grouped by size and pattern (built once per model): R_p per evaluation, whitening, adjoint."""

    def __init__(self, structure: ResidualStructure, n: int):
        self.structure = structure
        st = structure
        order = np.lexsort((np.arange(n), st.cluster))
        sizes = np.bincount(st.cluster)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.batches: list[SizeBatch] = []
        for s in np.unique(sizes[sizes > 0]):
            clusters = np.flatnonzero(sizes == s)
            rows = order[starts[clusters][:, None] + np.arange(s)[None, :]]
            key = np.concatenate([st.time_index[rows], st.group[rows]], axis=1)
            uniq, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
            rep = rows[first]
            self.batches.append(SizeBatch(rows, inverse.ravel(), np.bincount(inverse.ravel(), minlength=len(uniq)),
                                          st.time[rep], st.time_index[rep], st.group[rep]))
        lags = [np.abs(b.time[:, :, None] - b.time[:, None, :]) for b in self.batches]
        self.max_lag = int(max((float(x.max()) for x in lags), default=0.0))
        self.rows = structure.rows

    def covariances(self, values: np.ndarray) -> list[np.ndarray]:
        """R_p for every pattern of every batch, shape (n_patterns, s, s) per batch."""
        st = self.structure
        return [self._batch_cov(st, b, values) for b in self.batches]

    def _group_correlation(self, g: int, values: np.ndarray) -> np.ndarray | None:
        """Autocorrelations rho_0..rho_max_lag of group g (ar, ma, toeplitz), else None."""
        st = self.structure
        par = values[st.groups[g].par_rows]
        if st.structure == "ar":
            return ar_autocorrelation(par, self.max_lag)
        if st.structure == "ma":
            return ma_autocorrelation(par, self.max_lag)
        if st.structure == "toeplitz":
            rho = np.zeros(self.max_lag + 1)
            rho[0] = 1.0
            m = min(len(par), self.max_lag)
            rho[1:m + 1] = par[:m]
            return rho
        return None

    def _batch_cov(self, st: ResidualStructure, b: SizeBatch, values: np.ndarray) -> np.ndarray:
        """R_p = D C D for the patterns of one batch."""
        P, s = b.time.shape
        diff = b.time[:, :, None] - b.time[:, None, :]
        off = ~np.eye(s, dtype=bool)[None]
        C = np.broadcast_to(np.eye(s), (P, s, s)).copy()
        g_cl = b.group[:, 0]
        kind = st.structure
        sd = np.zeros((P, s))
        for g, grp in enumerate(st.groups):
            sel = g_cl == g if kind != "independent" else np.ones(P, dtype=bool)
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
                sd[b.group == g] = values[grp.sd_rows[0]]
                continue
            sd[sel] = values[grp.sd_rows[0]]
            if not sel.any():
                continue
            if kind == "exchangeable":
                C[sel] = np.where(off, values[grp.par_rows[0]], 1.0)
            elif kind == "exponential":
                rho = values[grp.par_rows[0]]
                with np.errstate(divide="ignore", invalid="ignore"):
                    C[sel] = np.where(off, np.power(rho, np.abs(diff[sel])), 1.0)
            else:
                acf = self._group_correlation(g, values)
                lag = np.rint(np.abs(diff[sel])).astype(int)
                C[sel] = acf[lag]
        return sd[:, :, None] * C * sd[:, None, :]

    def whiten(self, values: np.ndarray, arrays: np.ndarray) -> tuple[np.ndarray, float, list[tuple[np.ndarray, np.ndarray]]]:
        """L_j^-1 applied to the rows of every cluster of `arrays` (n, m); log|R|; per batch (L, L^-1) by pattern.

        Raises LinAlgError where some R_p is not positive definite.
        """
        out = np.empty_like(arrays)
        logdet = 0.0
        factors = []
        for b, R in zip(self.batches, self.covariances(values), strict=True):
            if not np.all(np.isfinite(R)):
                raise np.linalg.LinAlgError("residual covariance is not finite")
            L = np.linalg.cholesky(R)
            diag = np.diagonal(L, axis1=1, axis2=2)
            logdet += 2.0 * float(np.sum(b.counts * np.sum(np.log(diag), axis=1)))
            Linv = np.linalg.inv(L)
            factors.append((L, Linv))
            X = arrays[b.rows]
            out[b.rows] = Linv[0] @ X if len(b.counts) == 1 else Linv[b.pattern] @ X
        return out, logdet, factors

    def values_gradient(self, values: np.ndarray, factors: list[tuple[np.ndarray, np.ndarray]], G: np.ndarray,
                        Xw: np.ndarray) -> np.ndarray:
        """d deviance / d value of every partable row of the structure (zeros elsewhere).

        G (n, m): d deviance / d whitened rows Xw (n, m).
        """
        bars = []
        for b, (L, Linv) in zip(self.batches, factors, strict=True):
            Gc, Xc = G[b.rows], Xw[b.rows]
            P, s = b.time.shape
            if P == 1:
                Q = np.tensordot(Gc, Xc, axes=([0, 2], [0, 2]))[None]
            else:
                Q = np.zeros((P, s, s))
                np.add.at(Q, b.pattern, Gc @ np.swapaxes(Xc, 1, 2))
            LinvT = np.swapaxes(Linv, 1, 2)
            barL = -LinvT @ Q
            idx = np.arange(s)
            barL[:, idx, idx] += 2.0 * b.counts[:, None] / L[:, idx, idx]
            barL = np.tril(barL)
            phi = np.tril(np.swapaxes(L, 1, 2) @ barL)
            phi[:, idx, idx] *= 0.5
            S = LinvT @ phi @ Linv
            bars.append(0.5 * (S + np.swapaxes(S, 1, 2)))
        grad = np.zeros(len(values))
        for r in self.rows:
            h = STEP * max(1.0, abs(float(values[r])))
            up, down = values.copy(), values.copy()
            up[r] += h
            down[r] -= h
            Rup, Rdown = self._safe(up), self._safe(down)
            if Rup is None or Rdown is None:  # a step outside the valid region (a bound): one-sided
                Rup, Rdown, h = (self.covariances(values), Rdown, h / 2) if Rup is None else \
                                (Rup, self.covariances(values), h / 2)
            grad[r] = sum(float(np.sum(bar * (a - c))) for bar, a, c in zip(bars, Rup, Rdown, strict=True)) / (2 * h)
        return grad

    def _safe(self, values: np.ndarray) -> list[np.ndarray] | None:
        """covariances(values), or None where they are not defined or not finite there."""
        try:
            R = self.covariances(values)
        except np.linalg.LinAlgError:
            return None
        return R if all(np.all(np.isfinite(x)) for x in R) else None
