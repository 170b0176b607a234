"""The profiled ML/REML deviance and its gradient straight from the optimiser's coordinates, for ordinary LMMs.

For the common linear mixed model (sigma profiled, loadings fixed, no
structural paths, no residual structure, one residual class) the loading
maps H_l of likelihood/gaussian/design.py are affine in the optimiser's
coordinates phi: relative SDs and the entries of lower Cholesky factors
(lme4's theta) enter lme4's Lambda linearly. With h = vec(H_1, H_2, ...) =
h0 + J phi (h0 = 0 for the models served today) taken once (estimate/gaussian_affine.py), one evaluation needs no
parameter table, model matrices or adjoint chain: the criterion comes from
fixed cross products and its gradient is J' dD/dh. The cross products of
F = [X, y~] and the fixed map E = I are those of deviance.py with unit
weight, so

    M = I + A'A,   R = A'F,   S = F'F - R'M^-1R,   A = Xi Hb,

and, with P the Schur coefficients (gradient.py), G_M = M^-1 + UPU', U = M^-1R,

    dD/dHb = 2 Xi'Xi Hb G_M - 2 Xi'F (UP)'.

Three kernels evaluate them:

- `OneLevel`: a single grouping level makes M block diagonal, one k x k
  block per unit from the unit's Grams Z_j'Z_j and Z_j'F; every step is one
  2-D product or elementwise operation over all units (closed-form inverses
  for one or two effects per unit), no loop over units;
- `Dense`: several levels with few random effects in all: M dense from
  small_dense.py's Grams, Hb scattered straight from h;
- `Blocked`: a first level of many units beside few other random effects
  (crossed or nested): the first level unit by unit as in `OneLevel`, the
  rest dense, joined through the Schur complement of the first level.

The profiling of beta and sigma is deviance.py's `profile_schur` written
for this case (ML and REML), with the coefficients P of gradient.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import LOG_2PI, Profiled
from mlmrun.likelihood.gaussian.small_dense import DenseSmall, dense_small, loading_design
from mlmrun.likelihood.sparse.spd import spd_inverse

DENSE_AFFINE_MAX = 128
"""Most random effects (and loading-design columns) for which `Dense` serves a model with several levels
(and `Blocked` the levels after the first)."""
BLOCKED_CROSS_MAX = 2_000_000
"""Most entries of the first level's cross products with the other levels (Z_aj'Xi_r of every unit) for `Blocked`."""


@dataclass(frozen=True)
class AffineMaps:
    """h = vec(H_1, H_2, ...) = offset + jacobian @ phi, each H_l (K_l x k_l) raveled by rows."""

    offset: np.ndarray
    jacobian: np.ndarray
    """(len(h), n_phi)."""
    shapes: tuple[tuple[int, int], ...]

    def flat(self, phi: np.ndarray) -> np.ndarray:
        """h at phi."""
        return self.offset + self.jacobian @ phi

    def maps(self, phi: np.ndarray) -> list[np.ndarray]:
        """The loading maps H_l at phi."""
        h, out, start = self.flat(phi), [], 0
        for K, k in self.shapes:
            out.append(h[start:start + K * k].reshape(K, k))
            start += K * k
        return out


def _unit_inverse(M: np.ndarray) -> tuple[np.ndarray, float]:
    """(I + M_j)^-1 for every unit block M_j (u, k, k) and sum_j log|I + M_j| (LinAlgError where not PD).

    One and two effects per unit are written out: stacked small LAPACK calls
    cost far more than a few elementwise operations over the units.
    """
    k = M.shape[1]
    if k == 1:
        m = M[:, 0, 0] + 1.0
        if (m <= 0).any():
            raise np.linalg.LinAlgError("M is not positive definite")
        return (1.0 / m)[:, None, None], float(np.log(m).sum())
    if k == 2:
        a, b, d = M[:, 0, 0] + 1.0, M[:, 0, 1], M[:, 1, 1] + 1.0
        det = a * d - b * b
        if (a <= 0).any() or (det <= 0).any():
            raise np.linalg.LinAlgError("M is not positive definite")
        inv = np.empty_like(M)
        inv[:, 0, 0], inv[:, 1, 1] = d / det, a / det
        inv[:, 0, 1] = inv[:, 1, 0] = -b / det
        return inv, float(np.log(det).sum())
    M = M + np.eye(k)
    chol = np.linalg.cholesky(M)
    return np.linalg.inv(M), 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())


def _unit_apply(Minv: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Minv_j @ B_j for every unit (Minv (u, k, k), B (u, k, m))."""
    k = Minv.shape[1]
    if k == 1:
        return Minv * B
    if k == 2:
        out = np.empty_like(B)
        out[:, 0] = Minv[:, 0, 0, None] * B[:, 0] + Minv[:, 0, 1, None] * B[:, 1]
        out[:, 1] = Minv[:, 1, 0, None] * B[:, 0] + Minv[:, 1, 1, None] * B[:, 1]
        return out
    return Minv @ B


def _unit_outer(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """X_j @ Y_j' for every unit (X, Y (u, k, m))."""
    k = X.shape[1]
    if k <= 2:
        out = np.empty((X.shape[0], k, k))
        for i in range(k):
            for j in range(k):
                out[:, i, j] = (X[:, i] * Y[:, j]).sum(axis=1)
        return out
    return X @ np.swapaxes(Y, 1, 2)


class OneLevel:
    """One grouping level: M = I + H'(Z_j'Z_j)H per unit, all units at once."""

    def __init__(self, design: GaussianDesign):
        lv = design.levels[0]
        xi, F, u = lv.xi, design.F, lv.n_units
        K, c = xi.shape[1], F.shape[1]
        if design.raw:  # the design's raw sums are these Grams (one residual class)
            self.S, self.SF, self.FF = design.S[0][:, 0], design.SF[0][:, 0], design.FF[0]
        else:
            agg = _unit_sum(lv.codes, u)
            self.S = np.asarray(agg @ (xi[:, :, None] * xi[:, None, :]).reshape(len(xi), -1)).reshape(u, K, K)
            self.SF = np.asarray(agg @ (xi[:, :, None] * F[:, None, :]).reshape(len(xi), -1)).reshape(u, K, c)
            self.FF = F.T @ F
        self.u, self.K, self.c = u, K, c
        self._S_rows = self.S.reshape(u * K, K)
        self._SF_cols = np.ascontiguousarray(np.swapaxes(self.SF, 1, 2)).reshape(u * c, K)
        self._SF_by_col = np.ascontiguousarray(np.swapaxes(self.SF, 0, 1)).reshape(K, u * c)

    def blocks(self, Hl: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
        """A_j = S_j H, (I + H'S_jH)^-1, its log-determinant, R_j = H'Z_j'F and U_j = M_j^-1 R_j."""
        u, K, c = self.u, self.K, self.c
        k = Hl.shape[1]
        A = (self._S_rows @ Hl).reshape(u, K, k)
        Minv, logdet = _unit_inverse((np.swapaxes(A, 1, 2).reshape(u * k, K) @ Hl).reshape(u, k, k))
        R = np.swapaxes((self._SF_cols @ Hl).reshape(u, c, k), 1, 2)
        return A, Minv, logdet, R, _unit_apply(Minv, R)

    def system(self, H: list[np.ndarray]) -> tuple[np.ndarray, float, tuple]:
        """S = F'F - sum_j R_j'M_j^-1R_j, log|M| and what the gradient reuses (LinAlgError where M is not PD).

        Products with H are single 2-D matrix products over all units' stacked
        Grams (stacked small matmuls cost far more).
        """
        A, Minv, logdet, R, U = self.blocks(H[0])
        u, k, c = self.u, U.shape[1], self.c
        S = self.FF - R.reshape(u * k, c).T @ U.reshape(u * k, c)
        return 0.5 * (S + S.T), logdet, (A, Minv, U)

    def unit_gradient(self, A: np.ndarray, G_M: np.ndarray, UP: np.ndarray) -> np.ndarray:
        """sum_j 2 A_j G_M,j - 2 Z_j'F (U_jP)': this level's dD/dH from its own blocks."""
        u, K, c = self.u, self.K, self.c
        k = G_M.shape[1]
        dH = 2.0 * (np.swapaxes(A, 0, 1).reshape(K, u * k) @ G_M.reshape(u * k, k))
        dH -= 2.0 * (self._SF_by_col @ np.swapaxes(UP, 1, 2).reshape(u * c, k))
        return dH

    def gradient(self, pieces: tuple, P: np.ndarray) -> np.ndarray:
        """dD/dh (H raveled by rows) from the Schur coefficients P."""
        A, Minv, U = pieces
        u, k, c = self.u, U.shape[1], self.c
        UP = (U.reshape(u * k, c) @ P).reshape(u, k, c)
        return self.unit_gradient(A, Minv + _unit_outer(UP, U), UP).ravel()


def _unit_sum(codes: np.ndarray, n_units: int) -> sp.csr_matrix:
    """Sparse (units x rows) summing each unit's rows."""
    return sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(n_units, len(codes)))


class Dense:
    """Several levels, few random effects: M = I + Hb'(Xi'Xi)Hb dense, Hb scattered from h.

    With one loading column per random effect (random intercepts, crossed or
    nested) Hb is diagonal, and its products are scalings (`diagonal`).
    """

    def __init__(self, design: GaussianDesign):
        plan = dense_small(design) or DenseSmall.build(design)
        self.XX, self.XF, self.FF = plan.XX, plan.XF, plan.FF
        self.rows, self.cols, self.source = plan.rows, plan.cols, plan.source
        self.q = plan.q
        self.shapes = plan.shapes
        self.n_h = sum(K * k for _, K, k in plan.shapes)
        self.diagonal = all(K == k == 1 for _, K, k in plan.shapes)

    def system(self, H: list[np.ndarray]) -> tuple[np.ndarray, float, tuple]:
        """S = F'F - R'M^-1R, log|M| and what the gradient reuses (LinAlgError where M is not PD)."""
        h = np.concatenate([Hl.ravel() for Hl in H])
        if self.diagonal:
            d = h[self.source]
            XXHb = self.XX * d
            M = d[:, None] * XXHb
            R = d[:, None] * self.XF
        else:
            Hb = np.zeros((len(self.XX), self.q))
            Hb[self.rows, self.cols] = h[self.source]
            XXHb = self.XX @ Hb
            M = Hb.T @ XXHb
            R = Hb.T @ self.XF
        M.flat[::self.q + 1] += 1.0
        Minv, logdet = spd_inverse(M)
        U = Minv @ R
        S = self.FF - R.T @ U
        return 0.5 * (S + S.T), logdet, (XXHb, Minv, U)

    def gradient(self, pieces: tuple, P: np.ndarray) -> np.ndarray:
        """dD/dh from the Schur coefficients P: dD/dHb summed over the units sharing each entry of h."""
        XXHb, Minv, U = pieces
        UP = U @ P
        if self.diagonal:
            G_M = Minv + UP @ U.T
            dHb = 2.0 * (XXHb * G_M).sum(axis=1) - 2.0 * (self.XF * UP).sum(axis=1)
            return np.bincount(self.source, weights=dHb, minlength=self.n_h)
        dHb = 2.0 * (XXHb @ (Minv + UP @ U.T)) - 2.0 * (self.XF @ UP.T)
        return np.bincount(self.source, weights=dHb[self.rows, self.cols], minlength=self.n_h)


class Blocked:
    """A first level of many units eliminated unit by unit, the other levels (few random effects) dense.

    With a = the first level (block diagonal A = I + H_a'S_jH_a), r = the
    rest (dense M_rr from Xi_r'Xi_r) and C_j = H_a'(Z_aj'Xi_r)Hb_r the
    coupling of unit j to them, M = [A C; C' M_rr] is factored through
    W_j = A_j^-1 C_j and T = M_rr - sum_j C_j'W_j; its inverse on the blocks
    the gradient needs is A_j^-1 + W_j T^-1 W_j', -W_j T^-1 and T^-1.
    """

    def __init__(self, design: GaussianDesign):
        self.level = OneLevel(design)
        Xr, self.rows, self.cols, self.source, shapes = loading_design(design.levels[1:], design.n)
        self.Kq, self.q, self.n_h = Xr.shape[1], sum(u * k for u, _, k in shapes), sum(K * k for _, K, k in shapes)
        self.XX, self.XF = (Xr.T @ Xr).toarray(), np.asarray(Xr.T @ design.F)
        Za = loading_design(design.levels[:1], design.n)[0]
        self.X_ar = (Za.T @ Xr).toarray()
        """Z_aj'Xi_r of every unit j, stacked by rows (u_a K_a x Kq_r)."""

    def system(self, H: list[np.ndarray]) -> tuple[np.ndarray, float, tuple]:
        """S = F'F - R'M^-1R, log|M| and what the gradient reuses (LinAlgError where M is not PD)."""
        lvl = self.level
        Ha = H[0]
        u, K, c = lvl.u, lvl.K, lvl.c
        ka, q = Ha.shape[1], self.q
        A, Ainv, logdet_a, Ra, Ua0 = lvl.blocks(Ha)
        h = np.concatenate([Hl.ravel() for Hl in H[1:]])
        Hb = np.zeros((self.Kq, q))
        Hb[self.rows, self.cols] = h[self.source]
        XXHb = self.XX @ Hb
        Y = (self.X_ar @ Hb).reshape(u, K, q)
        C = np.swapaxes((np.swapaxes(Y, 1, 2).reshape(u * q, K) @ Ha).reshape(u, q, ka), 1, 2)
        W = _unit_apply(Ainv, C)
        W_flat = W.reshape(u * ka, q)
        T = Hb.T @ XXHb - C.reshape(u * ka, q).T @ W_flat
        T.flat[::q + 1] += 1.0
        Tinv, logdet_t = spd_inverse(T)
        logdet = logdet_a + logdet_t
        Rr = Hb.T @ self.XF
        Ra_flat = Ra.reshape(u * ka, c)
        Ur = Tinv @ (Rr - W_flat.T @ Ra_flat)
        Ua = Ua0 - (W_flat @ Ur).reshape(u, ka, c)
        S = lvl.FF - Ra_flat.T @ Ua.reshape(u * ka, c) - Rr.T @ Ur
        return 0.5 * (S + S.T), logdet, (A, Ainv, Ua, Ur, W, Tinv, Y, Hb, XXHb, Ha)

    def gradient(self, pieces: tuple, P: np.ndarray) -> np.ndarray:
        """dD/dh: the first level's dD/dH_a, then the other levels' entries summed over their units."""
        A, Ainv, Ua, Ur, W, Tinv, Y, Hb, XXHb, Ha = pieces
        lvl = self.level
        u, K, c = lvl.u, lvl.K, lvl.c
        ka, q = Ha.shape[1], self.q
        UPa = (Ua.reshape(u * ka, c) @ P).reshape(u, ka, c)
        UPr = Ur @ P
        WT = (W.reshape(u * ka, q) @ Tinv).reshape(u, ka, q)
        G_aa = Ainv + _unit_outer(WT, W) + _unit_outer(UPa, Ua)
        G_ar = (-WT.reshape(u * ka, q) + UPa.reshape(u * ka, c) @ Ur.T).reshape(u, ka, q)
        G_rr = Tinv + UPr @ Ur.T
        dHa = lvl.unit_gradient(A, G_aa, UPa)
        dHa += 2.0 * (np.swapaxes(Y, 0, 1).reshape(K, u * q) @ np.swapaxes(G_ar, 1, 2).reshape(u * q, ka))
        HG = (np.swapaxes(G_ar, 1, 2).reshape(u * q, ka) @ Ha.T).reshape(u, q, K)
        dHb = 2.0 * (XXHb @ G_rr + self.X_ar.T @ np.swapaxes(HG, 1, 2).reshape(u * K, q)) - 2.0 * (self.XF @ UPr.T)
        dh = np.bincount(self.source, weights=dHb[self.rows, self.cols], minlength=self.n_h)
        return np.concatenate([dHa.ravel(), dh])


def choose_kernel(design: GaussianDesign) -> OneLevel | Dense | Blocked | None:
    """`OneLevel` for one grouping level, `Dense` for few random effects, `Blocked` for one level of many units
    beside few other random effects, else None (the general path)."""
    if len(design.levels) == 1:
        return OneLevel(design)
    q = sum(lv.n_units * len(lv.members) for lv in design.levels)
    Kq = sum(lv.n_units * lv.xi.shape[1] for lv in design.levels)
    if 0 < q <= DENSE_AFFINE_MAX and Kq <= DENSE_AFFINE_MAX:
        return Dense(design)
    first = design.levels[0]
    q_rest = q - first.n_units * len(first.members)
    Kq_rest = Kq - first.n_units * first.xi.shape[1]
    if 0 < q_rest <= DENSE_AFFINE_MAX and Kq_rest <= DENSE_AFFINE_MAX and first.n_units * first.xi.shape[1] * Kq_rest <= BLOCKED_CROSS_MAX:
        return Blocked(design)
    return None


class AffineKernel:
    """Profiled deviance (ML or REML, sigma and beta profiled) and its gradient in phi, from `AffineMaps`."""

    def __init__(self, design: GaussianDesign, maps: AffineMaps, kernel: OneLevel | Dense | Blocked, reml: bool):
        self.maps, self.kernel, self.reml = maps, kernel, reml
        self.n, self.p = design.n, design.p
        self.beta_shift = design.beta_shift

    def _profile(self, S: np.ndarray, logdet: float) -> tuple[Profiled, np.ndarray, np.ndarray | None]:
        """deviance.profile_schur with sigma profiled and log|S| = 0; also delta and (REML) (X'V^-1X)^-1."""
        p = self.p
        dof = self.n - p if self.reml else self.n
        xtvx = S[:p, :p]
        Q = None
        if p:
            Q, logdet_x = spd_inverse(xtvx)
            delta = Q @ S[:p, p]
        else:
            logdet_x, delta = 0.0, np.zeros(0)
        r2 = max(float(S[p, p] - S[:p, p] @ delta), 1e-300)
        sigma2 = r2 / dof
        extra = logdet_x if self.reml else 0.0
        deviance = logdet + extra + dof * (1.0 + LOG_2PI + np.log(sigma2))
        prof = Profiled(float(deviance), self.beta_shift + delta, float(np.sqrt(sigma2)), logdet, xtvx)
        return prof, delta, Q

    def profiled(self, phi: np.ndarray) -> Profiled:
        """The profiled pieces at phi (raises LinAlgError where M or X'V^-1X is not positive definite)."""
        S, logdet, _ = self.kernel.system(self.maps.maps(phi))
        return self._profile(S, logdet)[0]

    def value_and_grad(self, phi: np.ndarray) -> tuple[Profiled, np.ndarray]:
        """The profiled pieces and dD/dphi at phi (raises LinAlgError as `profiled`)."""
        S, logdet, pieces = self.kernel.system(self.maps.maps(phi))
        prof, delta, Q = self._profile(S, logdet)
        p = self.p
        e = np.concatenate([-delta, [1.0]])
        dof = self.n - p if self.reml else self.n
        P = self._coefficients(e, dof / max(float(e @ S @ e), 1e-300), Q)
        return prof, self.maps.jacobian.T @ self.kernel.gradient(pieces, P)

    def _coefficients(self, e: np.ndarray, scale: float, Q: np.ndarray | None) -> np.ndarray:
        """The Schur coefficients P = scale ee' (1/sigma^2 ee'), plus Q = (X'V_rel^-1X)^-1 on the fixed block
        under REML (the gradient of log|X'V_rel^-1X|)."""
        P = scale * (e[:, None] * e[None, :])
        if self.reml and Q is not None:
            p = self.p
            P[:p, :p] += Q
        return P

    def fixed_sigma_gradient(self, phi: np.ndarray, sigma2: float) -> tuple[np.ndarray, float]:
        """dD/dphi and dD/dlog sigma of the deviance with beta profiled and sigma held at sqrt(sigma2).

        With V = sigma^2 (I + A A'), beta profiled and sigma fixed (deviance.py's `profiled(...,
        profile_sigma=False)`), D = const + log|M| [+ log|X'V_rel^-1X|] + r2/sigma^2 + 2 dof log sigma
        (r2 = e'Se, e = [-delta, 1], dof = n - p under REML, else n). By the envelope theorem dr2 = e'dSe and
        dlog|X'V_rel^-1X| = tr(Q dS_xx), so dD/dphi = J' dD/dh with P = ee'/sigma^2 [+ Q], and
        dD/dlog sigma = 2 dof - 2 r2/sigma^2. Raises LinAlgError as `profiled`.
        """
        S, logdet, pieces = self.kernel.system(self.maps.maps(phi))
        _, delta, Q = self._profile(S, logdet)
        p = self.p
        e = np.concatenate([-delta, [1.0]])
        r2 = float(e @ S @ e)
        dof = self.n - p if self.reml else self.n
        return (self.maps.jacobian.T @ self.kernel.gradient(pieces, self._coefficients(e, 1.0 / sigma2, Q)),
                2.0 * dof - 2.0 * r2 / sigma2)

    def log_sigma_curvature(self, phi: np.ndarray, sigma2: float) -> tuple[np.ndarray, float]:
        """The log sigma row of `fixed_sigma_gradient`'s Hessian, exactly: (d2D/ds dphi, d2D/ds2), s = log sigma.

        D depends on s only through r2 e^-2s + 2 dof s, and the kernel's gradient is affine in P, so
        d2D/ds dphi = -2/sigma^2 J'(g(ee') - g(0)) and d2D/ds2 = 4 r2/sigma^2. Raises LinAlgError as `profiled`.
        """
        S, logdet, pieces = self.kernel.system(self.maps.maps(phi))
        _, delta, _ = self._profile(S, logdet)
        e = np.concatenate([-delta, [1.0]])
        c = len(e)
        dr2 = self.maps.jacobian.T @ (self.kernel.gradient(pieces, e[:, None] * e[None, :])
                                      - self.kernel.gradient(pieces, np.zeros((c, c))))
        return -2.0 * dr2 / sigma2, 4.0 * float(e @ S @ e) / sigma2

    def level_posteriors(self, phi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Per design level, each unit's M^-1 R e and its own block of M^-1, (u, k) and (u, k, k); None for
        `Blocked` (its M^-1 is not formed).

        With r = F e the residual at the profiled beta (e = [-delta, 1]), the posterior of the standardised
        disturbances given the data (likelihood/gaussian/deviance.py) has mean M^-1 A'r/sigma^2 and
        covariance M^-1; on this relative scale A = sigma A_rel and M = M_rel, so the mean is the first
        piece divided by sigma. `OneLevel` holds the unit blocks; `Dense` the whole M^-1, whose
        coefficients are laid out level by level, unit by unit (small_dense.DenseSmall).
        """
        if not isinstance(self.kernel, (OneLevel, Dense)):
            return None
        S, logdet, (_, Minv, U) = self.kernel.system(self.maps.maps(phi))
        _, delta, _ = self._profile(S, logdet)
        e = np.concatenate([-delta, [1.0]])
        if isinstance(self.kernel, OneLevel):
            return [(U @ e, Minv)]
        u = U @ e
        out, start = [], 0
        for n_units, _, k in self.kernel.shapes:
            idx = start + np.arange(n_units * k).reshape(n_units, k)
            out.append((u[idx], Minv[idx[:, :, None], idx[:, None, :]]))
            start += n_units * k
        return out
