"""Standard errors and the LR test of the exact Gaussian fit.

Standard errors follow Stata's `mixed` and lme4: the fixed effects get
(X'V^-1X)^-1; the other free coordinates the inverse Hessian of the
deviance/2 with beta profiled (or of the REML criterion), cross terms zero.
(For the pig random-intercept model this reproduces Stata's SEs of
var(_cons) and var(Residual) to 5 digits.) With free Gamma the mean depends
on non-beta parameters too, so the Hessian over every free coordinate (beta
included, nothing profiled) is inverted instead. Coordinates at a boundary
(an SD of 0, a correlation at +-1, or one whose SD is 0) have no SE: their
rows and columns of cov_free are NaN, so an sd() row at 0 and its derived
var() row are both reported without one (estimate/boundary.py says why).
The Hessian is taken by forward differences of the analytic gradient (one gradient per coordinate,
starting from the optimiser's gradient at the optimum carried to the natural coordinates,
`half_gradient_from_phi`); only where the selected
inverse is unavailable (sparse-LU remainder) by second differences of the
deviance. Ordinary LMMs fitted through the affine kernel (no coordinate at
a boundary) take it from the kernel instead (`kernel_hessian`): central
differences of the kernel's gradient in (phi, log sigma), carried to the
natural coordinates by the exact Jacobian of that map, at a fraction of the
general pipeline's cost per gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlmrun.compile.layout import tril
from mlmrun.compile.matrices import model_matrices, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.boundary import no_se_at_boundary
from mlmrun.estimate.gaussian_params import GaussianParams
from mlmrun.estimate.inference import covariance_from_hessian, hessian_from_gradient, lr_p_value, numeric_hessian
from mlmrun.estimate.lr_null import gaussian_null_loglik, tested_free
from mlmrun.likelihood.gaussian.affine import AffineKernel
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import Profiled, deviance_at, profiled, regression_loglik
from mlmrun.likelihood.gaussian.gradient import deviance_gradient, profiled_gradient
from mlmrun.likelihood.sparse import blocks as sparse_blocks

BOUNDARY = 1e-4
"""Relative SDs (SD / residual SD) below this count as zero (lme4's isSingular tolerance)."""
FORWARD_ABOVE = 0
"""More coordinates than this: forward instead of central differences of the gradient for a Hessian.

Zero: always forward. With an analytic gradient, forward differences at a
hundredth of the central step agree with central ones to ~1e-6 relative
(far inside the 4-5 significant digits SEs are reported to) for half the
gradients, the largest single cost after the optimum of a small model."""


def gradient_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, steps: np.ndarray,
                     g0: np.ndarray | None = None) -> np.ndarray:
    """Hessian by differences of an analytic gradient: central (2d gradients) up to FORWARD_ABOVE coordinates.

    Beyond (always, at FORWARD_ABOVE = 0), forward differences with steps a hundredth of the central ones
    (d gradients, d + 1 without g0) halve the cost; their relative error
    (~1e-6 with an analytic gradient) is far below what SEs and Newton steps need.
    """
    if len(x) <= FORWARD_ABOVE:
        return hessian_from_gradient(grad, x, steps)
    small = 0.01 * np.asarray(steps, float)
    g0 = np.asarray(grad(x) if g0 is None else g0, float)
    H = np.zeros((len(x), len(x)))
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = small[j]
        H[:, j] = (np.asarray(grad(x + e), float) - g0) / small[j]
    return 0.5 * (H + H.T)


@dataclass(frozen=True)
class Columns:
    """The partable columns the SE code reads, taken once per covariance."""

    free: np.ndarray
    block: np.ndarray
    names: np.ndarray

    @classmethod
    def of(cls, model: CompiledModel) -> Columns:
        pt = model.partable
        return cls(pt.column("free"), pt.column("block"), pt.names)

    @property
    def first_rows(self) -> np.ndarray:
        """First partable row of every free coordinate (free numbers 1..n_free)."""
        numbers, first = np.unique(self.free, return_index=True)
        return first[numbers > 0]


def _hessian_steps(model: CompiledModel, free: np.ndarray, idx: np.ndarray, values: np.ndarray,
                   cols: Columns | None = None) -> np.ndarray:
    """Absolute finite-difference steps per free coordinate, matched to each parameter's scale."""
    cols = Columns.of(model) if cols is None else cols
    first = cols.first_rows
    resid = values[cols.block == "residual"]
    ref = float(np.min(resid)) if len(resid) else 1.0
    steps = []
    for j in idx:
        block = cols.block[first[int(j)]]
        if block == "sd":
            steps.append(1e-4 * max(abs(free[j]), 1e-2 * ref))
        elif block in ("corr", "residual"):
            steps.append(1e-4)
        else:
            steps.append(1e-4 * max(abs(free[j]), 1.0))
    return np.array(steps)


def _boundary_coords(model: CompiledModel, values: np.ndarray, scale: float, cols: Columns | None = None
                     ) -> tuple[set[int], list[str]]:
    """Free coordinates at a boundary (correlations at +-1 or with a zero SD) and warnings for them."""
    cols = Columns.of(model) if cols is None else cols
    free, names = cols.free, cols.names
    skip: set[int] = set()
    warnings = []
    for b in model.blocks:
        sd = values[b.sd_rows]
        zero = sd < BOUNDARY * scale
        for r, z in zip(b.sd_rows, zero, strict=True):
            if z and free[r] > 0:
                skip.add(int(free[r]) - 1)
                warnings.append(f"{names[r]} is at the boundary (0): singular fit")
                warnings.append(no_se_at_boundary(str(names[r])))
        for r in b.corr_rows:
            if free[r] == 0:
                continue
            if zero.any():
                skip.add(int(free[r]) - 1)
            elif abs(values[r]) > 1 - 1e-6:
                skip.add(int(free[r]) - 1)
                warnings.append(f"{names[r]} is at the boundary ({values[r]:+.0f}): singular fit")
    return skip, warnings


def natural_jacobian(params: GaussianParams, free: np.ndarray, phi: np.ndarray, idx: np.ndarray) -> np.ndarray | None:
    """T = d(phi, log sigma)/d free[idx] at a profiled-sigma optimum, or None where free[idx] is not exactly
    the plain relative SDs, the Cholesky blocks' SDs and correlations and the log residual SD.

    Plain SDs: phi = x/sigma. Cholesky blocks: phi = vech L, L L' = Sigma_rel = D C D/sigma^2 (D the SDs,
    C the correlations), so dL = L Phi(L^-1 dSigma_rel L^-T) with Phi the lower triangle, diagonal halved.
    d/dlog sigma scales Sigma_rel by -2, so dphi/dlog sigma = -phi for every coordinate.
    """
    if not params.profile_sigma or params.resid_chol or any(kind != "sd" for kind in params.plain_kind):
        return None
    n_phi = params.n_phi
    owned = [int(j) for j in params.plain_idx] + [int(j) for cb in params.chol
                                                  for j in np.concatenate([cb.sd_idx, cb.corr_idx])]
    owned.append(int(params.residual_idx[0]))
    col = {int(j): c for c, j in enumerate(idx)}
    if len(owned) != n_phi + 1 or sorted(owned) != sorted(col):
        return None
    sigma = float(np.exp(free[params.residual_idx[0]]))
    T = np.zeros((n_phi + 1, len(idx)))
    for p, j in enumerate(params.plain_idx):
        T[p, col[int(j)]] = 1.0 / sigma
    for cb in params.chol:
        k = len(cb.sd_idx)
        rows, cols = tril(k)
        L = np.zeros((k, k))
        L[rows, cols] = phi[cb.pos]
        ar = np.arange(k)
        if (L[ar, ar] <= 0).any():
            return None
        sd = free[cb.sd_idx]
        lo_r, lo_c = tril(k, -1)
        Sigma = L @ L.T
        dS = np.zeros((k + len(lo_r), k, k))
        dS[ar, ar, :] += Sigma / sd[:, None]
        dS[ar, :, ar] += Sigma / sd[:, None]
        m = k + np.arange(len(lo_r))
        dS[m, lo_r, lo_c] = dS[m, lo_c, lo_r] = sd[lo_r] * sd[lo_c] / sigma**2
        Linv = np.linalg.inv(L)
        lower = np.zeros((k, k))
        lower[rows, cols] = np.where(rows == cols, 0.5, 1.0)
        dL = (L @ ((Linv @ dS @ Linv.T) * lower))[:, rows, cols]
        for c, j in enumerate(np.concatenate([cb.sd_idx, cb.corr_idx])):
            T[cb.pos, col[int(j)]] = dL[c]
    T[:n_phi, col[int(params.residual_idx[0])]] = -phi
    T[n_phi, col[int(params.residual_idx[0])]] = 1.0
    return T


def kernel_hessian(kernel: AffineKernel, params: GaussianParams, free: np.ndarray, phi: np.ndarray,
                   idx: np.ndarray) -> np.ndarray | None:
    """Hessian of deviance/2 over free[idx] (beta profiled, sigma not) from the affine kernel, or None.

    The unprofiled deviance is stationary in (phi, log sigma) at the optimum, so its Hessian in the
    natural coordinates is T' H_(phi, log sigma) T (`natural_jacobian`); the second-derivative terms of
    the map drop out with the gradient. Costs 2 n_phi + 1 kernel evaluations instead of a general-pipeline
    gradient per coordinate.
    """
    T = natural_jacobian(params, free, phi, idx)
    if T is None:
        return None
    sigma2 = float(np.exp(2.0 * free[params.residual_idx[0]]))
    phi = np.asarray(phi, float)
    n_phi = len(phi)
    H = np.zeros((n_phi + 1, n_phi + 1))
    try:
        H[:n_phi, :n_phi] = hessian_from_gradient(lambda x: kernel.fixed_sigma_gradient(x, sigma2)[0], phi,
                                                  1e-4 * np.maximum(np.abs(phi), 0.1))
        cross, H[n_phi, n_phi] = kernel.log_sigma_curvature(phi, sigma2)
    except np.linalg.LinAlgError:
        return None
    H[:n_phi, n_phi] = H[n_phi, :n_phi] = cross
    out = 0.5 * (T.T @ H @ T)
    return 0.5 * (out + out.T)


def half_gradient_from_phi(params: GaussianParams, free: np.ndarray, idx: np.ndarray, g_phi: np.ndarray
                           ) -> np.ndarray:
    """Gradient of deviance/2 over free[idx] (beta profiled, sigma not) from the profiled deviance's gradient
    g_phi at the same point, without a likelihood evaluation.

    The chain rule through phi(free) (`GaussianParams.phi_from_free`, differentiated by central differences:
    a smooth map of a few numbers); with a profiled sigma the criterion's own derivative in log sigma is
    exactly zero at sigma's profiled value, and in every other coordinate it equals the profiled one
    (the envelope theorem), so log sigma enters only through phi (relative SDs).
    """
    x = np.asarray(free[idx], float)
    r = int(params.residual_idx[0]) if params.profile_sigma else None

    def coords(z: np.ndarray) -> np.ndarray:
        f = free.copy()
        f[idx] = z
        return params.phi_from_free(f, float(np.exp(f[r])) if r is not None else 1.0)

    J = np.empty((params.n_phi, len(idx)))
    for j in range(len(idx)):
        h = 1e-6 * max(abs(x[j]), 1.0)
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        J[:, j] = (coords(up) - coords(down)) / (2.0 * h)
    return 0.5 * (J.T @ np.asarray(g_phi, float))


def covariance(design: GaussianDesign, params: GaussianParams, reml: bool, free: np.ndarray, values: np.ndarray,
               res: Profiled, kernel: AffineKernel | None = None, phi: np.ndarray | None = None,
               g_phi: np.ndarray | None = None) -> tuple[np.ndarray, list[str], int]:
    """cov_free (NaN where unavailable), warnings, and the number of likelihood evaluations it took.

    With the fit's affine kernel and its optimum phi, no coordinate at a boundary and no Gamma mean
    parameters, the variance block comes from `kernel_hessian`; otherwise from the general pipeline,
    where `g_phi`, the profiled deviance's gradient at phi (the optimiser's last evaluation there), stands
    in for the gradient at the optimum that the forward differences start from (`half_gradient_from_phi`).
    """
    model = design.model
    n_free = params.n_free
    cols = Columns.of(model)
    scale = res.sigma if res.sigma is not None else float(np.min(values[cols.block == "residual"]))
    skip, warnings = _boundary_coords(model, values, scale, cols)
    names = [str(x) for x in cols.names[cols.first_rows]]
    mean_params = any(cols.free[row] > 0 for _, _, row in model.Gamma_entries)
    if mean_params and not reml:
        idx = np.array([j for j in range(n_free) if j not in skip], dtype=int)
    else:
        idx = np.array([j for j in range(n_free) if j not in skip and j not in set(params.beta_idx)], dtype=int)

    def half_deviance(x: np.ndarray) -> float:
        trial = free.copy()
        trial[idx] = x
        mats = model_matrices(model, model.partable.unpack(trial))
        try:
            if mean_params and not reml:
                return 0.5 * deviance_at(design, mats)
            return 0.5 * profiled(design, mats, reml=reml, profile_sigma=False).deviance
        except np.linalg.LinAlgError:
            return np.nan

    def half_gradient(x: np.ndarray) -> np.ndarray:
        """Gradient of deviance/2 (= -loglik) over free[idx], analytic (gaussian_grad)."""
        trial = free.copy()
        trial[idx] = x
        values = model.partable.unpack(trial)
        mats = model_matrices(model, values)
        try:
            if mean_params and not reml:
                grad = deviance_gradient(design, mats)[1]
            else:
                grad = profiled_gradient(design, mats, reml=reml, profile_sigma=False)[1]
        except np.linalg.LinAlgError:
            return np.full(len(idx), np.nan)
        return -(model.partable.jacobian(trial).T @ values_gradient(model, values, grad))[idx]

    H = None
    if kernel is not None and phi is not None and not skip and not mean_params:
        H = kernel_hessian(kernel, params, free, phi, idx)
    if H is not None:
        n_evaluations = 2 * params.n_phi + 1
    elif design.structure.q_remainder <= sparse_blocks.DENSE_MAX:
        g0 = None
        if g_phi is not None and phi is not None and not mean_params and len(idx) > FORWARD_ABOVE:
            g0 = half_gradient_from_phi(params, free, idx, g_phi)
        H = gradient_hessian(half_gradient, free[idx], _hessian_steps(model, free, idx, values, cols), g0)
        n_evaluations = 2 * len(idx) if len(idx) <= FORWARD_ABOVE else len(idx) + (g0 is None)
    else:
        H = numeric_hessian(half_deviance, free[idx], _hessian_steps(model, free, idx, values, cols))
        n_evaluations = 1 + 2 * len(idx) ** 2
    cov = assemble_covariance(H, idx, names, params, None if mean_params and not reml else res.fixed_vcov, warnings)
    return cov, warnings, n_evaluations


def assemble_covariance(H: np.ndarray, idx: np.ndarray, names: list[str], params: GaussianParams,
                        fixed_vcov: np.ndarray | None, warnings: list[str]) -> np.ndarray:
    """cov_free from the Hessian H of deviance/2 over free[idx] (NaN where unavailable, a warning when H is not
    invertible), with the GLS covariance of the fixed effects, uncorrelated with idx, where `fixed_vcov` is given."""
    cov_sub, warn = covariance_from_hessian(H, [names[j] for j in idx])
    cov = np.full((params.n_free, params.n_free), np.nan)
    if fixed_vcov is not None:
        cov[np.ix_(params.beta_idx, params.beta_idx)] = fixed_vcov
        cov[np.ix_(params.beta_idx, idx)] = 0.0
        cov[np.ix_(idx, params.beta_idx)] = 0.0
    if cov_sub is not None:
        cov[np.ix_(idx, idx)] = cov_sub
    else:
        warnings.append(f"variance parameters: {warn}")
    return cov


def lr_test(model: CompiledModel, loglik: float, reml: bool, values: np.ndarray | None = None,
            design: GaussianDesign | None = None) -> dict | None:
    """LR test against the linear regression without latent variables (Stata's 'LR test vs. linear model').

    The regression keeps every fixed covariate, those entering through structural Gamma
    included (estimate/lr_null.py); `values` (the estimates) start its search for free
    loadings on a Gamma path. With a residual covariance structure the regression has one
    residual SD, so every other residual parameter is tested too. `design`: the fit's GaussianDesign,
    whose fixed columns the regression reuses (without Gamma covariates).
    """
    tested, single = tested_free(model)
    if model.residual is not None:
        free, block = model.partable.column("free"), model.partable.column("block")
        resid = sorted({int(k) - 1 for k, blk in zip(free, block, strict=True)
                        if k > 0 and blk in ("residual", "rescorr")})
        first_sd = [k for k, blk in zip(free, block, strict=True) if k > 0 and blk == "residual"]
        extra = set(resid) - ({int(first_sd[0]) - 1} if first_sd else set())
        if extra:
            tested, single = sorted(set(tested) | extra), False
    if not tested:
        return None
    values = model.partable.start_values if values is None else values
    if design is not None and not model.Gamma_entries:
        ll0 = regression_loglik(model, reml=reml, design=design)
    else:
        ll0 = gaussian_null_loglik(model, values, reml)
    chi2 = float(max(2.0 * (loglik - ll0), 0.0))
    if single:
        return {"chi2": chi2, "df": 1, "p": lr_p_value(chi2, 1, True), "kind": "chibar2",
                "note": "LR test vs. linear regression: chibar2(01)", "loglik_null": float(ll0)}
    return {"chi2": chi2, "df": len(tested), "p": lr_p_value(chi2, len(tested), False), "kind": "chi2",
            "note": "Note: LR test is conservative and provided only for reference.", "loglik_null": float(ll0)}
