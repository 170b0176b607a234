"""The optimiser's coordinates for the exact Gaussian path, and starting values.

The free vector of the parameter table holds natural SDs, correlations,
loadings, B, Gamma and log residual SDs. The profiled optimisation works on
`phi` instead:

- fixed effects never appear (profiled by GLS);
- with one residual SD and no latent SD fixed at a non-zero value, sigma is
  profiled too and every latent SD is expressed relative to it (lme4's theta);
- a fully free unstructured covariance block is parameterised by the lower
  Cholesky factor of its (relative) covariance matrix, diagonal >= 0, as lme4
  does: boundary fits (an SD of 0, a correlation of +-1) are then reached at
  ordinary coordinate values instead of at corners of a box;
- everything else keeps its free-vector coordinate and bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mlmrun.compile.layout import tril
from mlmrun.compile.matrices import ModelMatrices
from mlmrun.compile.model import CompiledModel


@dataclass(frozen=True)
class ResidualChol:
    """An unstructured residual covariance (one `by` group) on the lower Cholesky factor of its covariance.

    The free vector holds log SDs and correlations; phi the factor's rows
    (0,0), (1,0), (1,1), ...: every phi gives a positive semi-definite
    covariance, so the optimiser never meets an invalid one (as lme4 does for
    random effects); the correlations near +-1 of repeated measures are then
    ordinary coordinates.
    """

    sd_idx: np.ndarray
    corr_idx: np.ndarray
    pairs: np.ndarray
    """(len(corr_idx), 2): time positions (a, b) of each correlation."""
    pos: np.ndarray

    def natural(self, lam: np.ndarray) -> np.ndarray:
        """[log SDs, correlations] from the factor's entries."""
        T = len(self.sd_idx)
        Lam = np.zeros((T, T))
        Lam[np.tril_indices(T)] = lam
        Sigma = Lam @ Lam.T
        sd = np.sqrt(np.maximum(np.diag(Sigma), 1e-300))
        R = Sigma / np.outer(sd, sd)
        return np.concatenate([np.log(sd), np.clip(R[self.pairs[:, 0], self.pairs[:, 1]], -1.0, 1.0)])

    def coordinates(self, log_sd: np.ndarray, corr: np.ndarray) -> np.ndarray:
        """The factor's entries from log SDs and correlations (the nearest positive definite matrix if need be)."""
        T = len(self.sd_idx)
        R = np.eye(T)
        R[self.pairs[:, 0], self.pairs[:, 1]] = corr
        R[self.pairs[:, 1], self.pairs[:, 0]] = corr
        sd = np.exp(log_sd)
        Sigma = np.outer(sd, sd) * R
        w, V = np.linalg.eigh(Sigma)
        Sigma = (V * np.clip(w, 1e-8 * max(w.max(), 1e-300), None)) @ V.T
        return np.linalg.cholesky(Sigma)[np.tril_indices(T)]

    def jacobian(self, lam: np.ndarray) -> np.ndarray:
        """d natural / d lam, analytic: dSigma = E_ab Lam' + Lam E_ba for the factor entry (a, b), then
        d log sd_r = dSigma_rr / (2 Sigma_rr) and d corr_rs = dSigma_rs / (sd_r sd_s) - corr_rs (d log sd_r + d log sd_s).
        """
        T = len(self.sd_idx)
        rows, cols = np.tril_indices(T)
        Lam = np.zeros((T, T))
        Lam[rows, cols] = lam
        Sigma = Lam @ Lam.T
        var = np.maximum(np.diag(Sigma), 1e-300)
        sd = np.sqrt(var)
        m = len(lam)
        dS = np.zeros((m, T, T))
        k = np.arange(m)
        dS[k, rows, :] += Lam[:, cols].T
        dS[k, :, rows] += Lam[:, cols].T
        dlogsd = np.diagonal(dS, axis1=1, axis2=2) / (2.0 * var)
        a, b = self.pairs[:, 0], self.pairs[:, 1]
        corr = Sigma[a, b] / (sd[a] * sd[b])
        dcorr = dS[:, a, b] / (sd[a] * sd[b]) - corr * (dlogsd[:, a] + dlogsd[:, b])
        return np.concatenate([dlogsd, dcorr], axis=1).T


def _residual_chol_blocks(model: CompiledModel, free: np.ndarray, counts: np.ndarray) -> list[ResidualChol]:
    """The unstructured residual groups whose SDs and correlations are all free and used nowhere else."""
    st = model.residual
    if st is None or st.structure != "unstructured":
        return []
    out = []
    for grp in st.groups:
        rows = np.concatenate([grp.sd_rows, grp.par_rows]).astype(int)
        idx = free[rows] - 1
        if (free[rows] == 0).any() or len(set(idx)) != len(idx) or (counts[idx] != 1).any():
            continue
        T = len(grp.sd_rows)
        out.append(ResidualChol((free[grp.sd_rows] - 1).astype(int), (free[grp.par_rows] - 1).astype(int),
                                grp.pairs, np.zeros(T * (T + 1) // 2, dtype=int)))
    return out


@dataclass(frozen=True)
class CholBlock:
    """An unstructured block whose k SDs and k(k-1)/2 correlations are free and used nowhere else."""

    sd_idx: np.ndarray
    corr_idx: np.ndarray
    pos: np.ndarray
    """Positions in phi of the lower-triangular factor, by rows: (0,0), (1,0), (1,1), (2,0), ..."""
    level: int
    where: np.ndarray
    """Positions of the block's members within CompiledModel.latent_at(level) (rows/columns of L_level)."""


class GaussianParams:
    """Map between phi (optimiser coordinates) and the parameter table's free vector."""

    def __init__(self, model: CompiledModel):
        pt = model.partable
        self.model = model
        free = pt.column("free")
        block = pt.column("block")
        value = pt.column("value")
        self.n_free = pt.n_free
        beta_free = free[model.beta_rows]
        self.beta_idx = beta_free[beta_free > 0] - 1
        resid_idx = sorted({int(free[r]) - 1 for r in pt.rows_of("residual") if free[r] > 0})
        fixed_sd = [r for r in pt.rows_of("sd") if free[r] == 0 and value[r] != 0]
        resid_rows = pt.rows_of("residual")
        self.profile_sigma = (len(resid_idx) == 1 and not fixed_sd and all(free[r] > 0 for r in resid_rows)
                              and pt.column("transform")[resid_rows[0]] == "log")
        self.residual_idx = np.array(resid_idx, dtype=int)
        idx_blocks: dict[int, set[str]] = {}
        for r in range(len(pt)):
            if free[r] > 0:
                idx_blocks.setdefault(int(free[r]) - 1, set()).add(block[r])
        counts = np.bincount(free[free > 0] - 1, minlength=self.n_free)
        self.chol: list[CholBlock] = []
        claimed: set[int] = set()
        n_phi = 0
        for b in model.blocks:
            k = len(b.members)
            if b.kind != "unstructured" or k < 2:
                continue
            rows = np.concatenate([b.sd_rows, b.corr_rows]).astype(int)
            idx = free[rows] - 1
            if (free[rows] == 0).any() or len(set(idx)) != len(idx) or (counts[idx] != 1).any():
                continue
            claimed.update(int(i) for i in idx)
        self.resid_chol = _residual_chol_blocks(model, free, counts)
        for rc in self.resid_chol:
            claimed.update(int(i) for i in np.concatenate([rc.sd_idx, rc.corr_idx]))
        skip = set(int(i) for i in self.beta_idx) | claimed
        if self.profile_sigma:
            skip |= set(resid_idx)
        self.plain_idx = np.array([j for j in range(self.n_free) if j not in skip], dtype=int)
        self.plain_kind = [self._kind(idx_blocks[j]) for j in self.plain_idx]
        self._plain_sd = np.array([kind == "sd" for kind in self.plain_kind], dtype=bool)
        n_phi = len(self.plain_idx)
        for b in model.blocks:
            k = len(b.members)
            if b.kind != "unstructured" or k < 2:
                continue
            idx = free[b.sd_rows] - 1
            if not all(int(i) in claimed for i in idx):
                continue
            m = k * (k + 1) // 2
            where = np.array([model.latent_at(b.level).index(mb) for mb in b.members])
            self.chol.append(CholBlock(idx.astype(int), (free[b.corr_rows] - 1).astype(int),
                                       np.arange(n_phi, n_phi + m), b.level, where))
            n_phi += m
        for rc in self.resid_chol:
            T = len(rc.sd_idx)
            rc.pos[:] = np.arange(n_phi, n_phi + T * (T + 1) // 2)
            n_phi += len(rc.pos)
        self.n_phi = n_phi
        bounds_free = pt.free_bounds()
        self.bounds: list[tuple[float | None, float | None]] = []
        for j, kind in zip(self.plain_idx, self.plain_kind, strict=True):
            self.bounds.append((0.0, None) if kind == "sd" else bounds_free[j])
        for cb in self.chol:
            k = len(cb.sd_idx)
            for i in range(k):
                for jj in range(i + 1):
                    self.bounds.append((0.0, None) if i == jj else (None, None))
        for rc in self.resid_chol:
            T = len(rc.sd_idx)
            self.bounds += [(0.0, None) if i == jj else (None, None) for i in range(T) for jj in range(i + 1)]
        self.sym = np.array([kind == "sd" for kind in self.plain_kind]
                            + [i == jj for cb in self.chol for i in range(len(cb.sd_idx)) for jj in range(i + 1)]
                            + [False for rc in self.resid_chol for _ in rc.pos], dtype=bool)
        """Coordinates the deviance is even in (SDs, Cholesky diagonals): finite differences may cross 0."""

    @staticmethod
    def _kind(blocks: set[str]) -> str:
        for kind in ("sd", "corr", "residual"):
            if blocks == {kind}:
                return kind
        return "other"

    def free_vector(self, phi: np.ndarray, sigma: float = 1.0, beta: np.ndarray | None = None) -> np.ndarray:
        """The partable free vector for phi; with a profiled sigma, latent SDs are phi * sigma."""
        free = np.zeros(self.n_free)
        if beta is not None:
            free[self.beta_idx] = beta
        if self.profile_sigma:
            free[self.residual_idx] = np.log(sigma)
        scale = sigma if self.profile_sigma else 1.0
        n_plain = len(self.plain_idx)
        free[self.plain_idx] = phi[:n_plain] * np.where(self._plain_sd, scale, 1.0)
        for cb in self.chol:
            k = len(cb.sd_idx)
            Lam = np.zeros((k, k))
            Lam[tril(k)] = phi[cb.pos]
            Sigma = Lam @ Lam.T
            sd = np.sqrt(np.diag(Sigma))
            free[cb.sd_idx] = sd * scale
            rows, cols = tril(k, -1)
            denom = sd[rows] * sd[cols]
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = np.where(denom > 0, Sigma[rows, cols] / np.where(denom > 0, denom, 1.0), 0.0)
            free[cb.corr_idx] = np.clip(corr, -1.0, 1.0)
        for rc in self.resid_chol:
            free[np.concatenate([rc.sd_idx, rc.corr_idx])] = rc.natural(phi[rc.pos])
        return free

    def with_factors(self, mats: ModelMatrices, phi: np.ndarray) -> ModelMatrices:
        """`mats` with each Cholesky block's L set to its factor in phi (scale 1).

        L L' is unchanged (the Cholesky factor is unique while its diagonal is
        positive), but the likelihood's gradient with respect to L is then the
        gradient with respect to these coordinates, also at a boundary (a zero
        diagonal), where SDs and correlations are not differentiable.
        """
        if not self.chol:
            return mats
        L = {lvl: Ll.copy() for lvl, Ll in mats.L.items()}
        for cb in self.chol:
            rows, cols = tril(len(cb.sd_idx))
            Ll = L[cb.level]
            Ll[np.ix_(cb.where, cb.where)] = 0.0
            Ll[cb.where[rows], cb.where[cols]] = phi[cb.pos]
        return replace(mats, L=L)

    def phi_gradient(self, g_free: np.ndarray, g_L: dict[int, np.ndarray], phi: np.ndarray | None = None) -> np.ndarray:
        """Gradient on phi from the gradient on the free vector and on L (for the Cholesky blocks).

        Evaluated with sigma = 1 (a profiled sigma is factored out of the
        latent SDs), so plain coordinates are free-vector coordinates.
        """
        g = np.zeros(self.n_phi)
        g[:len(self.plain_idx)] = g_free[self.plain_idx]
        for cb in self.chol:
            rows, cols = tril(len(cb.sd_idx))
            g[cb.pos] = g_L[cb.level][cb.where[rows], cb.where[cols]]
        for rc in self.resid_chol:  # phi is needed (only) here
            g[rc.pos] = rc.jacobian(phi[rc.pos]).T @ g_free[np.concatenate([rc.sd_idx, rc.corr_idx])]
        return g

    def phi_from_free(self, free: np.ndarray, sigma: float = 1.0) -> np.ndarray:
        """Inverse of free_vector (SDs divided by sigma when it is profiled)."""
        scale = sigma if self.profile_sigma else 1.0
        phi = np.zeros(self.n_phi)
        for p, (j, kind) in enumerate(zip(self.plain_idx, self.plain_kind, strict=True)):
            phi[p] = free[j] / scale if kind == "sd" else free[j]
        for cb in self.chol:
            k = len(cb.sd_idx)
            sd = free[cb.sd_idx] / scale
            R = np.eye(k)
            rows, cols = np.tril_indices(k, -1)
            R[rows, cols] = R[cols, rows] = free[cb.corr_idx]
            Sigma = np.outer(sd, sd) * R
            w, V = np.linalg.eigh(Sigma)
            Sigma = (V * np.clip(w, 1e-10 * max(w.max(), 1e-300), None)) @ V.T
            phi[cb.pos] = np.linalg.cholesky(Sigma)[np.tril_indices(k)]
        for rc in self.resid_chol:
            phi[rc.pos] = rc.coordinates(free[rc.sd_idx], free[rc.corr_idx])
        return phi

    def clip(self, phi: np.ndarray) -> np.ndarray:
        """phi moved inside its bounds."""
        lo = np.array([-np.inf if b[0] is None else b[0] for b in self.bounds])
        hi = np.array([np.inf if b[1] is None else b[1] for b in self.bounds])
        return np.clip(phi, lo, hi)


def start_values(model: CompiledModel, params: GaussianParams) -> tuple[np.ndarray, float]:
    """Natural starting free vector (beta by OLS, SDs by a moment split of OLS residuals) and sigma.

    Each level's variance is the between-unit variance of the OLS residuals'
    unit means less its within-unit share (at least 10% of the residual
    variance, so the optimiser starts inside the space); a latent SD is that
    variance's root divided by the RMS of its loading covariate. Values the
    user gives under estimation.start win.
    """
    pt = model.partable
    X, y = model.X, model.y - model.offset
    beta, *_ = np.linalg.lstsq(X, y, rcond=None) if X.shape[1] else (np.zeros(0),)
    e = y - X @ beta
    s2 = float(np.mean(e**2)) or 1.0
    within, tau = s2, {}
    for lvl in sorted({lat.level for lat in model.latent}):
        idx = model.levels[lvl]
        size = np.maximum(idx.sizes(), 1)
        means = np.bincount(idx.codes, weights=e, minlength=idx.n_units) / size
        w = float(np.sum((e - means[idx.codes]) ** 2) / max(model.n - idx.n_units, 1))
        within = min(within, w) if not idx.crossed else within
        tau[lvl] = float(np.var(means)) - w / float(np.mean(size))
    values = pt.start_values
    free_col = pt.column("free")
    user = set(model.spec.estimation.start)
    for b in model.blocks:
        for m, r in zip(b.members, b.sd_rows, strict=True):
            lat = model.latent[m]
            if free_col[r] == 0 or pt.names[r] in user or lat.Z.shape[1] == 0:
                continue
            z = lat.Z @ values[lat.loading_rows]
            rms = float(np.sqrt(np.mean(z**2))) or 1.0
            values[r] = np.sqrt(max(tau[lat.level], 0.1 * within)) / rms
    for r in pt.rows_of("residual"):
        if pt.names[r] not in user:
            values[r] = np.sqrt(within)
    values[model.beta_rows] = np.where([pt.names[r] in user for r in model.beta_rows], values[model.beta_rows], beta)
    if model.residual is not None:
        _residual_starts(model, e, values, user)
    free = pt.pack(values)
    sigma = float(np.exp(free[params.residual_idx[0]])) if params.profile_sigma else 1.0
    return free, sigma


def _ar_start(model: CompiledModel, e: np.ndarray, values: np.ndarray, user: set[str]) -> None:
    """phi1 from the residual autocorrelation r at the shortest lag k present: sign(r) |r|^(1/k), at least 0.1.

    phi = 0 is a stationary point of the likelihood when no lag of 1 occurs
    (rho_k = phi^k, k >= 2, has zero slope there), so a start at 0 could stay
    there; the moment start moves off it towards the data's sign.
    """
    st = model.residual
    names = model.partable.names
    order = np.lexsort((st.time, st.cluster))
    same = st.cluster[order][1:] == st.cluster[order][:-1]
    lag = np.diff(st.time[order])
    a, b = order[:-1][same], order[1:][same]
    lag = lag[same]
    for g, grp in enumerate(st.groups):
        row = grp.par_rows[0]
        mine = st.group[a] == g
        if str(names[row]) in user or not mine.any():
            continue
        k = float(lag[mine].min())
        pick = mine & (lag == k)
        r = float(np.sum(e[a[pick]] * e[b[pick]]) / max(np.sqrt(np.sum(e[a[pick]] ** 2) * np.sum(e[b[pick]] ** 2)), 1e-300))
        phi = float(np.sign(r) * abs(r) ** (1.0 / max(k, 1.0)))
        values[row] = float(np.clip(phi if abs(phi) >= 0.1 else 0.1, -0.8, 0.8))


def _residual_starts(model: CompiledModel, e: np.ndarray, values: np.ndarray, user: set[str]) -> None:
    """Moment starts of unstructured, banded and exchangeable residual parameters from the OLS residuals.

    Per `by` group: each time value's residual SD, and the correlations of
    residuals of one cluster, shrunk towards 0 until the matrix is positive
    definite (a start far inside the space saves the optimiser dozens of steps).
    """
    st = model.residual
    names = model.partable.names
    if st.structure == "ar":
        _ar_start(model, e, values, user)
    if st.structure not in ("unstructured", "banded", "exchangeable"):
        return
    for g, grp in enumerate(st.groups):
        rows = np.flatnonzero(st.group == g)
        clusters, cl = np.unique(st.cluster[rows], return_inverse=True)
        if st.structure == "exchangeable":
            sums = np.bincount(cl, weights=e[rows], minlength=len(clusters))
            sizes = np.bincount(cl, minlength=len(clusters))
            pairs = float(np.sum(sizes * (sizes - 1)))
            var = float(np.mean(e[rows] ** 2)) or 1.0
            rho = float(np.sum(sums**2 - np.bincount(cl, weights=e[rows] ** 2, minlength=len(clusters)))) / \
                max(pairs, 1.0) / var
            low = -0.5 / max(int(sizes.max()) - 1, 1)
            if str(names[grp.par_rows[0]]) not in user:
                values[grp.par_rows[0]] = float(np.clip(rho, low, 0.9))
            continue
        T = len(grp.sd_rows)
        E = np.full((len(clusters), T), np.nan)
        E[cl, st.time_index[rows]] = e[rows]
        sd = np.sqrt(np.nanmean(E**2, axis=0))
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, float(np.sqrt(np.mean(e[rows] ** 2))) or 1.0)
        C = np.eye(T)
        for (a, b) in grp.pairs:
            both = ~np.isnan(E[:, a]) & ~np.isnan(E[:, b])
            if both.sum() >= 2:
                C[a, b] = C[b, a] = float(np.clip(np.mean(E[both, a] * E[both, b]) / (sd[a] * sd[b]), -0.9, 0.9))
        shrink = 1.0
        while np.linalg.eigvalsh(shrink * C + (1 - shrink) * np.eye(T)).min() < 0.05 and shrink > 0:
            shrink -= 0.1
        C = max(shrink, 0.0) * C + (1 - max(shrink, 0.0)) * np.eye(T)
        for r, t in zip(grp.sd_rows, range(T), strict=True):
            if str(names[r]) not in user:
                values[r] = sd[t]
        for r, (a, b) in zip(grp.par_rows, grp.pairs, strict=True):
            if str(names[r]) not in user:
                values[r] = C[a, b]
