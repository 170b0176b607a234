"""The two fit routes of a distributed fit, each the single-process driver's steps over the proxies.

`fit_gaussian_distributed` follows estimate/gaussian_fit.fit_gaussian and
`fit_quadrature_distributed` estimate/quadrature_fit.fit_quadrature step by
step, calling their helpers (optimisers, convergence checks, information,
point check, LR test); what reads the data (the moment start, the shift of y,
the standard errors' gradients, the regression of the LR test) is a map over
the partitions and a sum here. Empirical Bayes predictions are left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.distributed.objective import Dims, DistributedGaussian, DistributedQuadrature
from mlmrun.estimate.gaussian_fit import _natural_values, best_of_starts
from mlmrun.estimate.gaussian_params import GaussianParams
from mlmrun.estimate.gaussian_se import (
    FORWARD_ABOVE,
    _boundary_coords,
    _hessian_steps,
    assemble_covariance,
    gradient_hessian,
)
from mlmrun.estimate.inference import lr_p_value
from mlmrun.estimate.lr_null import tested_free
from mlmrun.estimate.quadrature_fit import (
    _adaptive,
    _boundary,
    _laplace,
    _result,
    covariance,
    fit_glm,
    information,
    lr_test,
    point_check,
    starting_values,
)
from mlmrun.estimate.quadrature_opt import projected_gradient
from mlmrun.progress import phase
from mlmrun.results import FitResult


def _summed(parts: list[Any]) -> list[Any]:
    """Element-wise sums of the partitions' tuples (arrays and numbers alike), in partition order."""
    return [sum(p[k] for p in parts[1:]) + parts[0][k] if len(parts) > 1 else parts[0][k]
            for k in range(len(parts[0]))]


def _start_values(model: CompiledModel, params: GaussianParams, obj: DistributedGaussian, beta: np.ndarray,
                  n: float) -> tuple[np.ndarray, float]:
    """gaussian_params.start_values from the partitions' sums (OLS beta, moment split of its residuals)."""
    parts = obj.pool.map("residual_sums", beta)
    ee = sum(p["ee"] for p in parts)
    s2 = float(ee / n) or 1.0
    within, tau = s2, {}
    for lvl in parts[0]["levels"]:
        wss, msum, msq, units, size = (sum(p["levels"][lvl][j] for p in parts) for j in range(5))
        w = float(wss / max(n - units, 1))
        within = min(within, w)
        tau[lvl] = float(msq / units - (msum / units) ** 2) - w / float(size / units)
    pt = model.partable
    values = pt.start_values
    free_col = pt.frame["free"].to_numpy()
    user = set(model.spec.estimation.start)
    for b in model.blocks:
        for m, r in zip(b.members, b.sd_rows, strict=True):
            lat = model.latent[m]
            if free_col[r] == 0 or pt.names[r] in user or lat.Z.shape[1] == 0:
                continue
            rms = float(np.sqrt(sum(p["rms"][m] for p in parts) / n)) or 1.0
            values[r] = np.sqrt(max(tau[lat.level], 0.1 * within)) / rms
    for r in pt.rows_of("residual"):
        if pt.names[r] not in user:
            values[r] = np.sqrt(within)
    values[model.beta_rows] = np.where([pt.names[r] in user for r in model.beta_rows], values[model.beta_rows], beta)
    free = pt.pack(values)
    sigma = float(np.exp(free[params.residual_idx[0]])) if params.profile_sigma else 1.0
    return free, sigma


def _covariance(obj: DistributedGaussian, free: np.ndarray, values: np.ndarray, res: Any
                ) -> tuple[np.ndarray, list[str], int]:
    """gaussian_se.covariance over the partitions: Hessian from differences of the summed analytic gradient."""
    model, params, reml = obj.model, obj.params, obj.reml
    n_free = params.n_free
    scale = res.sigma if res.sigma is not None else float(np.min(values[model.partable.rows_of("residual")]))
    skip, warnings = _boundary_coords(model, values, scale)
    names = model.partable.free_names()
    idx = np.array([j for j in range(n_free) if j not in skip and j not in set(params.beta_idx)], dtype=int)

    def half_gradient(x: np.ndarray) -> np.ndarray:
        trial = free.copy()
        trial[idx] = x
        out = obj.pieces_and_gradient(trial, None, reml, False)
        if out is None:
            return np.full(len(idx), np.nan)
        return -(model.partable.jacobian(trial).T @ out[1])[idx]

    H = gradient_hessian(half_gradient, free[idx], _hessian_steps(model, free, idx, values))
    n_evaluations = 2 * len(idx) if len(idx) <= FORWARD_ABOVE else len(idx) + 1
    return assemble_covariance(H, idx, names, params, res.fixed_vcov, warnings), warnings, n_evaluations


def _lr_test(model: CompiledModel, loglik: float, reml: bool, sums: tuple) -> dict | None:
    """gaussian_se.lr_test with the regression's log likelihood from the summed normal equations."""
    from mlmrun.distributed.fit import regression_loglik

    tested, single = tested_free(model)
    if not tested:
        return None
    ll0 = regression_loglik(sums, reml)
    chi2 = float(max(2.0 * (loglik - ll0), 0.0))
    if single:
        return {"chi2": chi2, "df": 1, "p": lr_p_value(chi2, 1, True), "kind": "chibar2",
                "note": "LR test vs. linear regression: chibar2(01)", "loglik_null": float(ll0)}
    return {"chi2": chi2, "df": len(tested), "p": lr_p_value(chi2, len(tested), False), "kind": "chi2",
            "note": "Note: LR test is conservative and provided only for reference.", "loglik_null": float(ll0)}


def fit_gaussian_distributed(model: CompiledModel, pool: Any, progress: Callable | None = None) -> FitResult:
    """estimate/gaussian_fit.fit_gaussian over the partitions (exact profiled ML or REML of a nested model)."""
    t0 = time.perf_counter()
    est = model.spec.estimation
    reml = est.method == "REML"
    params = GaussianParams(model)
    phase(progress, "start values")
    XtX, Xty, XfXf, Xfy0, y0y0, n = _summed(pool.map("normal_equations"))
    beta = np.linalg.lstsq(XtX, Xty, rcond=None)[0] if len(Xty) else np.zeros(0)
    shift = np.linalg.solve(XfXf, Xfy0) if len(Xfy0) else np.zeros(0)
    if not all(pool.map("set_shift", shift)):
        raise RuntimeError("a partition's Gaussian design has no selected inverse (nested designs always have one)")
    obj = DistributedGaussian(model, params, reml, pool, Dims(int(n), len(shift), shift))
    free0, sigma0 = _start_values(model, params, obj, beta, n)
    phi0 = params.phi_from_free(free0, sigma0)
    best, runs, converged, measure = best_of_starts(obj, params, phi0, est, progress)
    phi, _ = obj.snap_to_boundary(best.phi, best.deviance)
    free, values, res = _natural_values(obj, phi)
    loglik = -0.5 * res.deviance
    warnings: list[str] = []
    if not converged:
        warnings.append(f"the optimiser did not converge ({best.message}; {measure}); estimates may be unreliable")
    phase(progress, "standard errors")
    cov, cov_warnings, n_hessian = _covariance(obj, free, values, res)
    obj.n_evaluations += n_hessian
    warnings.extend(cov_warnings)
    fixed_vcov = res.fixed_vcov
    if np.all(np.isfinite(cov[np.ix_(params.beta_idx, params.beta_idx)])):
        fixed_vcov = cov[np.ix_(params.beta_idx, params.beta_idx)]
    extras: dict = {
        "fixed_vcov": fixed_vcov.tolist(),
        "fixed_names": [str(model.partable.names[r]) for r in model.beta_rows
                        if model.partable.frame.at[r, "free"] > 0],
        "profiled_sigma": params.profile_sigma,
        "optimizer": {"method": "L-BFGS-B (analytic gradient, summed over partitions)", "message": best.message,
                      "starts": len(runs), "convergence": measure},
    }
    lr = _lr_test(model, loglik, reml, (XfXf, Xfy0, y0y0, n))
    if lr is not None:
        extras["lr_test"] = lr
    return FitResult(
        model=model, values=values, free=free, cov_free=cov, loglik=float(loglik), method="REML" if reml else "ML",
        integration={"method": "exact", "points": None}, converged=converged,
        iterations=int(sum(r.iterations for r in runs)), n_evaluations=obj.n_evaluations,
        fit_seconds=time.perf_counter() - t0, warnings=tuple(dict.fromkeys(warnings)), extras=extras,
    )


def fit_quadrature_distributed(model: CompiledModel, obj: DistributedQuadrature,
                               progress: Callable | None = None) -> FitResult:
    """estimate/quadrature_fit.fit_quadrature over the partitions (adaptive, ghq or Laplace)."""
    t0 = time.perf_counter()
    plan, est = obj.plan, model.spec.estimation
    warnings: list[str] = []
    phase(progress, "start values")
    glm_free, null_ll = fit_glm(obj, model.partable.pack(model.partable.start_values))  # type: ignore[arg-type]
    start = starting_values(obj, glm_free)  # type: ignore[arg-type]
    laplace_f = None
    if plan.method == "laplace":
        out, laplace_f = _laplace(obj, start, est.max_iter, progress)  # type: ignore[arg-type]
    else:
        out = _adaptive(obj, start, est.tol, est.max_iter, progress)  # type: ignore[arg-type]
    if not out.converged:
        warnings.append(f"optimisation did not converge: {out.message or 'no progress'}")
    phase(progress, "standard errors")
    info = information(obj, out, laplace_f)  # type: ignore[arg-type]
    cov = covariance(obj, info, warnings)  # type: ignore[arg-type]
    extras: dict = {}
    if plan.method != "laplace" and out.converged and cov is not None:
        g_opt = out.gradient if out.gradient is not None else obj.frozen(out.free, out.adaptation)[1]
        g = projected_gradient(obj, out.free, g_opt)  # type: ignore[arg-type]
        gain = 0.5 * float(g @ cov @ g)
        if gain > 1e-4:
            out.converged = False
            warnings.append(f"optimisation stopped {gain:.3g} below the predicted maximum of the log likelihood")
    if est.check_points:
        phase(progress, "point check")
        extras["point_check"] = point_check(obj, out, cov, est.check_points, warnings)  # type: ignore[arg-type]
    _boundary(model, out.free, cov, warnings)
    test = lr_test(model, out.loglik, null_ll)
    if test is not None:
        extras["lr_test"] = test
    return _result(obj, out, cov, warnings, extras, t0)  # type: ignore[arg-type]
