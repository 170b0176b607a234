"""Fit a GLLAMM by the joint sparse Laplace approximation (likelihood/laplace), nested or crossed levels alike.

Steps (each a small function below):
1. Starting values: the model with every latent variable switched off (the
   GLM, also the null model of the LR test; estimate/quadrature_fit.fit_glm)
   for the fixed part and family parameters, unless the spec gives starts.
2. Quasi-Newton: L-BFGS-B within the partable's bounds with the engine's exact
   gradient (the implicit-function gradient of the Laplace log likelihood).
3. Newton polish: the observed information as the numeric Jacobian of the
   exact gradient (central differences) seeds a bounded quasi-Newton ascent
   (estimate/quadrature_opt.ascend) that stops at a predicted gain of
   GAIN_TOL; its information at the optimum gives the standard errors.
4. Boundary: SDs at ~0 get a warning and no SE (estimate/boundary.py); a
   non-positive-definite information a warning naming the flat direction.
5. Convergence is reported as it is: the optimiser's own verdict and the
   predicted gain g' V g / 2 at the end (above GAIN_WARN: not converged).
6. Robust (sandwich) SEs from the engine's per-top-level-unit scores (nested
   models only: compile/weights.py refuses `vce: robust` with crossed levels).
7. extras: the LR test against the model without latent variables
   (chi-bar-square(01) for one SD), and the posterior modes with their
   conditional SDs per level (lme4's ranef(condVar = TRUE)) as
   extras['empirical_bayes'] in the format every engine uses ('mean' holds the mode).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize

from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.boundary import no_se_at_boundary
from mlmrun.estimate.inference import covariance_from_hessian, hessian_from_gradient
from mlmrun.estimate.quadrature_fit import BOUNDARY_SD, fit_glm, lr_test, starting_values
from mlmrun.estimate.quadrature_opt import Ascent, ascend, positive_definite
from mlmrun.estimate.robust import bread
from mlmrun.likelihood.laplace.objective import LaplaceEngine
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import IntegrationPlan, integration_plan
from mlmrun.predict import LevelPrediction
from mlmrun.progress import phase
from mlmrun.results import FitResult

Progress = Callable[..., None]

GAIN_TOL = 1e-10
"""The Newton polish stops when the predicted gain g'B^-1 g / 2 is below this times max(1, |loglik|)."""
GAIN_WARN = 1e-4
"""A predicted gain above this at the end (log likelihood units) means the fit stopped short: not converged."""
POLISH_ITERATIONS = 30
SD_PROBES = (0.01, 0.1, 0.3, 1.0, 3.0)
"""SDs tried when an SD stopped at 0 (escape_zero_sds)."""
BOUNDARY_RESTARTS = 3
INFO_STEP = 1e-5
"""Relative step of the differences of the gradient (information)."""
REUSE_STEP = 1e-6
"""The polish's starting information serves the SEs when the polish moved no coordinate by more than this
(relative): the information then changes by about as much, far below what SEs show."""


class Counted:
    """The engine's log likelihood and gradient for the optimisers, counting evaluations and iterations
    (-inf and a zero gradient where the engine cannot evaluate, so line searches back off)."""

    def __init__(self, engine: Any, progress: Progress | None) -> None:
        self.engine = engine
        self.progress = progress
        self.n_evaluations = 0
        self.iterations = 0

    def __call__(self, free: np.ndarray) -> tuple[float, np.ndarray]:
        self.n_evaluations += 1
        try:
            ll, g = self.engine.loglik_gradient(np.asarray(free, dtype=float))
        except (FloatingPointError, np.linalg.LinAlgError, ValueError):
            return -np.inf, np.zeros(len(free))
        ll = float(ll)
        g = np.asarray(g, dtype=float)
        if not np.isfinite(ll) or not np.all(np.isfinite(g)):
            return -np.inf, np.zeros(len(free))
        return ll, g

    def gradient(self, free: np.ndarray) -> np.ndarray:
        return self(free)[1]

    def tick(self, loglik: float) -> None:
        self.iterations += 1
        if self.progress is not None:
            self.progress(self.iterations, loglik)


def bounds(model: CompiledModel) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the free vector (+-inf where unbounded), as quadrature_opt.bounds_arrays."""
    b = model.partable.free_bounds()
    lo = np.array([-np.inf if x[0] is None else x[0] for x in b], dtype=float)
    hi = np.array([np.inf if x[1] is None else x[1] for x in b], dtype=float)
    return lo, hi


def quasi_newton(fg: Counted, start: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_iter: int
                 ) -> tuple[np.ndarray, float, bool, str]:
    """L-BFGS-B on the negated log likelihood with the exact gradient, scaled by the start's |loglik|."""
    x0 = np.clip(np.asarray(start, dtype=float), lo, hi)
    F0, _ = fg(x0)
    scale = max(1.0, abs(F0)) if np.isfinite(F0) else 1.0
    last = {"F": F0}

    def neg(x: np.ndarray) -> tuple[float, np.ndarray]:
        F, g = fg(x)
        if not np.isfinite(F):
            return 1e300, np.zeros_like(x)
        last["F"] = F
        return -F / scale, -g / scale

    res = minimize(neg, x0, jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi, strict=True)),
                   callback=lambda _x: fg.tick(last["F"]),
                   options={"maxiter": max_iter, "ftol": 1e-14, "gtol": 1e-8, "maxcor": 20})
    F = -float(res.fun) * scale
    return np.asarray(res.x, dtype=float), F, bool(res.success), str(res.message)


def escape_zero_sds(model: CompiledModel, fg: Counted, x: np.ndarray, F: float, lo: np.ndarray
                    ) -> tuple[np.ndarray, float] | None:
    """A better point off the boundary when an SD stopped at 0, else None.

    The Laplace log likelihood is even in each random intercept's SD, so its derivative there is 0 and a
    quasi-Newton step that lands on the bound stays there even when the maximum lies inside (scotssec's
    secondary schools from a start of 1). Each SD at 0 is probed at SD_PROBES; the best higher point wins.
    """
    pt = model.partable
    coords = [int(pt.frame.at[i, "free"]) - 1 for i in pt.rows_of("sd") if int(pt.frame.at[i, "free"])]
    best: tuple[np.ndarray, float] | None = None
    for k in coords:
        if not (lo[k] == 0.0 and x[k] <= 1e-8):
            continue
        for sd in SD_PROBES:
            trial = x.copy()
            trial[k] = sd
            value, _ = fg(trial)
            if value > F + 1e-9 * max(1.0, abs(F)) and (best is None or value > best[1]):
                best = (trial, value)
    return best


def information(fg: Counted, free: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Observed information: the negated numeric Jacobian of the exact gradient, symmetrised.

    Central differences (estimate/inference.hessian_from_gradient's steps) except next to a bound, where
    the column is one-sided into the feasible side: an SD at 0 is never evaluated negative.
    """
    x = np.asarray(free, dtype=float)
    if np.all(x - INFO_STEP * np.maximum(1.0, np.abs(x)) >= lo) and np.all(
            x + INFO_STEP * np.maximum(1.0, np.abs(x)) <= hi):
        return -hessian_from_gradient(fg.gradient, x, INFO_STEP)
    g0 = fg.gradient(x)
    H = np.zeros((len(x), len(x)))
    for j in range(len(x)):
        h = INFO_STEP * max(1.0, abs(x[j]))
        e = np.zeros(len(x))
        e[j] = h
        if x[j] - h < lo[j]:
            H[:, j] = (fg.gradient(x + e) - g0) / h
        elif x[j] + h > hi[j]:
            H[:, j] = (g0 - fg.gradient(x - e)) / h
        else:
            H[:, j] = (fg.gradient(x + e) - fg.gradient(x - e)) / (2 * h)
    return -0.5 * (H + H.T)


def polish(fg: Counted, x: np.ndarray, F: float, info: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           max_iter: int = POLISH_ITERATIONS) -> Ascent:
    """Bounded quasi-Newton ascent from the observed information (Newton steps, damped BFGS updates)."""
    _, g = fg(x)
    st = Ascent(x, F, g, positive_definite(info))
    return ascend(fg, st, lo, hi, GAIN_TOL, max_iter)


def projected(free: np.ndarray, grad: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Gradient with the components that push against an active bound zeroed (the KKT residual)."""
    g = grad.copy()
    g[(free <= lo + 1e-10) & (g < 0)] = 0.0
    g[(free >= hi - 1e-10) & (g > 0)] = 0.0
    return g


def boundary(model: CompiledModel, free: np.ndarray, cov: np.ndarray | None, warnings: list[str]) -> list[int]:
    """Warn about SDs estimated at ~0 and blank their SEs (NaN rows of `cov`); the free coordinates at 0."""
    pt = model.partable
    values = pt.unpack(free)
    at_zero = []
    for i in pt.rows_of("sd"):
        k = int(pt.frame.at[i, "free"])
        if k and abs(values[i]) < BOUNDARY_SD:
            at_zero.append(k - 1)
            warnings.append(f"{pt.names[i]} is on the boundary (estimate ~0): its variance is not distinguishable "
                            "from zero; its SE and the LR test are non-standard")
            warnings.append(no_se_at_boundary(str(pt.names[i])))
            if cov is not None:
                cov[k - 1, :] = np.nan
                cov[:, k - 1] = np.nan
    return at_zero


def level_predictions(model: CompiledModel, posterior: Sequence[Any]) -> list[LevelPrediction]:
    """The engine's per-level posterior modes and conditional SDs as LevelPrediction rows (unit labels, names).

    Each entry names its level (index or name) when the engine says so; otherwise the entries follow the
    levels that carry latent variables, lowest first (model order)."""
    levels = sorted({lat.level for lat in model.latent})
    by_name = {model.levels[k].name: k for k in levels}
    out = []
    for j, post in enumerate(posterior):
        tag = getattr(post, "level", None)
        lvl = by_name[tag] if isinstance(tag, str) else (int(tag) if tag is not None else levels[j])
        level = model.levels[lvl]
        mode = np.asarray(post.mode, dtype=float).reshape(level.n_units, -1)
        sd = np.asarray(post.sd, dtype=float).reshape(level.n_units, -1)
        out.append(LevelPrediction(level.name, [str(x) for x in level.labels],
                                   [model.latent[m].name for m in model.latent_at(lvl)], mode, sd))
    return out


def robust(model: CompiledModel, engine: Any, free: np.ndarray, info: np.ndarray, cov: np.ndarray | None,
           extras: dict) -> np.ndarray | None:
    """Sandwich covariance G/(G-1) B^-1 (sum_g s_g s_g') B^-1 from the engine's top-level unit scores, summed
    within the `vce` clusters; `cov` when the model asks for none (or the bread is singular)."""
    wt = model.weighting
    if wt is None or cov is None:
        return cov
    try:
        inverse = np.linalg.inv(bread(model, info))
    except np.linalg.LinAlgError:
        return cov
    J = model.partable.jacobian(free)[model.beta_rows]
    extras["fixed_vcov_model"] = J @ inverse @ J.T
    if wt.vce != "robust":
        return inverse
    top = model.nested_levels[-1]
    scores = np.asarray(engine.unit_scores(free), dtype=float)
    top_codes = model.levels[top].codes
    rows = np.arange(model.n) if wt.cluster_codes is None else np.asarray(wt.cluster_codes)
    cluster_of_top = np.zeros(model.levels[top].n_units, dtype=np.intp)
    cluster_of_top[top_codes] = np.unique(rows, return_inverse=True)[1].reshape(-1)
    G = int(cluster_of_top.max()) + 1
    S = np.zeros((G, scores.shape[1]))
    np.add.at(S, cluster_of_top, scores)
    factor = G / (G - 1) if G > 1 else 1.0
    V = factor * inverse @ (S.T @ S) @ inverse
    extras["vce"] = {"type": "robust", "cluster": wt.cluster_name, "n_clusters": G}
    return 0.5 * (V + V.T)


def fit_laplace(model: CompiledModel, progress: Progress | None = None, engine: Any = None,
                glm: Any = None) -> FitResult:
    """Fit `model` by the joint sparse Laplace approximation (module docstring).

    `engine` (a LaplaceEngine of `model` by default) and `glm` (the objective of the start values) may be
    stand-ins with the same methods whose evaluations are sums over partitions (mlmrun/distributed); an
    engine whose `posterior` is None leaves the empirical Bayes predictions out."""
    t0 = time.perf_counter()
    integration_plan(model)  # the spec's integration settings (points, check_points) as every Laplace fit
    est = model.spec.estimation
    warnings: list[str] = []
    phase(progress, "start values")
    if glm is None:
        glm = QuadratureObjective(model, IntegrationPlan("laplace", "mode", (), (), ()))
    glm_free, null_ll = fit_glm(glm, model.partable.pack(model.partable.start_values))
    start = starting_values(glm, glm_free)
    if engine is None:
        engine = LaplaceEngine(model)
    fg = Counted(engine, progress)
    lo, hi = bounds(model)
    phase(progress, "optimisation")
    x, F, ok, message = quasi_newton(fg, start, lo, hi, est.max_iter)
    for _ in range(BOUNDARY_RESTARTS):
        better = escape_zero_sds(model, fg, x, F, lo)
        if better is None:
            break
        x, F, ok, message = quasi_newton(fg, better[0], lo, hi, est.max_iter)
    phase(progress, "Newton polish")
    info = information(fg, x, lo, hi)
    st = polish(fg, x, F, info, lo, hi, min(POLISH_ITERATIONS, est.max_iter))
    fg.iterations += st.iterations
    moved = bool(np.any(np.abs(st.x - x) > REUSE_STEP * np.maximum(1.0, np.abs(x))))
    x, F = st.x, st.F
    if progress is not None:
        progress(fg.iterations, F)
    phase(progress, "standard errors")
    if moved:
        info = information(fg, x, lo, hi)
    names = model.partable.free_names()
    cov, problem = covariance_from_hessian(info, names)
    if problem:
        warnings.append(problem)
    g = projected(x, fg(x)[1], lo, hi)
    gain = 0.5 * float(g @ np.linalg.solve(positive_definite(info), g))
    converged = gain <= GAIN_WARN and (ok or st.converged)
    if not converged:
        why = message if not ok else "the Newton polish did not settle"
        warnings.append(f"optimisation did not converge: {why}; the predicted gain to the maximum is {gain:.3g}")
    extras: dict = {}
    cov = robust(model, engine, x, info, cov, extras)
    boundary(model, x, cov, warnings)
    phase(progress, "empirical Bayes")
    posterior = engine.posterior(x)
    if posterior is not None:
        extras["empirical_bayes"] = {p.level: p.as_dict() for p in level_predictions(model, posterior)}
    test = lr_test(model, F, null_ll)
    if test is not None and "vce" not in extras:  # no LR test of a pseudolikelihood or with robust SEs (Stata)
        extras["lr_test"] = test
    return FitResult(model=model, values=model.partable.unpack(x), free=x, cov_free=cov, loglik=float(F),
                     method="ML", integration={"method": "laplace", "points": 1}, converged=bool(converged),
                     iterations=int(fg.iterations), n_evaluations=int(fg.n_evaluations),
                     fit_seconds=time.perf_counter() - t0, warnings=tuple(warnings), extras=extras)
