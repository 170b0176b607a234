"""Fit a GLLAMM by nested adaptive quadrature: starts, optimisation, SEs, point check, predictions.

Steps (each documented where it lives):
1. `integration_plan` checks the spec's integration settings (SpecError).
2. Starting values: a fit with every latent variable switched off (the GLM,
   also the null model of the LR test) for the fixed part and family
   parameters, unless `estimation.start` / `start_from` name them.
3. Optimisation (estimate/quadrature_opt.py): re-adaptation rounds with the
   exact Fisher-identity gradient; Laplace: quasi-Newton on the re-adapted
   Laplace objective.
4. Observed information: the Hessian of the log likelihood at the optimum
   with adaptation frozen there, by Louis' identity per unit in one pass
   (likelihood/quadrature/louis.py; numeric Jacobian of the analytic gradient
   for families with parameters of their own; Laplace: second differences of
   the re-adapted objective, as lme4 does); its inverse is `cov_free`. The
   same pass keeps the posterior moments that empirical Bayes (step 6) reads.
5. `estimation.check_points`: re-evaluate at more points (nodes re-placed at
   the optimum's modes) and estimate the refit by one Newton step.
6. Empirical Bayes means/SDs and the LR test against the model without
   latent variables go into `extras`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from scipy.optimize import minimize

from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.boundary import no_se_at_boundary
from mlmrun.estimate.inference import (
    covariance_from_hessian,
    lr_p_value,
    numeric_hessian,
)
from mlmrun.estimate.lr_null import FAMILY_BLOCKS, null_free_mask, tested_free
from mlmrun.estimate.quadrature_opt import (
    Outcome,
    bounds_arrays,
    frozen_information,
    polish,
    projected_gradient,
    rounds,
)
from mlmrun.estimate.robust import bread, glm_information, least_squares_start, robust_covariance, weight_scale
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import IntegrationPlan, integration_plan
from mlmrun.predict import empirical_bayes
from mlmrun.progress import Offset, phase
from mlmrun.results import FitResult

GLM_BLOCKS = FAMILY_BLOCKS
COARSE_POINTS = 5
"""Points per dimension of the cheap first stage (Laplace start; adaptive fits with more points)."""
BOUNDARY_SD = 1e-4
POINT_CHECK_WARN = 0.01


def _free_blocks(model: CompiledModel) -> np.ndarray:
    pt = model.partable
    first = [int(np.flatnonzero(pt.frame["free"].to_numpy() == k)[0]) for k in range(1, pt.n_free + 1)]
    return pt.frame["block"].to_numpy()[first]


def fit_glm(obj: QuadratureObjective, free: np.ndarray) -> tuple[np.ndarray, float]:
    """Maximise the likelihood with latent disturbances off over the null model's parameters.

    These are the fixed part, the family parameters and the structural Gamma covariates
    with their mean path (estimate/lr_null.py): the null model of the LR test.
    """
    mask = null_free_mask(obj.model)
    bounds = [b for b, m in zip(obj.model.partable.free_bounds(), mask, strict=True) if m]
    full = np.asarray(free, dtype=float).copy()
    if not mask.any():
        return full, obj.glm(full)[0]
    full = least_squares_start(obj, full)
    scale = weight_scale(obj)  # weighted objectives on the unweighted scale, so the tolerances mean the same

    def neg(x: np.ndarray) -> tuple[float, np.ndarray]:
        full[mask] = x
        val, g = obj.glm(full)
        return (-val / scale, -g[mask] / scale) if np.isfinite(val) else (1e300, np.zeros_like(x))

    res = minimize(neg, full[mask], jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-9})
    full[mask] = res.x
    return full, -float(res.fun) * scale


def starting_values(obj: QuadratureObjective, glm_free: np.ndarray) -> np.ndarray:
    """GLM estimates for the fixed part and family parameters, except rows the spec gives starts for."""
    model = obj.model
    pt = model.partable
    est = model.spec.estimation
    start = pt.pack(pt.start_values)
    if est.start_from:
        return start
    names = pt.free_names()
    mask = np.isin(_free_blocks(model), GLM_BLOCKS) & ~np.isin(names, list(est.start))
    start[mask] = glm_free[mask]
    return start


def information(obj: QuadratureObjective, out: Outcome, laplace_f: Callable | None) -> np.ndarray:
    """Observed information on the free vector (negated Hessian of the log likelihood).

    Quadrature: the Hessian of the log likelihood with the adaptation frozen
    at the optimum, by Louis' identity per unit in one pass
    (likelihood/quadrature/louis.py) where the families allow, else
    differences of the analytic gradient (`frozen_information`).
    Laplace: second differences of the re-adapted Laplace log likelihood
    (what lme4 and glmmTMB differentiate).
    """
    if laplace_f is not None:
        return -numeric_hessian(laplace_f, out.free)
    return frozen_information(obj, out.free, out.adaptation, out.gradient, keep_moments=True)


def covariance(obj: QuadratureObjective, info: np.ndarray, warnings: list[str]) -> np.ndarray | None:
    """Inverse information, or None with a warning naming the flat direction when it is not positive definite."""
    cov, problem = covariance_from_hessian(info, obj.model.partable.free_names())
    if problem:
        warnings.append(problem)
    return cov


def point_check(obj: QuadratureObjective, out: Outcome, cov: np.ndarray | None, points: list,
                warnings: list[str]) -> dict:
    """Log likelihood at more points (nodes at the optimum's modes) and a one-Newton-step refit estimate.

    Each entry of `points` is a number (per dimension at every level) or points per level name;
    each costs one evaluation with gradient at the optimum (no refit). The check's rules are never
    pruned, so the change measures the whole integration error of the fitted rule (pruning included).
    """
    model = obj.model
    pt = model.partable
    values = pt.unpack(out.free)
    free_rows = np.flatnonzero(pt.frame["free"].to_numpy() > 0)
    fitted = obj.plan.describe()["points"]
    logliks: dict[str, float] = {obj.plan.points_key(): out.loglik}
    worst_ll, worst_key, worst_rel = 0.0, "", 0.0
    for P in points:
        plan = replace(obj.plan.with_points(P), prune=0.0)
        rules = plan.rules
        # mode/curvature placement does not depend on the rule; posterior-moment placement does
        ad = out.adaptation.with_rules(rules) if obj.plan.adapt == "mode" else obj.adapt(out.free, out.adaptation, rules)
        ll, g = obj.frozen(out.free, ad)
        logliks[plan.points_key()] = ll
        if abs(ll - out.loglik) >= abs(worst_ll):
            worst_ll, worst_key = ll - out.loglik, plan.points_key()
        if cov is not None:
            moved = pt.unpack(out.free + cov @ g)
            rel = np.abs(moved - values)[free_rows] / np.maximum(np.abs(values[free_rows]), 1e-2)
            worst_rel = max(worst_rel, float(rel.max(initial=0.0)))
    if abs(worst_ll) > POINT_CHECK_WARN:
        warnings.append(f"point check: the log likelihood changes by {worst_ll:.4g} between {obj.plan.points_key()} "
                        f"and {worst_key} points; use more points")
    return {"fitted_points": fitted, "loglik": logliks, "loglik_change": worst_ll,
            "max_rel_estimate_change": worst_rel if cov is not None else None,
            "estimate_change_method": "one Newton step from the optimum with the observed information (no refit)"}


def lr_test(model: CompiledModel, loglik: float, null_loglik: float) -> dict | None:
    """LR test against the model without latent disturbances; chi-bar-square(0,1) for a single variance."""
    tested, single = tested_free(model)
    if not tested:
        return None
    stat = max(0.0, 2.0 * (loglik - null_loglik))
    p = lr_p_value(stat, len(tested), single)
    return {"statistic": stat, "df": len(tested), "p_value": float(p), "null_loglik": null_loglik,
            "distribution": "chibar2(01)" if single else "chi2 (conservative: parameters on the boundary)"}


def fit_quadrature(model: CompiledModel, progress: Callable[[int, float], None] | None = None) -> FitResult:
    """Fit `model` by nested adaptive (or Laplace, or plain) Gauss-Hermite quadrature."""
    t0 = time.perf_counter()
    plan = integration_plan(model)
    obj = QuadratureObjective(model, plan)
    est = model.spec.estimation
    warnings: list[str] = []
    phase(progress, "start values")
    glm_free, null_ll = fit_glm(obj, model.partable.pack(model.partable.start_values))
    start = starting_values(obj, glm_free)
    if obj.lay.hierarchy is None:
        out = Outcome(glm_free, None, null_ll, True, 0)
        phase(progress, "standard errors")
        info = glm_information(obj, glm_free)  # no latent variables: the GLM's information
        extras: dict = {}
        cov = vce(obj, out, info, covariance(obj, info, warnings), extras)
        return _result(obj, out, cov, warnings, extras, t0)
    laplace_f = None
    if plan.method == "laplace":
        out, laplace_f = _laplace(obj, start, est.max_iter, progress)
    else:
        out = _adaptive(obj, start, est.tol, est.max_iter, progress)
    if not out.converged:
        warnings.append(f"optimisation did not converge: {out.message or 'no progress'}")
    phase(progress, "standard errors")
    info = information(obj, out, laplace_f)
    cov = covariance(obj, info, warnings)
    extras: dict = {}
    if plan.method != "laplace" and out.converged and cov is not None:
        g_opt = out.gradient if out.gradient is not None else obj.frozen(out.free, out.adaptation)[1]
        g = projected_gradient(obj, out.free, g_opt)
        gain = 0.5 * float(g @ cov @ g)
        if gain > 1e-4:
            out.converged = False
            warnings.append(f"optimisation stopped {gain:.3g} below the predicted maximum of the log likelihood")
    if est.check_points:
        phase(progress, "point check")
        extras["point_check"] = point_check(obj, out, cov, est.check_points, warnings)
    cov = vce(obj, out, info, cov, extras)
    _boundary(model, out.free, cov, warnings)
    phase(progress, "empirical Bayes")
    extras["empirical_bayes"] = {p.level: p.as_dict() for p in empirical_bayes(obj, out.free, out.adaptation)}
    test = lr_test(model, out.loglik, null_ll)
    if test is not None and "vce" not in extras:  # no LR test of a pseudolikelihood or with robust SEs (Stata)
        extras["lr_test"] = test
    return _result(obj, out, cov, warnings, extras, t0)


def _laplace(obj: QuadratureObjective, start: np.ndarray, max_iter: int,
             progress: Callable[[int, float], None] | None) -> tuple[Outcome, Callable[[np.ndarray], float]]:
    """Maximise the re-adapted Laplace log likelihood (quadrature_opt.polish), from a coarse adaptive fit."""
    first = rounds(obj, start, obj.plan.with_points(COARSE_POINTS).rules, 1e-6, max_iter, progress)
    state = {"ad": first.adaptation.with_rules(obj.plan.rules)}

    def laplace_f(x: np.ndarray) -> float:
        val, state["ad"] = obj.readapted(x, state["ad"])
        return val

    lo, hi = bounds_arrays(obj)
    phase(progress, "Laplace polish")
    asc = polish(laplace_f, first.free, first.information, lo, hi, 1e-11)
    out = Outcome(asc.x, obj.adapt(asc.x, state["ad"]), asc.F, asc.converged and first.converged,
                  first.iterations + asc.iterations, "" if asc.converged else "the Laplace quasi-Newton polish did not converge")
    if progress is not None:
        progress(out.iterations, out.loglik)
    return out, laplace_f


def _adaptive(obj: QuadratureObjective, start: np.ndarray, tol: float, max_iter: int,
              progress: Callable[[int, float], None] | None) -> Outcome:
    """Rounds at the spec's points, after a coarse stage when those are many.

    With more than COARSE_POINTS per dimension (adaptive only: plain
    Gauss-Hermite with few points is too crude), a first fit at COARSE_POINTS
    gets close cheaply; its optimum and adaptation start the full fit, which
    then needs a few evaluations only. The full fit's first quasi-Newton matrix
    is the coarse rule's exact information at the coarse optimum (Louis'
    identity, about 1/16 of the cost at the full rule for the flagship's
    20 x 20 and 5 points) where the families allow, else the coarse stage's
    quasi-Newton matrix. With mode adaptation and at least COARSE_POINTS per
    dimension at every level, the full stage re-adapts at every point it
    evaluates (`rounds`' `readapt`; with fewer points the frozen gradient is
    too far from the re-adapted objective's, as it is in the coarse stage).
    """
    plan = obj.plan
    if plan.method != "adaptive" or max(plan.points) <= COARSE_POINTS:
        return rounds(obj, start, plan.rules, tol, max_iter, progress)
    coarse = tuple(min(p, COARSE_POINTS) for p in plan.points)
    rules = IntegrationPlan(plan.method, plan.adapt, plan.level_names, plan.dims, coarse, plan.prune).rules
    first = rounds(obj, start, rules, 1e-6, max_iter, progress, coarse=True)
    shifted = None if progress is None else Offset(progress, first.iterations)
    info = (frozen_information(obj, first.free, first.adaptation, first.gradient) if obj.louis_applies()
            else first.information)
    out = rounds(obj, first.free, plan.rules, tol, max(1, max_iter - first.iterations), shifted,
                 first.adaptation.with_rules(plan.rules), info,
                 readapt=plan.adapt == "mode" and min(plan.points) >= COARSE_POINTS)
    out.iterations += first.iterations
    return out


def vce(obj: QuadratureObjective, out: Outcome, info: np.ndarray | None, cov: np.ndarray | None,
        extras: dict) -> np.ndarray | None:
    """The covariance the SEs use for a weighted or robust fit (estimate/robust.py); `cov` otherwise.

    Records extras['vce'] (robust: the clusters) and extras['fixed_vcov_model'] (the model-based
    covariance of the fixed part, which Stata's xtmixed used for its Wald test).
    """
    wt = obj.model.weighting
    if wt is None or info is None or cov is None:
        return cov
    try:
        inverse = np.linalg.inv(bread(obj.model, info))
    except np.linalg.LinAlgError:
        return cov
    J = obj.model.partable.jacobian(out.free)[obj.model.beta_rows]
    extras["fixed_vcov_model"] = J @ inverse @ J.T
    if wt.vce != "robust":
        return inverse
    robust, n_clusters = robust_covariance(obj, out.free, out.adaptation, inverse)
    extras["vce"] = {"type": "robust", "cluster": wt.cluster_name, "n_clusters": n_clusters}
    return robust


def _boundary(model: CompiledModel, free: np.ndarray, cov: np.ndarray | None, warnings: list[str]) -> None:
    """Warn about SDs estimated at ~0 and blank their SEs (NaN rows of `cov`): sd() and var() alike."""
    pt = model.partable
    values = pt.unpack(free)
    for i in pt.rows_of("sd"):
        k = int(pt.frame.at[i, "free"])
        if k and abs(values[i]) < BOUNDARY_SD:
            warnings.append(f"{pt.names[i]} is on the boundary (estimate ~0): its variance is not distinguishable "
                            "from zero; its SE and the LR test are non-standard")
            warnings.append(no_se_at_boundary(str(pt.names[i])))
            if cov is not None:
                cov[k - 1, :] = np.nan
                cov[:, k - 1] = np.nan


def _result(obj: QuadratureObjective, out: Outcome, cov: np.ndarray | None, warnings: list[str], extras: dict,
            t0: float) -> FitResult:
    model = obj.model
    return FitResult(model=model, values=model.partable.unpack(out.free), free=out.free, cov_free=cov,
                     loglik=float(out.loglik), method="ML", integration=obj.plan.describe(),
                     converged=bool(out.converged), iterations=int(out.iterations),
                     n_evaluations=int(obj.n_evaluations), fit_seconds=time.perf_counter() - t0,
                     warnings=tuple(warnings), extras=extras)

