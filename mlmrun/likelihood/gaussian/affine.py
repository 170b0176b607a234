"""The profiled ML/REML deviance and its gradient straight from the optimiser's coordinates, for ordinary LMMs.

For the common linear mixed model (sigma profiled, loadings fixed, no
structural paths, no residual structure, one residual class) the loading
maps H_l of likelihood/gaussian/design.py are affine in the optimiser's
coordinates phi: relative SDs and the entries of lower Cholesky factors
(lme4's theta) enter lme4's Lambda linearly. With h = vec(H_1, H_2, ...) =
h0 + J phi taken once (estimate/gaussian_affine.py), one evaluation needs no
parameter table, model matrices or adjoint chain: the criterion comes from
fixed cross products and its gradient is J' dD/dh. The cross products of
F = [X, y~] and the fixed map E = I are those of deviance.py with unit
weight, so

    M = I + A'A,   R = A'F,   S = F'F - R'M^-1R,   A = Xi Hb,

and, with P the Schur coefficients (gradient.py), G_M = M^-1 + UPU', U = M^-1R,

    dD/dHb = 2 Xi'Xi Hb G_M - 2 Xi'F (UP)'.

Two kernels evaluate them:

- `OneLevel`: a single grouping level makes M block diagonal, one k x k
  block per unit from the unit's Grams Z_j'Z_j and Z_j'F; every step is one
  batched numpy call over the units (stacked Cholesky, matmul), no loop;
- `Dense`: several levels with few random effects in all: M dense from
  small_dense.py's Grams, Hb scattered straight from h.

The profiling of beta and sigma is deviance.py's `profile_schur` written
for this case (ML and REML), with the coefficients P of gradient.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import LOG_2PI, Profiled
from mlmrun.likelihood.gaussian.small_dense import DenseSmall, dense_small

DENSE_AFFINE_MAX = 128
"""Most random effects (and loading-design columns) for which `Dense` serves a model with several levels."""


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


class OneLevel:
    """One grouping level: M = I + H'(Z_j'Z_j)H per unit, all units at once."""

    def __init__(self, design: GaussianDesign):
        lv = design.levels[0]
        xi, F, u = lv.xi, design.F, lv.n_units
        K, c = xi.shape[1], F.shape[1]
        if design.raw:  # the design's raw sums are these Grams (one residual class)
            self.S, self.SF, self.FF = design.S[0][:, 0], design.SF[0][:, 0], design.FF[0]
        else:
            agg = sp.csr_matrix((np.ones(len(lv.codes)), (lv.codes, np.arange(len(lv.codes)))),
                                shape=(u, len(lv.codes)))
            self.S = np.asarray(agg @ (xi[:, :, None] * xi[:, None, :]).reshape(len(xi), -1)).reshape(u, K, K)
            self.SF = np.asarray(agg @ (xi[:, :, None] * F[:, None, :]).reshape(len(xi), -1)).reshape(u, K, c)
            self.FF = F.T @ F
        self.u, self.K, self.c = u, K, c
        self._S_rows = self.S.reshape(u * K, K)
        self._SF_cols = np.ascontiguousarray(np.swapaxes(self.SF, 1, 2)).reshape(u * c, K)
        self._SF_by_col = np.ascontiguousarray(np.swapaxes(self.SF, 0, 1)).reshape(K, u * c)

    def system(self, H: list[np.ndarray]) -> tuple[np.ndarray, float, tuple]:
        """S = F'F - sum_j R_j'M_j^-1R_j, log|M| and what the gradient reuses (LinAlgError where M is not PD).

        Products with H are single 2-D matrix products over all units' stacked
        Grams (stacked small matmuls cost far more); M_j^-1 and U_j = M_j^-1 R_j
        are written out for one or two random effects per unit.
        """
        Hl = H[0]
        u, K, c = self.u, self.K, self.c
        k = Hl.shape[1]
        A = (self._S_rows @ Hl).reshape(u, K, k)
        M = (np.swapaxes(A, 1, 2).reshape(u * k, K) @ Hl).reshape(u, k, k)
        Rt = (self._SF_cols @ Hl).reshape(u, c, k)
        if k == 1:
            m = M[:, 0, 0] + 1.0
            if (m <= 0).any():
                raise np.linalg.LinAlgError("M is not positive definite")
            logdet = float(np.log(m).sum())
            Minv = (1.0 / m)[:, None, None]
            U = np.swapaxes(Rt, 1, 2) * Minv
        elif k == 2:
            a, b, d = M[:, 0, 0] + 1.0, M[:, 0, 1], M[:, 1, 1] + 1.0
            det = a * d - b * b
            if (a <= 0).any() or (det <= 0).any():
                raise np.linalg.LinAlgError("M is not positive definite")
            logdet = float(np.log(det).sum())
            Minv = np.empty((u, 2, 2))
            Minv[:, 0, 0], Minv[:, 1, 1] = d / det, a / det
            Minv[:, 0, 1] = Minv[:, 1, 0] = -b / det
            R0, R1 = Rt[:, :, 0], Rt[:, :, 1]
            U = np.empty((u, 2, c))
            U[:, 0] = Minv[:, 0, 0, None] * R0 + Minv[:, 0, 1, None] * R1
            U[:, 1] = Minv[:, 1, 0, None] * R0 + Minv[:, 1, 1, None] * R1
        else:
            M[:, np.arange(k), np.arange(k)] += 1.0
            chol = np.linalg.cholesky(M)
            logdet = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
            Minv = np.linalg.inv(M)
            U = Minv @ np.swapaxes(Rt, 1, 2)
        S = self.FF - np.swapaxes(Rt, 0, 1).reshape(c, u * k) @ U.reshape(u * k, c)
        return 0.5 * (S + S.T), logdet, (A, Minv, U)

    def gradient(self, pieces: tuple, P: np.ndarray) -> np.ndarray:
        """dD/dh (H raveled by rows) from the Schur coefficients P."""
        A, Minv, U = pieces
        u, K, c = self.u, self.K, self.c
        k = U.shape[1]
        UP = (U.reshape(u * k, c) @ P).reshape(u, k, c)
        if k == 1:
            G_M = Minv + (UP[:, 0] * U[:, 0]).sum(axis=1)[:, None, None]
        elif k == 2:
            G_M = Minv.copy()
            G_M[:, 0, 0] += (UP[:, 0] * U[:, 0]).sum(axis=1)
            G_M[:, 1, 1] += (UP[:, 1] * U[:, 1]).sum(axis=1)
            off = (UP[:, 0] * U[:, 1]).sum(axis=1)
            G_M[:, 0, 1] += off
            G_M[:, 1, 0] += off
        else:
            G_M = Minv + UP @ np.swapaxes(U, 1, 2)
        dH = 2.0 * (np.swapaxes(A, 0, 1).reshape(K, u * k) @ G_M.reshape(u * k, k))
        dH -= 2.0 * (self._SF_by_col @ np.swapaxes(UP, 1, 2).reshape(u * c, k))
        return dH.ravel()


class Dense:
    """Several levels, few random effects: M = I + Hb'(Xi'Xi)Hb dense, Hb scattered from h."""

    def __init__(self, design: GaussianDesign):
        plan = dense_small(design) or DenseSmall.build(design)
        self.XX, self.XF, self.FF = plan.XX, plan.XF, plan.FF
        self.rows, self.cols, self.source = plan.rows, plan.cols, plan.source
        self.q = plan.q
        self.n_h = sum(K * k for _, K, k in plan.shapes)

    def system(self, H: list[np.ndarray]) -> tuple[np.ndarray, float, tuple]:
        """S = F'F - R'M^-1R, log|M| and what the gradient reuses (LinAlgError where M is not PD)."""
        h = np.concatenate([Hl.ravel() for Hl in H])
        Hb = np.zeros((len(self.XX), self.q))
        Hb[self.rows, self.cols] = h[self.source]
        XXHb = self.XX @ Hb
        M = Hb.T @ XXHb
        M[np.diag_indices_from(M)] += 1.0
        chol = np.linalg.cholesky(M)
        logdet = 2.0 * float(np.sum(np.log(np.diag(chol))))
        R = Hb.T @ self.XF
        Minv = np.linalg.inv(M)
        U = Minv @ R
        S = self.FF - R.T @ U
        return 0.5 * (S + S.T), logdet, (XXHb, Minv, U)

    def gradient(self, pieces: tuple, P: np.ndarray) -> np.ndarray:
        """dD/dh from the Schur coefficients P: dD/dHb summed over the units sharing each entry of h."""
        XXHb, Minv, U = pieces
        UP = U @ P
        dHb = 2.0 * (XXHb @ (Minv + UP @ U.T)) - 2.0 * (self.XF @ UP.T)
        return np.bincount(self.source, weights=dHb[self.rows, self.cols], minlength=self.n_h)


def choose_kernel(design: GaussianDesign) -> OneLevel | Dense | None:
    """`OneLevel` for one grouping level, `Dense` for few random effects, else None (the general path)."""
    if len(design.levels) == 1:
        return OneLevel(design)
    q = sum(lv.n_units * len(lv.members) for lv in design.levels)
    Kq = sum(lv.n_units * lv.xi.shape[1] for lv in design.levels)
    if 0 < q <= DENSE_AFFINE_MAX and Kq <= DENSE_AFFINE_MAX:
        return Dense(design)
    return None


class AffineKernel:
    """Profiled deviance (ML or REML, sigma and beta profiled) and its gradient in phi, from `AffineMaps`."""

    def __init__(self, design: GaussianDesign, maps: AffineMaps, kernel: OneLevel | Dense, reml: bool):
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
            chol = np.linalg.cholesky(xtvx)
            logdet_x = 2.0 * float(np.sum(np.log(np.diag(chol))))
            Linv = np.linalg.inv(chol)
            Q = Linv.T @ Linv
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
        P = (dof / max(float(e @ S @ e), 1e-300)) * (e[:, None] * e[None, :])
        if self.reml and Q is not None:
            P[:p, :p] += Q
        return prof, self.maps.jacobian.T @ self.kernel.gradient(pieces, P)
