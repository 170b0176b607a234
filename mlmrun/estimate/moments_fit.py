"""ML from the sufficient statistics (likelihood/moments/likelihood.py): Fisher scoring, SEs, fit measures, standardized solution.

Fisher scoring (Newton with the expected information, step halving on the
log likelihood) from lavaan-like starting values converges in a few dozen
O(p^3)-per-pattern steps. Standard errors follow lavaan's defaults: the
expected information for complete data, the observed information (central
differences of the analytic gradient) with missing data. The result is
reported on a copy of the parameter table whose free rows are natural values
(identity transforms), so a negative residual variance (a Heywood case,
allowed as in lavaan) appears as a negative signed root sd and its var row.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.compile.partable import ParTable
from mlmrun.estimate.fit_indices import fit_measures, saturated
from mlmrun.estimate.moments_eb import factor_scores
from mlmrun.estimate.standardized import standardized
from mlmrun.likelihood.moments.checks import active_coordinates, saturated_means
from mlmrun.likelihood.moments.data import MomentsData, Pattern
from mlmrun.likelihood.moments.likelihood import Evaluation, MomentsModel, evaluate
from mlmrun.results import FitResult


def start_theta(model: CompiledModel, mm: MomentsModel, data: MomentsData) -> np.ndarray:
    """lavaan-like starts: item means by least squares, residual variances half the item variances,
    latent variances 0.05, other rows from the parameter table (user starts and start_from kept)."""
    theta = mm.theta_of(model.partable.start_values)
    spec = model.spec
    if spec.estimation.start_from is not None:
        return theta
    named = set(spec.estimation.start)
    names = model.partable.names
    free_of = model.partable.frame["free"].to_numpy(dtype=int)
    p = data.p
    total = np.zeros(p)
    sq = np.zeros(p)
    count = np.zeros(p)
    for pat in data.patterns:
        total[pat.items] += pat.n * pat.mean
        sq[pat.items] += pat.n * (np.diag(pat.cov) + pat.mean ** 2)
        count[pat.items] += pat.n
    mean = total / np.maximum(count, 1)
    var = np.maximum(sq / np.maximum(count, 1) - mean ** 2, 1e-8)
    d = data.design
    if d.X.shape[1]:
        beta = np.linalg.lstsq(d.X, mean - d.offset, rcond=None)[0]
        for c, r in enumerate(model.beta_rows):
            if free_of[r] and names[r] not in named:
                theta[free_of[r] - 1] = beta[c]
    for r in mm.free_rows:
        if names[r] in named:
            continue
        k = free_of[r] - 1
        kind = mm.row_kind(int(r))
        if kind == "residual":
            theta[k] = 0.5 * float(np.mean(var[d.scale_row == r]))
        elif kind == "sd":
            theta[k] = np.sqrt(0.05)
        elif kind == "lvar":
            theta[k] = 0.05
        elif kind == "lcov":
            theta[k] = 0.0
    return theta


def _fisher(mm: MomentsModel, theta: np.ndarray, active: np.ndarray, max_iter: int,
            progress) -> tuple[np.ndarray, Evaluation, int, int, float]:
    """Fisher scoring while far from the optimum (Newton decrement > 1), then quasi-Newton: Newton steps with
    H = the last expected information refreshed by BFGS updates from gradient changes (so the steps become Newton steps with the observed
    information, which Fisher scoring never reaches when the model misfits), step halving on the log likelihood.
    Returns (theta, evaluation at theta with the expected information, iterations, evaluations, Newton decrement).
    """
    ev = evaluate(mm, theta, grad=True, info=True)
    n_eval, it = 1, 0
    if not np.isfinite(ev.loglik):
        return theta, ev, 0, n_eval, np.inf
    H = ev.info[np.ix_(active, active)].copy()
    g = ev.grad[active]
    for it in range(1, max_iter + 1):
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, g, rcond=None)[0]
        decrement = float(g @ step) / 2
        if decrement < 0:
            H = evaluate(mm, theta, info=True).info[np.ix_(active, active)]
            n_eval += 1
            continue
        if decrement < 1e-11 * max(1.0, abs(ev.loglik)):
            break
        alpha, moved = 1.0, False
        while alpha > 1e-8:
            trial = theta.copy()
            trial[active] += alpha * step
            trial = np.clip(trial, mm.lower, mm.upper)
            new = evaluate(mm, trial, grad=True)
            n_eval += 1
            if np.isfinite(new.loglik) and new.loglik >= ev.loglik - 1e-12 * abs(ev.loglik):
                moved = True
                break
            alpha /= 2
        if not moved:
            break
        g_new = new.grad[active]
        s_vec = trial[active] - theta[active]
        y_vec = g - g_new
        sy = float(s_vec @ y_vec)
        if sy > 1e-12 * float(np.linalg.norm(s_vec) * np.linalg.norm(y_vec)):
            Hs = H @ s_vec
            H = H - np.outer(Hs, Hs) / float(s_vec @ Hs) + np.outer(y_vec, y_vec) / sy
        theta, ev, g = trial, new, g_new
        if decrement > 1.0:  # far from the optimum: plain Fisher scoring, the expected information afresh
            H = evaluate(mm, theta, info=True).info[np.ix_(active, active)]
        if progress is not None:
            progress(it, ev.loglik)
    ev = evaluate(mm, theta, grad=True, info=True)
    n_eval += 1
    g = ev.grad[active]
    try:
        decrement = float(g @ np.linalg.solve(ev.info[np.ix_(active, active)], g)) / 2
    except np.linalg.LinAlgError:
        decrement = np.inf
    return theta, ev, it, n_eval, decrement


def _observed_information(mm: MomentsModel, theta: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Minus the Hessian of the log likelihood: central differences of the analytic gradient."""
    idx = np.flatnonzero(active)
    H = np.zeros((len(idx), len(idx)))
    for j, k in enumerate(idx):
        h = 1e-5 * max(1.0, abs(theta[k]))
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        H[:, j] = (evaluate(mm, up, grad=True).grad[idx] - evaluate(mm, down, grad=True).grad[idx]) / (2 * h)
    return -(H + H.T) / 2


def _result_partable(model: CompiledModel, active: np.ndarray, values: np.ndarray) -> ParTable:
    """The parameter table as reported: identity transforms, values at the estimates, item means fixed
    under `meanstructure: false` (lavaan does not count them)."""
    old = model.partable.frame["free"].to_numpy(dtype=int)
    renumber = np.zeros(len(active) + 1, dtype=int)
    renumber[1:][active] = np.arange(1, int(active.sum()) + 1)
    frame = model.partable.frame.assign(transform="identity", value=values, free=renumber[old], lower=-np.inf,
                                        upper=np.inf)
    return ParTable(frame)


def _natural_cov(mm: MomentsModel, theta: np.ndarray, active: np.ndarray, cov_theta: np.ndarray | None,
                 first: np.ndarray) -> np.ndarray | None:
    """Covariance of the reported free values (first row of each active free number): the delta method
    through the map from coordinates (variances, covariances) to partable values (SDs, correlations)."""
    if cov_theta is None:
        return None
    idx = np.flatnonzero(active)
    J = np.zeros((len(first), len(idx)))
    for j, k in enumerate(idx):
        h = 1e-6 * max(1.0, abs(theta[k]))
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        J[:, j] = (mm.values(up)[first] - mm.values(down)[first]) / (2 * h)
    return J @ cov_theta @ J.T


def _warnings(model: CompiledModel, mm: MomentsModel, values: np.ndarray, converged: bool,
              decrement: float) -> list[str]:
    out = []
    if not converged:
        out.append(f"the optimiser did not converge (Newton decrement {decrement:.3g}); estimates may be unreliable")
    names = model.partable.names
    negative = [f"{names[r]} = {values[r]:.4g}" for r in np.flatnonzero(mm.var_rows) if values[r] < 0]
    if negative:
        out.append("some variances are negative (a Heywood case; shown as a negative signed root sd and a "
                   "negative var): " + ", ".join(negative) + "; the model may be misspecified")
    return out


def fit_moments(model: CompiledModel, data: MomentsData, progress=None) -> FitResult:
    """Fit an all-gaussian factor model from its per-pattern sufficient statistics."""
    t0 = time.perf_counter()
    est = model.spec.estimation
    mm = MomentsModel(model, data)
    active = active_coordinates(model, mm)
    theta = start_theta(model, mm, data)
    if not est.meanstructure:
        beta = saturated_means(model, data)
        free = model.partable.frame["free"].to_numpy()
        theta[free[model.beta_rows] - 1] = beta
    iterations = n_eval = 0
    h1 = saturated(data)
    staged = mm
    if not data.complete:  # start FIML from the fit to the EM estimates of the saturated moments
        whole = Pattern(np.arange(data.p), data.n_units, h1[1], h1[2], np.arange(data.n_units))
        staged = MomentsModel(model, dataclasses.replace(data, patterns=(whole,)))
    rescov = np.zeros(mm.n_theta, dtype=bool)
    for r in mm.free_rows:
        rescov[mm.free[r] - 1] |= mm.row_kind(int(r)) == "rescov"
    if est.start_from is None:
        for stage in ([active & ~rescov] if rescov.any() else []) + ([active] if staged is not mm else []):
            theta, _, more, n_more, _ = _fisher(staged, theta, stage, est.max_iter, progress)
            iterations, n_eval = iterations + more, n_eval + n_more
    theta, ev, more, n_more, decrement = _fisher(mm, theta, active, est.max_iter, progress)
    iterations, n_eval = iterations + more, n_eval + n_more
    converged = bool(np.isfinite(ev.loglik) and decrement < 1e-6)
    values = mm.values(theta)
    cov_theta = None
    if np.isfinite(ev.loglik):
        info = ev.info[np.ix_(active, active)] if data.complete else _observed_information(mm, theta, active)
        n_eval += 0 if data.complete else 2 * int(active.sum())
        try:
            cov_theta = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            cov_theta = None
    warnings = _warnings(model, mm, values, converged, decrement)
    if cov_theta is None or not np.all(np.isfinite(np.diag(cov_theta))) or np.any(np.diag(cov_theta) < 0):
        warnings.append("the information matrix is singular at the estimates: standard errors are not available")
        cov_theta = None
    pt = _result_partable(model, active, values)
    first = _first_rows(pt)
    reported = dataclasses.replace(model, partable=pt)
    imp = ev.implied if ev.implied is not None else mm.implied(theta)
    extras = {
        "optimizer": {"method": "Fisher scoring then BFGS-updated Newton steps on the sufficient statistics (moments engine)",
                      "patterns": len(data.patterns), "items": data.p, "units": data.n_units,
                      "newton_decrement": decrement,
                      "information": "expected" if data.complete else "observed"},
        "n_independent": data.n_units,
        "fit_measures": fit_measures(model, data, imp, ev.loglik, int(pt.n_free), h1),
        "standardized": standardized(model, mm, data, imp, values),
        "empirical_bayes": factor_scores(model, data, imp),
    }
    return FitResult(
        model=reported, values=values, free=values[first], cov_free=_natural_cov(mm, theta, active, cov_theta, first),
        loglik=float(ev.loglik), method="ML", integration={"method": "moments", "points": None}, converged=converged,
        iterations=int(iterations), n_evaluations=int(n_eval), fit_seconds=time.perf_counter() - t0,
        warnings=tuple(warnings), extras=extras,
    )


def _first_rows(pt: ParTable) -> np.ndarray:
    free = pt.frame["free"].to_numpy(dtype=int)
    return np.array([int(np.flatnonzero(free == k)[0]) for k in range(1, pt.n_free + 1)], dtype=int)
