"""Exact ML/REML for linear Gaussian models: profiled deviance, L-BFGS-B, boundary handling, SEs, LR test.

The objective is the profiled deviance of mlmrun.likelihood.gaussian.deviance over
the coordinates of mlmrun.estimate.gaussian_params (beta and, when possible,
sigma profiled out), with its analytic gradient (likelihood/gaussian/gradient.py:
the Fisher identity in matrix form, from the same block factorisation), so a
factor model with dozens of loadings and residual SDs costs a few dozen
evaluations instead of 2k per gradient. For ordinary LMMs (sigma profiled,
fixed loadings, no structural paths or residual structures) both come
straight from phi through the affine kernel (likelihood/gaussian/affine.py,
set up by estimate/gaussian_affine.py), without the parameter table, model
matrices or adjoint chain. Only where the final block of M is
factorised by sparse LU (no selected inverse) do central differences stand
in. The deviance is even in every SD coordinate, so an SD of 0 is always
stationary: runs that stop there are checked for a lower deviance off the
boundary and restarted from it. A Newton polish with the Hessian from
differences of the gradient then gives the convergence measure (the Newton
decrement). Finally SDs that are tiny are tried at exactly zero and kept
there if the deviance does not get worse (MixedModels' `fit!`). Standard
errors and the LR test: mlmrun.estimate.gaussian_se; empirical Bayes
predictions: mlmrun.estimate.gaussian_eb.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from mlmrun.compile.matrices import ModelMatrices, model_matrices, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.gaussian_affine import affine_kernel
from mlmrun.estimate.gaussian_eb import empirical_bayes, kernel_empirical_bayes
from mlmrun.estimate.gaussian_params import GaussianParams, start_values
from mlmrun.estimate.gaussian_se import BOUNDARY, covariance, gradient_hessian, lr_test
from mlmrun.estimate.inference import numeric_hessian
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import Profiled, profiled
from mlmrun.likelihood.gaussian.gradient import profiled_gradient
from mlmrun.likelihood.sparse import blocks as sparse_blocks
from mlmrun.progress import phase
from mlmrun.results import FitResult

PENALTY = 1e10
"""Deviance returned where the parameters give no valid model (indefinite correlation matrix)."""


@dataclass
class Run:
    """One optimiser run: where it ended and how."""

    phi: np.ndarray
    deviance: float
    iterations: int
    success: bool
    message: str
    decrement: float | None = None
    """Newton decrement after polishing (None: Hessian not positive definite there)."""


class Objective:
    """Profiled deviance as a function of phi, with counters and its gradient (analytic where available)."""

    def __init__(self, model: CompiledModel, design: GaussianDesign, params: GaussianParams, reml: bool,
                 use_kernel: bool = True):
        self.model, self.design, self.params, self.reml = model, design, params, reml
        self.n_evaluations = 0
        self.iterations = 0
        self.last: dict[bytes, float] = {}
        lo = [-np.inf if b[0] is None else b[0] for b in params.bounds]
        hi = [np.inf if b[1] is None else b[1] for b in params.bounds]
        self.lo, self.hi = np.array(lo, float), np.array(hi, float)
        self.kernel = affine_kernel(model, design, params, reml) if use_kernel else None
        """The affine kernel (likelihood/gaussian/affine.py) for ordinary LMMs, else None (the general path)."""
        self.analytic = self.kernel is not None or design.structure.q_remainder <= sparse_blocks.DENSE_MAX
        """The kernel, or the selected inverse, gives the analytic gradient unless the remainder needs sparse LU."""
        self._latest: tuple[bytes, Profiled, float, np.ndarray] | None = None
        """The last analytic evaluation (phi, profiled pieces, deviance, gradient): the optimiser's final point
        is asked for again by the polish and for the estimates, and costs a full evaluation each time."""
        self.gradients: dict[bytes, np.ndarray] = {}
        """Analytic gradients of the general path at the last few points (the optimum's, for the SEs)."""

    def matrices(self, phi: np.ndarray) -> tuple[np.ndarray, ModelMatrices] | None:
        """Partable values and model matrices at phi (sigma 1 when profiled), or None where invalid."""
        phi = np.asarray(phi, float)
        values = self.model.partable.unpack(self.params.free_vector(phi))
        mats = model_matrices(self.model, values)
        if not mats.valid:
            return None
        return values, self.params.with_factors(mats, phi)

    def fit(self, phi: np.ndarray) -> Profiled | None:
        """Profiled pieces at phi, or None where phi gives no valid model."""
        if self._latest is not None and self._latest[0] == np.asarray(phi, float).tobytes():
            return self._latest[1]
        if self.kernel is not None:
            try:
                return self.kernel.profiled(np.asarray(phi, float))
            except np.linalg.LinAlgError:
                return None
        at = self.matrices(phi)
        if at is None:
            return None
        try:
            return profiled(self.design, at[1], reml=self.reml, profile_sigma=self.params.profile_sigma)
        except np.linalg.LinAlgError:
            return None

    def _remember(self, phi: np.ndarray, dev: float) -> None:
        if len(self.last) > 256:  # only recent points are looked up (progress reports)
            self.last.clear()
        self.last[np.asarray(phi, float).tobytes()] = dev

    def __call__(self, phi: np.ndarray) -> float:
        self.n_evaluations += 1
        res = self.fit(phi)
        dev = res.deviance if res is not None and np.isfinite(res.deviance) else PENALTY
        self._remember(phi, dev)
        return dev

    def value_and_grad(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        """Deviance and its analytic gradient in phi (likelihood/gaussian/gradient.py, mapped through the partable)."""
        phi = np.asarray(phi, float)
        if not self.analytic:
            return self(phi), self.numeric_gradient(phi)
        key = phi.tobytes()
        if self._latest is not None and self._latest[0] == key:
            return self._latest[2], self._latest[3].copy()
        self.n_evaluations += 1
        if self.kernel is not None:
            return self._kernel_value_and_grad(phi, key)
        at = self.matrices(phi)
        dev, g = PENALTY, np.zeros(len(phi))
        if at is not None:
            values, mats = at
            try:
                res, grad = profiled_gradient(self.design, mats, reml=self.reml, profile_sigma=self.params.profile_sigma)
            except np.linalg.LinAlgError:
                res, grad = None, None
            if res is not None and grad is not None and np.isfinite(res.deviance):
                pt = self.model.partable
                free = self.params.free_vector(phi)
                g_free = pt.jacobian(free).T @ values_gradient(self.model, values, grad)
                dev, g = res.deviance, -2.0 * self.params.phi_gradient(g_free, grad.L, phi)
                self._latest = (key, res, dev, g.copy())
                if len(self.gradients) >= 16:
                    self.gradients.pop(next(iter(self.gradients)))
                self.gradients[key] = g.copy()
        self._remember(phi, dev)
        return dev, g

    def _kernel_value_and_grad(self, phi: np.ndarray, key: bytes) -> tuple[float, np.ndarray]:
        """`value_and_grad` on the affine kernel."""
        assert self.kernel is not None
        dev, g = PENALTY, np.zeros(len(phi))
        try:
            res, grad = self.kernel.value_and_grad(phi)
        except np.linalg.LinAlgError:
            res, grad = None, None
        if res is not None and grad is not None and np.isfinite(res.deviance) and np.all(np.isfinite(grad)):
            dev, g = res.deviance, grad
            self._latest = (key, res, dev, g.copy())
        self._remember(phi, dev)
        return dev, g

    def gradient(self, phi: np.ndarray) -> np.ndarray:
        """Gradient of the deviance in phi: analytic, or central differences where the remainder is sparse."""
        return self.value_and_grad(phi)[1] if self.analytic else self.numeric_gradient(phi)

    def numeric_gradient(self, phi: np.ndarray) -> np.ndarray:
        """Central differences; one-sided at bounds, except that the deviance is even in SD coordinates.

        At an SD coordinate of exactly 0 the forward difference is used: the
        central one is 0 by symmetry and would hide that moving away from the
        boundary lowers the deviance.
        """
        phi = np.asarray(phi, float)
        g = np.zeros(len(phi))
        f0 = None
        for j in range(len(phi)):
            h = 1e-5 * max(abs(phi[j]), 0.1)
            up, down = phi.copy(), phi.copy()
            up[j] += h
            down[j] -= h
            forward = (down[j] < self.lo[j] and not self.params.sym[j]) or (self.params.sym[j] and phi[j] == 0)
            if up[j] > self.hi[j]:
                f0 = self(phi) if f0 is None else f0
                g[j] = (f0 - self(down)) / h
            elif forward:
                f0 = self(phi) if f0 is None else f0
                g[j] = (self(up) - f0) / h
            else:
                g[j] = (self(up) - self(down)) / (2 * h)
        return g

    def projected_gradient(self, phi: np.ndarray) -> np.ndarray:
        """Gradient with components that push against an active bound removed."""
        g = self.gradient(phi)
        at_lo = (phi <= self.lo) & (g > 0)
        at_hi = (phi >= self.hi) & (g < 0)
        return np.where(at_lo | at_hi, 0.0, g)

    def minimize(self, phi0: np.ndarray, max_iter: int, tol: float, progress) -> Run:
        """L-BFGS-B from phi0, reporting (iteration, log likelihood) after each iteration.

        Iterations are numbered across restarts (self.iterations), so the
        CLI's log counts on when a run restarts off a boundary. The relative
        reduction at which L-BFGS-B stops is at most 1e-10, not 1e-12: below
        that the deviance's rounding decides its line searches (productivity's
        REML fit spent 38 evaluations instead of 8 there), and the Newton polish
        that follows takes the optimum to a decrement below 1e-10 anyway.
        """

        def callback(xk: np.ndarray) -> None:
            self.iterations += 1
            if progress is not None:
                dev = self.last.get(np.asarray(xk, float).tobytes())
                progress(self.iterations, -0.5 * (dev if dev is not None else self(xk)))

        fun, jac = (self.value_and_grad, True) if self.analytic else (self, self.numeric_gradient)
        res = optimize.minimize(fun, self.params.clip(phi0), jac=jac, method="L-BFGS-B",
                                bounds=self.params.bounds, callback=callback,
                                options={"maxiter": max_iter, "ftol": min(tol, 1e-10), "gtol": 1e-7, "maxls": 40})
        return Run(np.asarray(res.x, float), float(res.fun), int(res.nit), bool(res.success), str(res.message))

    def snap_to_boundary(self, phi: np.ndarray, dev: float) -> tuple[np.ndarray, float]:
        """Set tiny SD coordinates to exactly 0 when that does not worsen the deviance."""
        phi = phi.copy()
        scale = self._sd_scale(phi)
        for j in np.flatnonzero(self.params.sym):
            if 0 < abs(phi[j]) < BOUNDARY * scale:
                trial = phi.copy()
                trial[j] = 0.0
                new = self(trial)
                if new <= dev + 1e-10 * max(1.0, abs(dev)):
                    phi, dev = trial, new
        return phi, dev

    def escape(self, phi: np.ndarray, dev: float) -> tuple[np.ndarray, float] | None:
        """A better point off the boundary, if an SD coordinate stuck at ~0 is a saddle rather than an optimum.

        The deviance is even in every SD coordinate, so 0 is always stationary
        there; L-BFGS-B stops at it even where the deviance falls away from it.
        """
        scale = self._sd_scale(phi)
        best = None
        for j in np.flatnonzero(self.params.sym):
            if abs(phi[j]) >= BOUNDARY * scale:
                continue
            for t in (0.01, 0.1, 0.5, 1.0):
                trial = phi.copy()
                trial[j] = t * scale
                f = self(trial)
                if f < dev - 1e-6 and (best is None or f < best[1]):
                    best = (trial, f)
        return best

    def polish(self, phi: np.ndarray, dev: float, steps: int = 6) -> tuple[np.ndarray, float, float | None]:
        """Newton steps on the coordinates off active bounds; returns (phi, deviance, Newton decrement).

        One Hessian at the L-BFGS-B optimum (differences of the analytic
        gradient, `gradient_hessian`; else second differences) serves every
        step (the gradient is recomputed). The decrement g'H^-1g/2 is the deviance
        reduction a further Newton step would bring: the honest convergence
        measure. None when the Hessian is not positive definite there. A step
        predicted to gain less than 1e-8 is tried at two lengths only.
        """
        g = self.gradient(phi)
        active = ((phi <= self.lo) & (g >= 0)) | ((phi >= self.hi) & (g <= 0))
        free = np.flatnonzero(~active)
        if not len(free):
            return phi, dev, 0.0
        base = phi.copy()

        def sub(x: np.ndarray) -> float:
            trial = base.copy()
            trial[free] = x
            return self(trial)

        if self.analytic:
            def sub_grad(x: np.ndarray) -> np.ndarray:
                trial = base.copy()
                trial[free] = x
                return self.gradient(trial)[free]

            H = gradient_hessian(sub_grad, phi[free], 1e-5 * np.maximum(np.abs(phi[free]), 0.1), g[free])
        else:
            H = numeric_hessian(sub, phi[free], 1e-4 * np.maximum(np.abs(phi[free]), 0.1))
        try:
            cf = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            return phi, dev, None
        decrement = np.inf
        for _ in range(steps):
            step = -np.linalg.solve(cf.T, np.linalg.solve(cf, g[free]))
            decrement = float(-g[free] @ step / 2)
            if decrement < 1e-10:
                break
            t, moved = 1.0, False
            # Below a predicted gain of 1e-8 the deviance's rounding decides acceptance: halving on cannot help.
            floor = 1e-3 if decrement > 1e-8 else 0.3
            while t > floor:
                trial = phi.copy()
                trial[free] += t * step
                trial = np.clip(trial, self.lo, self.hi)
                # With the gradient at the trial point, the one asked for after an accepted step is remembered.
                f = self.value_and_grad(trial)[0] if self.analytic else self(trial)
                if f < dev:
                    phi, dev, moved = trial, f, True
                    break
                t /= 2
            if not moved:
                break
            g = self.gradient(phi)
        return phi, dev, decrement

    def _sd_scale(self, phi: np.ndarray) -> float:
        """Scale of the SD coordinates: 1 when relative to a profiled sigma, else the smallest residual SD."""
        if self.params.profile_sigma:
            return 1.0
        rows = self.model.partable.rows_of("residual")
        if not len(rows):
            return 1.0
        values = self.model.partable.unpack(self.params.free_vector(phi))
        return float(np.min(values[rows])) or 1.0


def _optimise(obj: Objective, start: np.ndarray, max_iter: int, tol: float, progress) -> Run:
    """L-BFGS-B, escapes from SD saddles at 0 (restarting from the better point), then Newton polish."""
    params = obj.params
    if params.n_phi == 0:
        return Run(start, obj(start), 0, True, "nothing to optimise")
    phi, iterations = start, 0
    for _ in range(4):
        run = obj.minimize(phi, max_iter, tol, progress)
        iterations += run.iterations
        moved = obj.escape(run.phi, run.deviance)
        if moved is None:
            break
        phi = moved[0]
    phi, dev, decrement = obj.polish(run.phi, run.deviance)
    return Run(phi, dev, iterations, run.success, run.message, decrement)


def _converged(obj: Objective, run: Run) -> tuple[bool, str]:
    """Honest convergence: a finite optimum where one more Newton step would gain < 1e-4 in deviance.

    Where the Hessian is not positive definite (a flat direction at a
    boundary) the projected gradient must be small instead.
    """
    if not np.isfinite(run.deviance) or run.deviance >= PENALTY:
        return False, "no valid optimum"
    if obj.params.n_phi == 0:
        return True, "nothing to optimise"
    if "ITERATIONS REACHED LIMIT" in run.message.upper():
        return False, "iteration limit reached"
    if run.decrement is not None:
        return run.decrement < 1e-4, f"Newton decrement {run.decrement:.3g}"
    pg = obj.projected_gradient(run.phi)
    biggest = float(np.max(np.abs(pg)))
    return biggest <= 1e-3 + 1e-9 * abs(run.deviance), f"largest projected gradient {biggest:.3g}"


def _lme4_start(params: GaussianParams, phi: np.ndarray) -> np.ndarray:
    """Second start: relative SDs 1, identity Cholesky factors (lme4's default theta)."""
    out = phi.copy()
    for p, kind in enumerate(params.plain_kind):
        if kind == "sd":
            out[p] = 1.0
    for cb in params.chol:
        k = len(cb.sd_idx)
        out[cb.pos] = np.eye(k)[np.tril_indices(k)]
    return out


def _natural_values(obj: Objective, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, Profiled]:
    """Free vector and partable values at phi, beta and sigma at their profiled values."""
    res = obj.fit(phi)
    if res is None:
        raise np.linalg.LinAlgError("the optimum does not give a valid model")
    sigma = res.sigma if res.sigma is not None else 1.0
    free = obj.params.free_vector(phi, sigma, res.beta)
    return free, obj.model.partable.unpack(free), res


def best_of_starts(obj: Objective, params: GaussianParams, phi0: np.ndarray, est: Any, progress: Any
                   ) -> tuple[Run, list[Run], bool, str]:
    """Optimise from `phi0`, then from lme4's start unless the first run converged: the best run, every run,
    and the convergence verdict and measure of the best."""
    runs: list[Run] = []
    best: Run | None = None
    converged, measure = False, ""
    for k, start in enumerate((phi0, _lme4_start(params, phi0))):
        phase(progress, f"optimisation (start {k + 1})")
        run = _optimise(obj, start, est.max_iter, est.tol, progress)
        runs.append(run)
        if best is None or run.deviance < best.deviance:
            best = run
        converged, measure = _converged(obj, best)
        if converged:
            break
    assert best is not None
    return best, runs, converged, measure


def fit_gaussian(model: CompiledModel, progress=None) -> FitResult:
    """Fit a linear Gaussian model by exact profiled ML or REML (Stata mixed / lme4 lmer equivalent)."""
    t0 = time.perf_counter()
    est = model.spec.estimation
    reml = est.method == "REML"
    design = GaussianDesign(model)
    params = GaussianParams(model)
    obj = Objective(model, design, params, reml)
    phase(progress, "start values")
    free0, sigma0 = start_values(model, params)
    phi0 = params.phi_from_free(free0, sigma0)
    best, runs, converged, measure = best_of_starts(obj, params, phi0, est, progress)
    phi, dev = obj.snap_to_boundary(best.phi, best.deviance)
    free, values, res = _natural_values(obj, phi)
    loglik = -0.5 * res.deviance
    warnings: list[str] = []
    if not converged:
        warnings.append(f"the optimiser did not converge ({best.message}; {measure}); estimates may be unreliable")
    phase(progress, "standard errors")
    g_phi = obj.gradients.get(np.asarray(phi, float).tobytes()) if obj.kernel is None else None
    cov, cov_warnings, n_hessian = covariance(design, params, reml, free, values, res, obj.kernel, phi, g_phi)
    obj.n_evaluations += n_hessian
    warnings.extend(cov_warnings)
    fixed_vcov = res.fixed_vcov
    if cov is not None and np.all(np.isfinite(cov[np.ix_(params.beta_idx, params.beta_idx)])):
        fixed_vcov = cov[np.ix_(params.beta_idx, params.beta_idx)]
    extras = {
        "fixed_vcov": fixed_vcov.tolist(),
        "fixed_names": [str(model.partable.names[r]) for r in design.beta_rows],
        "profiled_sigma": params.profile_sigma,
        "design": design.describe(None if obj.kernel is None else type(obj.kernel.kernel).__name__),
        "optimizer": {"method": f"L-BFGS-B ({'analytic' if obj.analytic else 'central-difference'} gradient)",
                      "message": best.message,
                      "starts": len(runs), "convergence": measure},
    }
    lr = lr_test(model, loglik, reml, values, design)
    if lr is not None:
        extras["lr_test"] = lr
    phase(progress, "empirical Bayes")
    mats = model_matrices(model, values)
    fast = (kernel_empirical_bayes(design, mats, obj.kernel, phi, res.sigma)
            if obj.kernel is not None and res.sigma is not None else None)
    predictions, eb_warnings = (fast, []) if fast is not None else empirical_bayes(design, mats)
    extras["empirical_bayes"] = {p.level: p.as_dict() for p in predictions}
    warnings.extend(eb_warnings)
    return FitResult(
        model=model, values=values, free=free, cov_free=cov, loglik=float(loglik), method="REML" if reml else "ML",
        integration={"method": "exact", "points": None}, converged=converged,
        iterations=int(sum(r.iterations for r in runs)), n_evaluations=obj.n_evaluations,
        fit_seconds=time.perf_counter() - t0, warnings=tuple(dict.fromkeys(warnings)), extras=extras,
    )
