"""The moments likelihood: implied mean and covariance of the items, log likelihood, gradient and information.

Per unit, y ~ N(mu, Sigma) with mu = X beta + offset and
Sigma = Lambda T Psi T' Lambda' + Theta (T = (I - B)^-1, Psi the covariance of
the disturbances at the unit level, Theta the residual covariance: the item
variances on the diagonal, `residual_covariances` off it). A pattern g of n_g
units observing items o, with mean m_g and covariance S_g (divisor n_g), adds
    -n_g/2 [p_g log 2pi + log|Sigma_oo| + tr(Sigma_oo^-1 S_g) + (m_g - mu_o)' Sigma_oo^-1 (m_g - mu_o)],
so an evaluation costs O(p^3) per pattern, whatever the number of units.

Coordinates (`theta`, one per free partable number): natural values, except
that residual SDs enter as variances of any sign (lavaan allows negative
residual variances, a Heywood case; the partable then reports the signed
root). Each coordinate's derivative of (mu, Sigma) is a sum of outer
products (forward mode), which gives the gradient
    d loglik / d theta_k = sum_g tr(G_g dSigma_k) + g_mu,g' dmu_k,
with G_g = n_g/2 Sigma^-1 (S_g + d d' - Sigma) Sigma^-1, g_mu,g = n_g Sigma^-1 d,
and the expected information n_g [tr(Sigma^-1 dSigma_k Sigma^-1 dSigma_l)/2 + dmu_k' Sigma^-1 dmu_l].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.moments.data import MomentsData

LOG2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class Implied:
    """Model-implied item moments and the matrices they come from."""

    mu: np.ndarray
    Sigma: np.ndarray
    Lambda: np.ndarray
    T: np.ndarray
    Psi: np.ndarray
    Theta: np.ndarray

    @property
    def Phi(self) -> np.ndarray:
        """Covariance of the latent variables eta (total, not of the disturbances)."""
        return self.T @ self.Psi @ self.T.T


class MomentsModel:
    """Maps coordinates to partable values and implied moments; evaluates the likelihood over the patterns."""

    def __init__(self, model: CompiledModel, data: MomentsData) -> None:
        self.model, self.data = model, data
        pt = model.partable
        frame = pt.frame
        self.free = frame["free"].to_numpy(dtype=int)
        self.n_theta = pt.n_free
        self.residual = np.zeros(len(self.free), dtype=bool)
        self.residual[pt.rows_of("residual")] = True
        free_rows = np.flatnonzero(self.free > 0)
        self.free_rows = free_rows
        self._covariance_blocks()
        base = pt.start_values
        self.fixed_coord = np.where(self.var_rows, np.sign(base) * base ** 2, base)
        lo = frame["lower"].to_numpy(dtype=float)
        hi = frame["upper"].to_numpy(dtype=float)
        self.lower = np.full(self.n_theta, -np.inf)
        self.upper = np.full(self.n_theta, np.inf)
        for r in free_rows:
            k = self.free[r] - 1
            if not (self.var_rows[r] or self.cov_rows[r]):
                self.lower[k] = max(self.lower[k], lo[r])
                self.upper[k] = min(self.upper[k], hi[r])
        d = data.design
        self.p = len(d.labels)
        self.M = len(model.latent)
        self._row_kind = self._kinds()
        self._prepare_derivatives()
        self.blocks_oo = [np.ix_(pat.items, pat.items) for pat in data.patterns]

    def _covariance_blocks(self) -> None:
        """Which latent covariance blocks are parametrised by variances and covariances (as lavaan's Psi).

        A block qualifies when each of its correlations is free and shares its free number with no other row
        (a fixed or equal correlation is a constraint on the correlation scale, kept there).
        """
        counts = np.bincount(self.free, minlength=self.n_theta + 1)
        self.var_rows = self.residual.copy()
        self.cov_rows = np.zeros(len(self.free), dtype=bool)
        self.qualifies = []
        self._cov_pairs: dict[int, tuple[int, int]] = {}
        for block in self.model.blocks:
            ok = all(self.free[r] > 0 and counts[self.free[r]] == 1 for r in block.corr_rows)
            self.qualifies.append(ok)
            if not ok:
                continue
            self.var_rows[block.sd_rows] = True
            rows, cols = np.tril_indices(len(block.members), -1)
            for r, a, b in zip(block.corr_rows, rows, cols, strict=True):
                self.cov_rows[r] = True
                self._cov_pairs[int(r)] = (int(block.sd_rows[a]), int(block.sd_rows[b]))

    def _kinds(self) -> dict[int, tuple]:
        """What each partable row is in the model matrices (for the forward derivatives)."""
        kinds: dict[int, tuple] = {}
        for c, r in enumerate(self.model.beta_rows):
            kinds[int(r)] = ("beta", c)
        for m, lat in enumerate(self.model.latent):
            for q, r in enumerate(lat.loading_rows):
                kinds[int(r)] = ("loading", m, q)
        for i, j, r in self.model.B_entries:
            kinds[int(r)] = ("B", i, j)
        for bi, block in enumerate(self.model.blocks):
            q = self.qualifies[bi]
            for a, r in enumerate(block.sd_rows):
                kinds[int(r)] = ("lvar" if q else "sd", bi, a)
            rows, cols = np.tril_indices(len(block.members), -1)
            for r, a, b in zip(block.corr_rows, rows, cols, strict=True):
                kinds[int(r)] = ("lcov" if q else "corr", bi, int(a), int(b))
        for r in np.flatnonzero(self.residual):
            kinds[int(r)] = ("residual",)
        for a, b, r in self.data.rescov:
            kinds[int(r)] = ("rescov", a, b)
        return kinds

    def row_kind(self, row: int) -> str:
        """'beta', 'loading', 'B', 'sd', 'corr', 'lvar', 'lcov', 'residual' or 'rescov'."""
        return self._row_kind[row][0]

    # --- coordinates <-> partable values ------------------------------------------------------------------
    def coords(self, theta: np.ndarray) -> np.ndarray:
        """Per partable row: its coordinate (residual rows: the variance), from theta."""
        rv = self.fixed_coord.copy()
        rv[self.free_rows] = theta[self.free[self.free_rows] - 1]
        return rv

    def values(self, theta: np.ndarray) -> np.ndarray:
        """Natural partable values: SDs as signed square roots of the variances, correlations from covariances."""
        rv = self.coords(theta)
        out = rv.copy()
        out[self.var_rows] = np.sign(rv[self.var_rows]) * np.sqrt(np.abs(rv[self.var_rows]))
        for r, (sa, sb) in self._cov_pairs.items():
            scale = out[sa] * out[sb]  # signed roots: corr * sd_a * sd_b gives back the covariance
            out[r] = rv[r] / scale if scale != 0 else 0.0
        return out

    def theta_of(self, values: np.ndarray) -> np.ndarray:
        """Coordinates from natural partable values (inverse of `values`)."""
        theta = np.zeros(self.n_theta)
        for r in self.free_rows[::-1]:
            v = values[r]
            if self.var_rows[r]:
                v = np.sign(v) * v * v
            elif self.cov_rows[r]:
                sa, sb = self._cov_pairs[int(r)]
                v = v * values[sa] * values[sb]
            theta[self.free[r] - 1] = v
        return theta

    # --- implied moments -----------------------------------------------------------------------------------
    def implied(self, theta: np.ndarray) -> Implied:
        """mu, Sigma and the matrices behind them at theta."""
        rv = self.coords(theta)
        d, model = self.data.design, self.model
        mu = d.X @ rv[model.beta_rows] + d.offset
        Lambda = np.zeros((self.p, self.M))
        for m, lat in enumerate(model.latent):
            if lat.Z.shape[1]:
                Lambda[:, m] = d.Z[m] @ rv[lat.loading_rows]
        B = np.zeros((self.M, self.M))
        for i, j, r in model.B_entries:
            B[i, j] = rv[r]
        T = np.linalg.inv(np.eye(self.M) - B) if model.B_entries else np.eye(self.M)
        sd = rv[self._latent_sd_rows]
        R = np.eye(self.M)
        for r, a, b in self._corr_index:
            R[a, b] = R[b, a] = rv[r]
        Psi = np.outer(sd, sd) * R
        Psi[self._qvar_members, self._qvar_members] = rv[self._qvar_rows]
        Psi[self._qcov_a, self._qcov_b] = Psi[self._qcov_b, self._qcov_a] = rv[self._qcov_rows]
        Theta = np.diag(rv[d.scale_row])
        for a, b, r in self.data.rescov:
            Theta[a, b] = Theta[b, a] = rv[r]
        A = Lambda @ T
        Sigma = A @ Psi @ A.T + Theta
        return Implied(mu, Sigma, Lambda, T, Psi, Theta)

    def _prepare_derivatives(self) -> None:
        """Constant parts of the derivatives (item means, residual (co)variances) and index arrays for the rest."""
        d = self.data.design
        k, p = self.n_theta, self.p
        self.dmu_const = np.zeros((k, p))
        self.dS_const = np.zeros((k, p, p))
        outer: dict[str, list] = {"loading": [], "B": [], "sd": [], "corr": [], "lvar": [], "lcov": []}
        for r in self.free_rows:
            kk = self.free[r] - 1
            kind = self._row_kind[int(r)]
            tag = kind[0]
            if tag == "beta":
                self.dmu_const[kk] += d.X[:, kind[1]]
            elif tag == "residual":
                on = d.scale_row == r
                self.dS_const[kk][on, on] += 1.0
            elif tag == "rescov":
                self.dS_const[kk][kind[1], kind[2]] += 1.0
                self.dS_const[kk][kind[2], kind[1]] += 1.0
            elif tag == "sd":
                outer["sd"].append((kk, self.model.blocks[kind[1]].members[kind[2]]))
            elif tag in ("corr", "lcov"):
                block = self.model.blocks[kind[1]]
                outer[tag].append((kk, block.members[kind[2]], block.members[kind[3]]))
            elif tag == "lvar":
                outer["lvar"].append((kk, self.model.blocks[kind[1]].members[kind[2]]))
            else:
                outer[tag].append((kk,) + tuple(kind[1:]))
        self._load_k = np.array([o[0] for o in outer["loading"]], dtype=int)
        self._load_m = np.array([o[1] for o in outer["loading"]], dtype=int)
        self._load_v = (np.array([d.Z[o[1]][:, o[2]] for o in outer["loading"]]) if outer["loading"]
                        else np.zeros((0, p)))
        self._B = np.array([o for o in outer["B"]], dtype=int).reshape(-1, 3)
        self._sd = np.array(outer["sd"], dtype=int).reshape(-1, 2)
        self._corr = np.array(outer["corr"], dtype=int).reshape(-1, 3)
        self._lvar = np.array(outer["lvar"], dtype=int).reshape(-1, 2)
        self._lcov = np.array(outer["lcov"], dtype=int).reshape(-1, 3)
        ks = np.concatenate([self._load_k, self._B[:, 0], self._sd[:, 0], self._corr[:, 0], self._lvar[:, 0],
                             self._lcov[:, 0]])
        self._outer_map = np.zeros((k, len(ks)))
        self._outer_map[ks, np.arange(len(ks))] = 1.0
        self._latent_sd_rows = np.zeros(self.M, dtype=int)
        self._corr_index: list[tuple[int, int, int]] = []
        qvar, qcov = [], []
        for bi, block in enumerate(self.model.blocks):
            for a, r in zip(block.members, block.sd_rows, strict=True):
                self._latent_sd_rows[a] = r
                if self.qualifies[bi]:
                    qvar.append((a, int(r)))
            rows, cols = np.tril_indices(len(block.members), -1)
            for r, a, b in zip(block.corr_rows, rows, cols, strict=True):
                if self.qualifies[bi]:
                    qcov.append((block.members[a], block.members[b], int(r)))
                else:
                    self._corr_index.append((int(r), block.members[a], block.members[b]))
        self._qvar_members = np.array([a for a, _ in qvar], dtype=int)
        self._qvar_rows = np.array([r for _, r in qvar], dtype=int)
        self._qcov_a = np.array([a for a, _, _ in qcov], dtype=int)
        self._qcov_b = np.array([b for _, b, _ in qcov], dtype=int)
        self._qcov_rows = np.array([r for _, _, r in qcov], dtype=int)

    def derivatives(self, theta: np.ndarray, imp: Implied | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(dmu (k, p), dSigma (k, p, p)): derivatives of the implied moments in each coordinate."""
        imp = imp if imp is not None else self.implied(theta)
        rv = self.coords(theta)
        A = imp.Lambda @ imp.T
        U, W = [self._load_v], [(imp.Lambda @ imp.Phi)[:, self._load_m].T]
        if len(self._B):
            U.append(A[:, self._B[:, 1]].T)
            W.append((A @ imp.Psi @ imp.T[self._B[:, 2], :].T).T)
        if len(self._sd) or len(self._corr):
            sd = rv[self._latent_sd_rows]
            R = np.eye(self.M)
            for r, a, b in self._corr_index:
                R[a, b] = R[b, a] = rv[r]
        if len(self._sd):
            U.append(A[:, self._sd[:, 1]].T)
            W.append((A @ (sd[:, None] * R[:, self._sd[:, 1]])).T)
        if len(self._corr):
            a, b = self._corr[:, 1], self._corr[:, 2]
            U.append(A[:, a].T * (sd[a] * sd[b])[:, None])
            W.append(A[:, b].T)
        if len(self._lvar):
            U.append(A[:, self._lvar[:, 1]].T)
            W.append(0.5 * A[:, self._lvar[:, 1]].T)
        if len(self._lcov):
            U.append(A[:, self._lcov[:, 1]].T)
            W.append(A[:, self._lcov[:, 2]].T)
        Uall, Wall = np.concatenate(U), np.concatenate(W)
        outer = Uall[:, :, None] * Wall[:, None, :]
        outer = outer + outer.transpose(0, 2, 1)
        dS = self.dS_const + (self._outer_map @ outer.reshape(len(outer), -1)).reshape(self.n_theta, self.p, self.p)
        return self.dmu_const, dS


@dataclass(frozen=True)
class Evaluation:
    """Log likelihood at theta, with its gradient and expected information when asked for."""

    loglik: float
    grad: np.ndarray | None = None
    info: np.ndarray | None = None
    implied: Implied | None = None


def evaluate(mm: MomentsModel, theta: np.ndarray, grad: bool = False, info: bool = False) -> Evaluation:
    """Log likelihood over the patterns (-inf where the implied covariance is not positive definite)."""
    imp = mm.implied(theta)
    p = mm.p
    G = np.zeros((p, p))
    gmu = np.zeros(p)
    ll = 0.0
    need = grad or info
    info_m = None
    if not mm.data.complete:  # the whole implied covariance must be one, not only its observed blocks
        try:
            np.linalg.cholesky(imp.Sigma)
        except np.linalg.LinAlgError:
            return Evaluation(-np.inf, implied=imp)
    if need:
        dmu, dS = mm.derivatives(theta, imp)
        info_m = np.zeros((mm.n_theta, mm.n_theta)) if info else None
    for pat, oo in zip(mm.data.patterns, mm.blocks_oo, strict=True):
        o = pat.items
        S_oo = imp.Sigma[oo]
        try:
            C = np.linalg.cholesky(S_oo)
        except np.linalg.LinAlgError:
            return Evaluation(-np.inf, implied=imp)
        Cinv = np.linalg.inv(C)
        Si = Cinv.T @ Cinv
        dev = pat.mean - imp.mu[o]
        logdet = 2.0 * float(np.sum(np.log(np.diag(C))))
        ll -= 0.5 * pat.n * (len(o) * LOG2PI + logdet + float(np.sum(Si * pat.cov)) + float(dev @ Si @ dev))
        if not need:
            continue
        Sid = Si @ dev
        if grad:
            Gg = 0.5 * pat.n * (Si @ (pat.cov + np.outer(dev, dev)) @ Si - Si)
            G[oo] += Gg
            gmu[o] += pat.n * Sid
        if info:
            dSo = dS[:, o][:, :, o]
            Ak = (Si @ dSo).reshape(len(dSo), -1)
            AkT = (dSo @ Si).reshape(len(dSo), -1)
            info_m += 0.5 * pat.n * (Ak @ AkT.T)
            dmo = dmu[:, o]
            info_m += pat.n * dmo @ Si @ dmo.T
    g = None
    if grad:
        g = np.einsum("kij,ij->k", dS, G) + dmu @ gmu
    return Evaluation(float(ll), g, info_m, imp)
