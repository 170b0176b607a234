"""Optimisers for the quadrature likelihood: re-adaptation rounds, and the Laplace polish.

Two objectives exist (likelihood/quadrature/objective.py): the frozen one, with node
placement held fixed, whose exact gradient is the Fisher identity; and the
re-adapted one, nodes moved to the posterior modes at every parameter value,
which is what lme4, glmmTMB and gllamm report and maximise.

- `rounds` (adaptive and ghq quadrature, gllamm's scheme): maximise the frozen
  objective with L-BFGS-B and its exact gradient, re-adapt, repeat until the
  re-adapted log likelihood and the estimates stop changing. A round that
  lowers the re-adapted log likelihood is backtracked, so it never worsens.
  With several points per dimension the frozen and re-adapted objectives
  share their maximiser to quadrature accuracy.
- `polish` (Laplace, one point): the frozen one-point objective lacks the
  d log|H| / d theta term and has no useful maximiser, so the re-adapted
  objective itself is maximised by a bounded quasi-Newton method with
  central finite-difference gradients (documented fallback; the analytic
  Laplace gradient would need third derivatives of the families). It starts
  from the optimum of a cheap 5-point adaptive fit, whose observed
  information seeds the quasi-Newton matrix, so it takes a few steps only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlmrun.estimate.inference import hessian_forward, hessian_from_gradient
from mlmrun.likelihood.quadrature.adaptive import Adaptation
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.progress import phase

MAX_ROUNDS = 40
FORWARD_ABOVE = 12
"""More free parameters than this: forward instead of central differences of the gradient for information
matrices (p instead of 2p gradients; each is expensive in issue 4's factor models)."""
COARSE_STEP = 1e-2
"""A coarse first stage stops once a round moves no free parameter by more than this (the fine stage refines)."""
SHORT_ROUND = 3
READAPT_HALVINGS = 3
"""Step halvings a re-adapting ascent tries before it hands over to frozen rounds (`rounds`)."""
GAIN_TOL = 1e-12
"""Stop a round when the predicted gain g'B^-1 g / 2 is below this times max(1, |loglik|)."""


@dataclass
class Outcome:
    """Where an optimiser stopped."""

    free: np.ndarray
    adaptation: Adaptation | None
    loglik: float
    converged: bool
    iterations: int
    message: str = ""
    information: np.ndarray | None = None
    """Quasi-Newton approximation of the information at the end (a good start for later fits)."""
    gradient: np.ndarray | None = None
    """Gradient of the frozen objective at `free` with `adaptation` (saves an evaluation afterwards)."""


def bounds_arrays(obj: QuadratureObjective) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the free vector as arrays (+-inf where unbounded)."""
    b = obj.model.partable.free_bounds()
    lo = np.array([-np.inf if x[0] is None else x[0] for x in b])
    hi = np.array([np.inf if x[1] is None else x[1] for x in b])
    return lo, hi


def projected_gradient(obj: QuadratureObjective, free: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Gradient with components that push against an active bound zeroed (KKT check)."""
    lo, hi = bounds_arrays(obj)
    g = grad.copy()
    g[(free <= lo + 1e-10) & (g < 0)] = 0.0
    g[(free >= hi - 1e-10) & (g > 0)] = 0.0
    return g


def frozen_information(obj: QuadratureObjective, free: np.ndarray, ad: Adaptation,
                       gradient: np.ndarray | None = None, keep_moments: bool = False) -> np.ndarray:
    """Negated Hessian of the frozen-adaptation log likelihood at `free`.

    Analytic (`QuadratureObjective.hessian`) where `louis_applies`; otherwise differences of
    the analytic gradient, central (2p gradients) for up to FORWARD_ABOVE parameters and
    forward (p gradients, relative error ~1e-6, ample for SEs) beyond, where each gradient is
    expensive (issue 4's factor models). `gradient`: the gradient at `free`, when known;
    `keep_moments`: keep the posterior moments for empirical Bayes (QuadratureObjective.hessian).
    """
    if obj.louis_applies():
        return -obj.hessian(free, ad, keep_moments)

    def grad(x: np.ndarray) -> np.ndarray:
        return obj.frozen(x, ad)[1]

    if len(free) <= FORWARD_ABOVE:
        return -hessian_from_gradient(grad, free)
    return -hessian_forward(grad, free, gradient)


def positive_definite(info: np.ndarray) -> np.ndarray:
    """A positive definite stand-in for an information matrix (absolute eigenvalues, floored)."""
    w, V = np.linalg.eigh(0.5 * (info + info.T))
    w = np.abs(w)
    w = np.maximum(w, 1e-8 * max(float(w.max(initial=0.0)), 1e-8))
    return (V * w) @ V.T


@dataclass
class Ascent:
    """State of a quasi-Newton ascent."""

    x: np.ndarray
    F: float
    g: np.ndarray
    B: np.ndarray
    """Positive definite approximation of the information (-Hessian)."""
    converged: bool = False
    iterations: int = 0
    stalled: bool = False
    """The last step found no ascent within the line search (and the predicted gain was not negligible)."""


def ascend(fg: Callable[[np.ndarray], tuple[float, np.ndarray]], st: Ascent, lo: np.ndarray, hi: np.ndarray,
           tol: float, max_iter: int, t_min: float = 1e-10) -> Ascent:
    """Bounded quasi-Newton ascent: Newton steps with B, Armijo backtracking, damped BFGS updates of B.

    Converged when the Newton decrement g'B^-1 g / 2 (the predicted gain) is
    below tol * max(1, |F|): the estimates are then within about
    sqrt(2 tol |F|) standard errors of the optimum. Backtracking stops at step
    length `t_min` (the ascent then ends `stalled`).
    """
    x, F, g, B = st.x, st.F, st.g, st.B
    st.converged = st.stalled = False
    near_lo = lo + np.where(np.isfinite(lo), 1e-9 * (1.0 + np.abs(lo)), 0.0)
    near_hi = hi - np.where(np.isfinite(hi), 1e-9 * (1.0 + np.abs(hi)), 0.0)
    for _ in range(max_iter):
        active = ((x <= near_lo) & (g < 0)) | ((x >= near_hi) & (g > 0))
        accepted, gain = False, 0.0
        for _attempt in range(3):
            f = ~active
            p = np.zeros_like(x)
            p[f] = np.linalg.solve(B[np.ix_(f, f)], g[f])
            gain = 0.5 * float(g[f] @ p[f])
            if gain <= tol * max(1.0, abs(F)):
                break
            t = 1.0
            while t > t_min:
                x_new = np.clip(x + t * p, lo, hi)
                F_new, g_new = fg(x_new)
                if np.isfinite(F_new) and F_new >= F + 1e-4 * float(g @ (x_new - x)):
                    accepted = True
                    break
                t *= 0.25 if not np.isfinite(F_new) else 0.5
            # a step that runs into bounds: hold the coordinates it clipped at their bound and retry
            clipped = f & ((x + p < lo) | (x + p > hi))
            if accepted or not clipped.any():
                break
            active = active | clipped
        if gain <= tol * max(1.0, abs(F)):
            st.converged = True
            break
        st.iterations += 1
        if not accepted:
            st.converged = gain <= 1e3 * tol * max(1.0, abs(F))
            st.stalled = not st.converged
            break
        s_, y = x_new - x, -(g_new - g)
        Bs = B @ s_
        sBs = float(s_ @ Bs)
        if sBs > 0:
            sy = float(s_ @ y)
            theta = 1.0 if sy >= 0.2 * sBs else 0.8 * sBs / (sBs - sy)
            r = theta * y + (1.0 - theta) * Bs
            B = B + np.outer(r, r) / float(s_ @ r) - np.outer(Bs, Bs) / sBs
        x, F, g = x_new, F_new, g_new
    st.x, st.F, st.g, st.B = x, F, g, B
    return st


class Readapting:
    """The re-adapted objective for `ascend`: mode adaptation at every point evaluated, kept by point."""

    def __init__(self, obj: QuadratureObjective, rules: tuple, x: np.ndarray, ad: Adaptation, F: float,
                 g: np.ndarray) -> None:
        self.obj, self.rules, self.warm = obj, rules, ad
        self.seen: dict[bytes, tuple[Adaptation, float, np.ndarray]] = {x.tobytes(): (ad, F, g)}

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        ad = self.obj.adapt(x, self.warm, self.rules)
        F, g = self.obj.frozen(x, ad)
        self.seen[x.tobytes()] = (ad, F, g)
        self.warm = ad
        return F, g


def rounds(obj: QuadratureObjective, free: np.ndarray, rules: tuple, tol: float, max_iter: int,
           progress: Callable[[int, float], None] | None = None, ad: Adaptation | None = None,
           info: np.ndarray | None = None, coarse: bool = False, readapt: bool = False) -> Outcome:
    """Maximise with frozen adaptation and exact gradient, re-adapting between rounds until stable.

    The quasi-Newton matrix starts from `info` or else the observed information
    at the start (`frozen_information`) and is carried
    across rounds.
    While re-adaptation still moves the log likelihood, rounds are short
    (gllamm re-adapts at every Newton step); then a round runs to convergence.
    `coarse` (a first stage with few points, refined later): stop once rounds move
    the estimates by less than COARSE_STEP, and backtrack at most twice when
    re-adaptation lowers the log likelihood (with few points the frozen and
    re-adapted optima differ; chasing that is wasted on a stage that is refined).
    `readapt` (mode adaptation with many points, where the frozen gradient is the
    re-adapted objective's to quadrature accuracy): re-adapt at every point the
    ascent evaluates, as gllamm does at every Newton step. Mode finding costs a
    few percent of an evaluation there, and the re-adaptation after each round
    then costs nothing (the ascent's last point is already adapted): the
    flagship's full stage needs 5 evaluations instead of 7. Close to the optimum
    the re-adapted value moves by the modes' tolerance as well as by the
    parameters, so its line search may find no ascent: the first round that
    stalls (after at most READAPT_HALVINGS halvings) ends re-adaptation at every
    point, and the rounds go on with frozen nodes.
    """
    free = np.asarray(free, dtype=float)
    lo, hi = bounds_arrays(obj)
    if ad is None or len(ad.rules) != len(rules) or any(a is not b for a, b in zip(ad.rules, rules, strict=True)):
        ad = obj.adapt(free, ad, rules)
    F, g = obj.frozen(free, ad)
    if info is None:
        info = frozen_information(obj, free, ad, g)
    st = Ascent(free, F, g, positive_definite(info))
    iters, converged, message, change = 0, False, "", np.inf
    for r in range(MAX_ROUNDS):
        phase(progress, f"optimisation round {r + 1}{' (coarse points)' if coarse else ''}")
        frozen_ad = ad
        budget = SHORT_ROUND if abs(change) > 1e-3 else max(1, max_iter - iters)
        start_x, start_F = st.x, st.F
        st.iterations = 0
        handing_over = False
        if readapt:
            fg = Readapting(obj, rules, st.x, ad, st.F, st.g)
            st = ascend(fg, st, lo, hi, GAIN_TOL, budget, t_min=0.5**READAPT_HALVINGS)
            new_ad, F_new, g_new = fg.seen[st.x.tobytes()]
            readapt, handing_over = not st.stalled, st.stalled
        else:
            st = ascend(lambda x, _ad=frozen_ad: obj.frozen(x, _ad), st, lo, hi, GAIN_TOL, budget)
            new_ad = obj.adapt(st.x, ad, rules)
            F_new, g_new = obj.frozen(st.x, new_ad)
        iters += st.iterations
        stalled = False
        if F_new < start_F - 1e-10 * max(1.0, abs(start_F)):
            # frozen and re-adapted optima disagree (few points): never accept a lower re-adapted value
            x, F_new, g_new, new_ad = _backtrack(obj, rules, start_x, st.x, start_F, ad, 0.2 if coarse else 1e-3)
            st.x, stalled = x, x is start_x
        change = F_new - start_F
        step = float(np.max(np.abs(st.x - start_x), initial=0.0))
        ad, st.F, st.g = new_ad, F_new, g_new
        if progress is not None:
            progress(iters, st.F)
        if stalled:
            g_p = projected_gradient(obj, st.x, st.g)
            converged = 0.5 * float(g_p @ np.linalg.solve(st.B, g_p)) <= max(tol, 1e-6) * max(1.0, abs(st.F))
            message = "" if converged else "re-adaptation lowers the log likelihood at every step (too few points?)"
            break
        if st.converged and abs(change) <= tol * max(1.0, abs(st.F)) and step <= (COARSE_STEP if coarse else 1e-4):
            converged = True
            break
        if step == 0.0 and change == 0.0 and not handing_over:
            message = "no progress: the quasi-Newton step cannot raise the log likelihood"
            break
        if iters >= max_iter:
            message = f"reached max_iter = {max_iter} iterations"
            break
    else:
        message = f"adaptation did not settle within {MAX_ROUNDS} rounds"
    out = Outcome(st.x, ad, st.F, converged, iters, message)
    out.information, out.gradient = st.B, st.g
    return out


def _backtrack(obj: QuadratureObjective, rules: tuple, x0: np.ndarray, x1: np.ndarray, F0: float,
               ad: Adaptation, t_min: float = 1e-3) -> tuple:
    """Shorten a round's step until the re-adapted log likelihood does not fall (or return the start)."""
    t = 0.5
    while t > t_min:
        x = x0 + t * (x1 - x0)
        cand = obj.adapt(x, ad, rules)
        F, g = obj.frozen(x, cand)
        if F >= F0:
            return x, F, g, cand
        t *= 0.5
    cand = obj.adapt(x0, ad, rules)
    F, g = obj.frozen(x0, cand)
    return x0, F, g, cand


def fd_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                rel: float = 1e-5) -> np.ndarray:
    """Central differences (one-sided next to a bound)."""
    g = np.zeros_like(x)
    for j in range(len(x)):
        h = rel * max(1.0, abs(x[j]))
        up, down = x.copy(), x.copy()
        up[j] = min(x[j] + h, hi[j])
        down[j] = max(x[j] - h, lo[j])
        if up[j] == down[j]:
            continue
        g[j] = (f(up) - f(down)) / (up[j] - down[j])
    return g


def polish(f: Callable[[np.ndarray], float], x: np.ndarray, B: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           tol: float, max_iter: int = 50) -> Ascent:
    """Quasi-Newton ascent of a function without a gradient (central differences), from information B."""

    def fg(z: np.ndarray) -> tuple[float, np.ndarray]:
        return f(z), fd_gradient(f, z, lo, hi)

    x = np.clip(np.asarray(x, dtype=float), lo, hi)
    F, g = fg(x)
    return ascend(fg, Ascent(x, F, g, positive_definite(B)), lo, hi, tol, max_iter)
