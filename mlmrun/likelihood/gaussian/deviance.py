"""Exact marginal (and restricted) log likelihood of a linear Gaussian model.

With V = S + A A' (S = diag(sigma_i^2), A the random-effects design of
mlmrun.likelihood.gaussian.design) and M = I + A'WA, W = S^-1:

    log|V|       = log|S| + log|M|
    F'V^-1 F     = F'WF - F'WA M^-1 A'WF           (the Schur complement `schur`)
    -2 l(beta)   = n log 2 pi + log|V| + r'V^-1 r,  r = y~ - X beta
    -2 l_R       = (n - p) log 2 pi + log|V| + log|X'V^-1 X| + r'V^-1 r at the GLS beta.

Profiling beta (GLS) is exact. Log-linear residual SDs (`variance:`,
sigma_i = sigma exp(s_i' alpha)) keep one common scale, so sigma is still
profiled; S~ = diag(exp(2 s_i' alpha)) then adds log|S~| to both criteria. With a single residual SD sigma and every
latent SD expressed relative to it (V = sigma^2 V~), sigma^2 is profiled too
(lme4, Bates et al. 2015, eqs. 34 and 41):

    ML:   -2 l   = log|M~| + n (1 + log(2 pi r~^2 / n))
    REML: -2 l_R = log|M~| + log|X'V~^-1 X| + (n - p)(1 + log(2 pi r~^2 / (n - p))).

The analytic gradient of both criteria, from the same factorisation, is in
mlmrun.likelihood.gaussian.gradient; `factor_system` and `profile_schur` are the
steps it shares with `profiled`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy.linalg import lapack

from mlmrun.compile.matrices import ModelMatrices, model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.gaussian.clustered import clustered_plan, clustered_system
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.small_dense import dense_small, dense_system
from mlmrun.likelihood.sparse.blocks import BlockFactor, BlockSystem, factorize, schur
from mlmrun.likelihood.sparse.spd import lower_cholesky

LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class Profiled:
    """The likelihood with beta (and possibly sigma) profiled out, at given variance parameters."""

    deviance: float
    """-2 log likelihood (ML) or -2 restricted log likelihood (REML), normalising constants included."""
    beta: np.ndarray
    """GLS estimate of the free fixed effects."""
    sigma: float | None
    """Profiled residual SD, or None when the residual SDs are parameters."""
    logdet: float
    """log|M| (relative scale when sigma is profiled)."""
    xtvx: np.ndarray
    """X'V^-1X in the scale of the computation (relative to sigma^2 when sigma is profiled)."""
    xtvx_factor: np.ndarray | None = None
    """Lower Cholesky factor of xtvx where `profile_schur` was asked for it (`direct`): the gradient's solves
    reuse it."""

    @property
    def fixed_vcov(self) -> np.ndarray:
        """(X'V^-1X)^-1 on the natural scale (sigma^2-scaled when sigma is profiled)."""
        if len(self.beta) == 0:
            return np.zeros((0, 0))
        inv = np.linalg.inv(self.xtvx)
        return 0.5 * (inv + inv.T) * (self.sigma**2 if self.sigma is not None else 1.0)


def log_det_residual(design: GaussianDesign, mats: ModelMatrices) -> tuple[np.ndarray, float]:
    """Per-class weights 1/sigma_g^2 and log|S| = sum_i log sigma_i^2."""
    sd = design.class_sd(mats)
    return 1.0 / sd**2, float(np.sum(design.class_counts * np.log(sd**2)))


def factor_system(design: GaussianDesign, mats: ModelMatrices, profile_sigma: bool, beta: np.ndarray | None = None
               ) -> tuple[np.ndarray, float, np.ndarray, BlockSystem, BlockFactor]:
    """Residual weights, log|S|, fixed map E, the block system and its factor (raises LinAlgError if not PD).

    With a residual covariance structure the rows are whitened first (unit
    weights; log|S| is then log|R|, relative to sigma^2 when it is profiled).
    """
    design = design.whitened(mats)
    if design.residual is not None:
        weights, log_s = np.ones(1), design.residual_logdet
    elif profile_sigma and not design.hetero:
        weights, log_s = np.ones(len(design.class_rows)), 0.0
    else:  # with `variance:` designs and sigma profiled, `mats` holds the relative SDs exp(s_i' alpha)
        weights, log_s = log_det_residual(design, mats)
    E = design.fixed_map(mats, beta)
    system = design.system(mats, E, weights)
    return weights, log_s, E, system, factorize(design.structure, system)


def profile_schur(design: GaussianDesign, S: np.ndarray, logdet: float, log_s: float, *, reml: bool,
             profile_sigma: bool, direct: bool = False) -> Profiled:
    """Profile beta (and sigma) out of the Schur complement S = F'V^-1F (module docstring formulas).

    `direct`: X'V^-1X factored once by LAPACK (sparse/spd.py) for its log-determinant and beta, the factor
    kept for the gradient (likelihood/gaussian/clustered.py's path); otherwise numpy's Cholesky and solve.
    """
    n, p = design.n, design.p
    xtvx = S[:p, :p]
    factor = lower_cholesky(xtvx, "X'V^-1X") if direct and p else None
    if factor is not None:
        logdet_x = 2.0 * float(np.sum(np.log(np.diag(factor))))
        delta = lapack.dpotrs(factor, S[:p, p], lower=1)[0]
    else:
        logdet_x = 2.0 * float(np.sum(np.log(np.diag(np.linalg.cholesky(xtvx))))) if p else 0.0
        delta = np.linalg.solve(xtvx, S[:p, p]) if p else np.zeros(0)
    r2 = max(float(S[p, p] - S[:p, p] @ delta), 1e-300)
    beta = design.beta_shift + delta
    dof = n - p if reml else n
    extra = logdet_x if reml else 0.0
    if profile_sigma:
        sigma2 = r2 / dof
        deviance = log_s + logdet + extra + dof * (1.0 + LOG_2PI + np.log(sigma2))
        return Profiled(float(deviance), beta, float(np.sqrt(sigma2)), logdet, xtvx, factor)
    deviance = dof * LOG_2PI + log_s + logdet + extra + r2
    return Profiled(float(deviance), beta, None, logdet, xtvx, factor)


def dense_weights(design: GaussianDesign, mats: ModelMatrices, profile_sigma: bool) -> tuple[np.ndarray, float]:
    """Residual weights and log|S| as `factor_system` takes them (no residual structure here)."""
    if profile_sigma and not design.hetero:
        return np.ones(len(design.class_rows)), 0.0
    return log_det_residual(design, mats)


def profiled(design: GaussianDesign, mats: ModelMatrices, *, reml: bool, profile_sigma: bool) -> Profiled:
    """Deviance with beta profiled; with `profile_sigma`, `mats` holds relative SDs and unit residual SD."""
    clustered = clustered_plan(design)
    if clustered is not None:
        cs = clustered_system(clustered, design, mats)
        return profile_schur(design, cs.S, cs.logdet, cs.log_r, reml=reml, profile_sigma=profile_sigma, direct=True)
    plan = dense_small(design)
    if plan is not None:
        weights, log_s = dense_weights(design, mats, profile_sigma)
        ds = dense_system(plan, design, mats, float(weights[0]))
        return profile_schur(design, ds.S, ds.logdet, log_s, reml=reml, profile_sigma=profile_sigma)
    _, log_s, _, system, factor = factor_system(design, mats, profile_sigma)
    return profile_schur(design, schur(factor, system), factor.logdet, log_s, reml=reml, profile_sigma=profile_sigma)


def deviance_at(design: GaussianDesign, mats: ModelMatrices) -> float:
    """-2 log L at the beta in `mats` (nothing profiled; natural-scale matrices)."""
    _, log_s, _, system, factor = factor_system(design, mats, False, given_beta(design, mats))
    quad = float(schur(factor, system)[0, 0])
    return design.n * LOG_2PI + log_s + factor.logdet + quad


def given_beta(design: GaussianDesign, mats: ModelMatrices) -> np.ndarray:
    """The free fixed effects held in `mats` (design.beta_rows order)."""
    return mats.beta[np.isin(design.model.beta_rows, design.beta_rows)]


def exact_loglik(model: CompiledModel, values: np.ndarray, design: GaussianDesign | None = None) -> float:
    """Marginal log likelihood of a linear Gaussian model at natural parameter values (no profiling).

    `values` holds every partable row (as FitResult.values). Pass a prebuilt
    `design` to avoid rebuilding it when evaluating many points.
    """
    if not model.is_linear_gaussian:
        raise ValueError("exact_loglik needs every equation to be gaussian with the identity link")
    design = design if design is not None else GaussianDesign(model)
    return -0.5 * deviance_at(design, model_matrices(model, np.asarray(values, float)))


def regression_loglik(model: CompiledModel, *, reml: bool,
                      extra: tuple[np.ndarray, np.ndarray] | None = None, design: GaussianDesign | None = None) -> float:
    """(Restricted) log likelihood of the linear regression without latent variables, same residual classes.

    The comparison model of the LR test Stata and lme4 print. One residual SD
    has a closed form; several (variance_by) are fitted by maximising the
    profiled (restricted) likelihood over their logs. `extra` = (columns, shift): further
    regressors and a known offset (the structural Gamma covariates, estimate/lr_null.py). `design`: the
    model's GaussianDesign when already built (only its fixed columns and residual classes are read).
    """
    design = design if design is not None else GaussianDesign(model, with_levels=False)
    n, p = design.n, design.p
    E = np.zeros((design.F.shape[1], p + 1))
    E[:p, :p] = np.eye(p)
    E[-1, p] = 1.0
    F = design.F @ E
    X, y = F[:, :p], F[:, p]
    if extra is not None:
        X, y = np.column_stack([X, extra[0]]), y - extra[1]
        p = X.shape[1]
    counts = design.class_counts

    def deviance_rows(log_sd: np.ndarray) -> float:
        w = np.exp(-2.0 * log_sd)
        XtWX = X.T @ (w[:, None] * X)
        beta = np.linalg.solve(XtWX, X.T @ (w * y)) if p else np.zeros(0)
        dev = (n - p if reml else n) * LOG_2PI + float(np.sum(2.0 * log_sd))
        dev += float(np.sum(w * (y - X @ beta) ** 2))
        if reml and p:
            dev += np.linalg.slogdet(XtWX)[1]
        return dev

    def deviance(log_sd: np.ndarray) -> float:
        return deviance_rows(log_sd[design.classes])

    beta = np.linalg.lstsq(X, y, rcond=None)[0] if p else np.zeros(0)
    dof = n - p if reml else n
    if design.hetero:  # the same `variance:` designs: baseline log SDs per class, then alpha
        nb, Hd = len(design.base_rows), design.hetero_design
        ss = np.bincount(design.base_class, weights=(y - X @ beta) ** 2, minlength=nb)
        counts = np.bincount(design.base_class, minlength=nb)
        start = np.concatenate([0.5 * np.log(np.maximum(ss, 1e-300) * dof / n / np.maximum(counts, 1)),
                                np.zeros(Hd.shape[1])])
        res = optimize.minimize(lambda t: deviance_rows(t[:nb][design.base_class] + Hd @ t[nb:]), start,
                                method="BFGS", options={"gtol": 1e-8})
        return -0.5 * float(res.fun)
    ss = np.bincount(design.classes, weights=(y - X @ beta) ** 2, minlength=len(counts))
    start = 0.5 * np.log(np.maximum(ss, 1e-300) * dof / n / np.maximum(counts, 1))
    if len(counts) == 1:
        start = np.array([0.5 * np.log(max(ss[0], 1e-300) / dof)])
        return -0.5 * deviance(start)
    res = optimize.minimize(deviance, start, method="BFGS", options={"gtol": 1e-8})
    return -0.5 * float(res.fun)
