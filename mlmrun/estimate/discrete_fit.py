"""Fit a model with a discrete latent distribution: seeded starts, EM, quasi-Newton, merging, Gateaux search.

Steps:
1. The model without latent variables (every point at 0) gives the fixed part
   and family parameters a start.
2. `starts` starting values (distribution.starts, default 5, seeded by
   distribution.seed): start 1 places NPMLE points at the K-point Gauss-Hermite
   nodes with their weights (a discretised N(0, 1)); the others (and every
   start of a latent class model) assign each unit to a point at random
   (numpy's default_rng([seed, start])) and take one M-step from that split.
3. From each start, EM_ITERATIONS EM iterations (estimate/em.py) get close;
   the POLISHED starts with the highest log likelihood after EM are then
   converged by L-BFGS-B with the analytic gradient (likelihood/quadrature/discrete.py)
   and the best is kept. Reported: every start's log likelihood after EM, the
   converged ones and their spread (max - min).
4. Points that coincide or carry no probability are merged (the NPMLE's
   collapse): the pair whose merging costs least is merged and the model
   with one point fewer refitted from there; accepted (with a warning) when
   the log likelihood falls by less than MERGE_TOL.
5. `discrete: auto` starts at one point and adds one where the Gateaux
   derivative is largest while it exceeds GATEAUX_TOL and the added point
   raises the log likelihood (Rabe-Hesketh, Pickles & Skrondal 2003).
6. Standard errors: the observed information by central differences of the
   analytic gradient.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from mlmrun.compile.discrete import discrete_rows, masses, resize
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.em import em
from mlmrun.estimate.inference import covariance_from_hessian, hessian_from_gradient, numeric_hessian
from mlmrun.likelihood.quadrature.discrete import DiscreteObjective
from mlmrun.likelihood.quadrature.rules import gauss_hermite
from mlmrun.results import FitResult

MERGE_TOL = 1e-5
"""A merge of two points (or dropping an empty one) is accepted when the refitted log likelihood falls less than this."""
MERGE_SCREEN = 0.05
"""Merged points (not yet refitted) that lose more log likelihood than this are not tried."""
GATEAUX_TOL = 1e-3
"""`discrete: auto` adds a point while the largest Gateaux derivative exceeds this."""
GATEAUX_GRID = 81
"""Candidate locations per dimension (one dimension; 21 per dimension in two) spanning the masses +- max(2, range)
for `discrete: auto`; the diagnostic reported after a fit with fixed K uses SUMMARY_GRID."""
SUMMARY_GRID = 31
MAX_AUTO_POINTS = 20
START_BLOCKS = ("fixed", "threshold", "residual", "hetero", "shape", "loading")


@dataclass
class Solution:
    """One fitted model (a given number of points) and how it was reached."""

    model: CompiledModel
    obj: DiscreteObjective
    free: np.ndarray
    loglik: float
    converged: bool
    iterations: int
    start_logliks: list[float] = field(default_factory=list)
    """Log likelihood of every start after its EM iterations."""
    best_start: int = 0
    polished: dict[int, float] = field(default_factory=dict)
    """Start -> converged log likelihood, for the starts the quasi-Newton stage converged."""


def _bounds(model: CompiledModel) -> list[tuple[float | None, float | None]]:
    return model.partable.free_bounds()


def _free_of(model: CompiledModel, blocks: tuple[str, ...]) -> np.ndarray:
    pt = model.partable
    first = [int(np.flatnonzero(pt.frame["free"].to_numpy() == k)[0]) for k in range(1, pt.n_free + 1)]
    return np.isin(pt.frame["block"].to_numpy()[first], blocks)


def objective_for(model: CompiledModel):
    """The discrete engine; the mixed one when normal latent variables sit only below the discrete level; the
    nested one (the points as a level of the nested quadrature) when some sit above it."""
    if len(model.discrete) > 1 and not model.latent:
        from mlmrun.likelihood.quadrature.discrete_nested import NestedObjective
        from mlmrun.likelihood.quadrature.plan import integration_plan

        return NestedObjective(model, integration_plan(model))
    if model.latent:
        from mlmrun.likelihood.quadrature.plan import integration_plan

        if len(model.discrete) > 1 or any(lat.level > model.discrete[0].level for lat in model.latent):
            from mlmrun.likelihood.quadrature.discrete_nested import NestedObjective

            return NestedObjective(model, integration_plan(model))
        from mlmrun.likelihood.quadrature.discrete_mixed import MixedObjective

        plan = integration_plan(model)
        return MixedObjective(model, plan.with_points(LAPLACE_START_POINTS) if plan.method == "laplace" else plan)
    return DiscreteObjective(model)


LAPLACE_START_POINTS = 5
"""Laplace with normal latent variables below the points: the fit first runs adaptive quadrature with this many
points per dimension (nodes at the modes of each point), then `laplace_polish` maximises the Laplace likelihood."""


def is_laplace(obj) -> bool:
    return hasattr(obj, "quad") and obj.quad.plan.method == "laplace"


def laplace_polish(sol: Solution, information: np.ndarray) -> tuple[Solution, Callable[[np.ndarray], float]]:
    """Maximise the re-adapted Laplace log likelihood (one node per point at the modes) from the coarse fit.

    Its frozen-mode gradient is not the Laplace likelihood's (the modes and curvatures move with the
    parameters), so the quasi-Newton polish of estimate/quadrature_opt.py uses central differences, as the
    quadrature fitter does for Laplace; standard errors come from its second differences.
    """
    from mlmrun.estimate.quadrature_opt import polish
    from mlmrun.likelihood.quadrature.discrete_mixed import MixedObjective
    from mlmrun.likelihood.quadrature.plan import integration_plan

    obj = MixedObjective(sol.model, integration_plan(sol.model))

    def f(x: np.ndarray) -> float:
        obj.readapt(x)
        return obj.evaluate(x, gradient=False).loglik

    b = sol.model.partable.free_bounds()
    lo = np.array([-np.inf if x[0] is None else x[0] for x in b])
    hi = np.array([np.inf if x[1] is None else x[1] for x in b])
    asc = polish(f, sol.free, information, lo, hi, 1e-11)
    f(asc.x)
    out = Solution(sol.model, obj, asc.x, asc.F, asc.converged and sol.converged, sol.iterations + asc.iterations,
                   sol.start_logliks, sol.best_start, sol.polished)
    return out, f


def supports_em(obj) -> bool:
    """EM's complete-data objective exists for the discrete and mixed engines, not the nested one."""
    return not hasattr(obj, "h")


def screen(obj, x: np.ndarray, iterations: int, weights: np.ndarray | None = None) -> np.ndarray:
    """EM iterations from `x`; without EM (nested engine), as many quasi-Newton iterations at a fresh adaptation."""
    if supports_em(obj):
        return em(obj, x, weights, iterations=iterations)
    obj.readapt(x)
    return _lbfgs(obj, x, iterations)[0]


def maximise(obj, x: np.ndarray, max_iter: int, tol: float = 1e-10,
             mask: np.ndarray | None = None) -> tuple[np.ndarray, float, bool, int]:
    """L-BFGS-B on the log likelihood with its analytic gradient (over `mask` of the free vector).

    With normal latent variables below the discrete level, rounds: re-adapt the quadrature at x, maximise with
    the adaptation frozen, until the re-adapted log likelihood and x stop changing (ADAPT_ROUNDS at most).
    """
    if not hasattr(obj, "readapt"):
        return _lbfgs(obj, x, max_iter, tol, mask)
    previous, nit_all = -np.inf, 0
    for _ in range(ADAPT_ROUNDS):
        obj.readapt(x)
        start = x
        x, ll, ok, nit = _lbfgs(obj, x, max_iter, tol, mask)
        nit_all += nit
        obj.readapt(x)
        ll = obj.evaluate(x, gradient=False).loglik
        if abs(ll - previous) <= 1e-9 * max(1.0, abs(ll)) and float(np.max(np.abs(x - start), initial=0.0)) < 1e-5:
            return x, ll, ok, nit_all
        previous = ll
    return x, ll, False, nit_all


ADAPT_ROUNDS = 20


def _lbfgs(obj, x: np.ndarray, max_iter: int, tol: float = 1e-10,
           mask: np.ndarray | None = None) -> tuple[np.ndarray, float, bool, int]:
    """L-BFGS-B on the (frozen) log likelihood with its analytic gradient (over `mask` of the free vector)."""
    full = np.asarray(x, dtype=float).copy()
    mask = np.ones(len(full), dtype=bool) if mask is None else mask
    bounds = [b for b, m in zip(_bounds(obj.model), mask, strict=True) if m]

    def neg(y: np.ndarray) -> tuple[float, np.ndarray]:
        full[mask] = y
        ev = obj.evaluate(full)
        if not np.isfinite(ev.value):
            return 1e300, np.zeros_like(y)
        return -ev.value, -ev.gradient[mask]

    if not mask.any():
        return full, obj.evaluate(full, gradient=False).loglik, True, 0
    res = minimize(neg, full[mask], jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-7, "maxcor": 20})
    full[mask] = res.x
    return full, -float(res.fun), bool(res.success), int(res.nit)


def _set_points(model: CompiledModel, x: np.ndarray, e: np.ndarray, p: np.ndarray, level: int = 0) -> np.ndarray:
    """Free vector with a discrete level's points (model.discrete[level]) at locations e (K, d) and probabilities
    p (K,), other entries kept."""
    dl = model.discrete[level]
    pt = model.partable
    values = pt.unpack(x)
    v = e - e[0] if dl.centered else e
    values[dl.loc_rows] = v
    p = np.clip(p, 1e-8, None)
    values[dl.logit_rows] = np.log(p[1:] / p[0])
    values[dl.gamma_rows] = 0.0
    return pt.pack(values)


def _starts(model: CompiledModel, obj: DiscreteObjective, base: np.ndarray) -> list[np.ndarray]:
    """The documented starting values (module docstring, step 2)."""
    dl = model.discrete[0]
    K = dl.K
    out = []
    if dl.kind == "npmle":
        x = _set_points(model, base, _hermite_points(dl), np.asarray(gauss_hermite(K)[1]))
        out.append(_spread_other_levels(model, x, None))
    while len(out) < dl.starts:
        rng = np.random.default_rng([dl.seed, len(out)])
        if len(model.discrete) > 1:
            x0 = _set_points(model, base, rng.normal(0.0, 0.5, (K, dl.dim)), np.full(K, 1.0 / K))
            out.append(_spread_other_levels(model, x0, rng))
            continue
        split = np.zeros((obj.n_units, K))
        split[np.arange(obj.n_units), rng.integers(0, K, obj.n_units)] = 1.0
        split = 0.9 * split + 0.1 / K
        x0 = _set_points(model, base, rng.normal(0.0, 0.5, (K, dl.dim)), np.full(K, 1.0 / K))
        out.append(em(obj, x0, split, iterations=1) if supports_em(obj) else x0)
    return out


def _hermite_points(dl) -> np.ndarray:
    """(K, d): the K-point Gauss-Hermite nodes in every dimension (a discretised N(0, 1))."""
    return np.repeat(np.asarray(gauss_hermite(dl.K)[0])[:, None], dl.dim, axis=1)


def _spread_other_levels(model: CompiledModel, x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Points of the discrete levels after the first: Gauss-Hermite nodes and weights (rng None) or random
    locations with equal probabilities. Coinciding points would be a saddle of the likelihood."""
    for i, dl in enumerate(model.discrete[1:], start=1):
        if rng is None:
            e, p = _hermite_points(dl), np.asarray(gauss_hermite(dl.K)[1])
        else:
            e, p = rng.normal(0.0, 0.5, (dl.K, dl.dim)), np.full(dl.K, 1.0 / dl.K)
        x = _set_points(model, x, e, p, i)
    return x


def fit_points(model: CompiledModel, base: np.ndarray | None, max_iter: int,
               progress: Callable[[int, float], None] | None = None,
               starts: list[np.ndarray] | None = None) -> Solution:
    """Fit `model` (its discrete level has K points): EM from every start, quasi-Newton from the best POLISHED."""
    obj = objective_for(model)
    if base is None:
        base = glm_start(model, obj)
    if starts is None:
        starts = [base] if model.discrete[0].K == 1 else _starts(model, obj, base)
    screened = []
    for s, x0 in enumerate(starts):
        x = screen(obj, x0, EM_ITERATIONS)
        screened.append((obj.evaluate(x, gradient=False).loglik, s, x))
    best: Solution | None = None
    polished: dict[int, float] = {}
    for _ll0, s, x in sorted(screened, key=lambda t: -t[0])[:POLISHED]:
        x, ll, ok, nit = maximise(obj, x, max_iter)
        polished[s] = ll
        if best is None or ll > best.loglik:
            best = Solution(model, obj, x, ll, ok, nit, best_start=s)
        if progress is not None:
            progress(len(polished), ll)
    assert best is not None
    best.start_logliks = [ll for ll, _, _ in screened]
    best.polished = polished
    return best


EM_ITERATIONS = 5
"""EM iterations from each start (the screening stage)."""
POLISHED = 2
"""Starts whose EM result is best are each converged by the quasi-Newton stage; the best of them is kept."""


def glm_start(model: CompiledModel, obj) -> np.ndarray:
    """Fixed part and family parameters fitted with every point at 0 (the model without latent variables)."""
    pt = model.partable
    values = pt.start_values
    for dl in model.discrete:
        values[discrete_rows(dl)] = 0.0
    x = pt.pack(values)
    x, _, _, _ = maximise(obj, x, 500, mask=_free_of(model, START_BLOCKS))
    return x


def _merged(sol: Solution) -> tuple[CompiledModel, np.ndarray] | None:
    """The model with one point fewer, started from the cheapest merge of two points (or drop of an empty one).

    None when there is nothing to merge, or when the merge, evaluated in the current model with both points
    moved to their weighted mean (one evaluation, no new model), loses more than MERGE_SCREEN.
    """
    model, dl = sol.model, sol.model.discrete[0]
    if dl.K < 2:
        return None
    values = model.partable.unpack(sol.free)
    e, p = masses(dl, values)
    scale = max(1.0, float(np.abs(e).max(initial=0.0)))
    K = dl.K
    best = None
    for a in range(K):
        for b in range(a + 1, K):
            dist = float(np.abs(e[a] - e[b]).max()) / scale
            cost = min(dist, min(p[a], p[b]))
            if best is None or cost < best[0]:
                best = (cost, a, b)
    _, a, b = best
    keep = [k for k in range(K) if k not in (a, b)]
    e_ab = (p[a] * e[a] + p[b] * e[b]) / (p[a] + p[b])
    e_new = np.vstack([e_ab] + [e[k] for k in keep])
    p_new = np.concatenate([[p[a] + p[b]], p[keep]])
    both = e.copy()
    both[[a, b]] = e_ab
    if dl.centered:
        screen = _set_points(model, sol.free, both, p)
    else:
        moved = values.copy()
        moved[dl.loc_rows] = both
        screen = model.partable.pack(moved)
    if sol.obj.evaluate(screen, gradient=False).loglik < sol.loglik - MERGE_SCREEN:
        return None
    small = resize(model, K - 1)
    head = small.partable.pack(np.concatenate([values[:len(values) - len(discrete_rows(dl))],
                                               np.zeros(len(discrete_rows(small.discrete[0])))]))
    return small, _set_points(small, head, e_new, p_new)


def collapse(sol: Solution, max_iter: int, warnings: list[str]) -> Solution:
    """Merge coinciding or empty points while that costs less than MERGE_TOL in log likelihood.

    A merge is refitted only when the merged points, unrefitted, already lose less than MERGE_SCREEN (`_merged`).
    With discrete distributions at two levels nothing is merged.
    """
    while len(sol.model.discrete) == 1:
        merged = _merged(sol)
        if merged is None:
            return sol
        small, x0 = merged
        obj = objective_for(small)
        x, ll, ok, nit = maximise(obj, x0, max_iter)
        cand = Solution(small, obj, x, ll, ok, nit)
        if cand.loglik < sol.loglik - MERGE_TOL:
            return sol
        level = sol.model.levels[sol.model.discrete[0].level].name
        warnings.append(f"level '{level}': two of the {sol.model.discrete[0].K} points coincide or one is empty at the "
                        f"solution, so they were merged ({small.discrete[0].K} points; log likelihood "
                        f"{sol.loglik:.6f} -> {cand.loglik:.6f})")
        cand.start_logliks, cand.best_start, cand.polished = sol.start_logliks, sol.best_start, sol.polished
        sol = cand
    return sol


def gateaux_max(sol: Solution, size: int = GATEAUX_GRID) -> tuple[float, np.ndarray]:
    """Largest Gateaux derivative over a grid spanning the masses (one or two dimensions; else the masses' box)."""
    dl = sol.model.discrete[0]
    values = sol.model.partable.unpack(sol.free)
    e, _ = masses(dl, values)
    lo, hi = e.min(axis=0), e.max(axis=0)
    pad = np.maximum(2.0, hi - lo)
    axes = [np.linspace(lo[j] - pad[j], hi[j] + pad[j], size if dl.dim == 1 else 21) for j in range(dl.dim)]
    grid = np.stack([g.reshape(-1) for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    ev = sol.obj.evaluate(sol.free, gradient=False)
    D = sol.obj.gateaux(sol.free, grid, ev.unit_loglik)
    k = int(np.argmax(D))
    return float(D[k]), grid[k]


def auto_points(model: CompiledModel, max_iter: int, progress, warnings: list[str]) -> tuple[Solution, dict]:
    """`discrete: auto`: add points where the Gateaux derivative is largest until it is <= GATEAUX_TOL."""
    sol = fit_points(resize(model, 1), None, max_iter)
    path = []
    while True:
        D, where = gateaux_max(sol)
        path.append({"points": sol.model.discrete[0].K, "loglik": sol.loglik, "max_derivative": D})
        if progress is not None:
            progress(sol.model.discrete[0].K, sol.loglik)
        if D <= GATEAUX_TOL or sol.model.discrete[0].K >= min(MAX_AUTO_POINTS, sol.obj.n_units):
            break
        dl = sol.model.discrete[0]
        e, p = masses(dl, sol.model.partable.unpack(sol.free))
        bigger = resize(sol.model, dl.K + 1)
        values = sol.model.partable.unpack(sol.free)
        head = bigger.partable.pack(np.concatenate([values[:len(values) - len(discrete_rows(dl))],
                                                    np.zeros(len(discrete_rows(bigger.discrete[0])))]))
        x0 = _set_points(bigger, head, np.vstack([e, where]), np.concatenate([0.9 * p, [0.1]]))
        cand = fit_points(bigger, None, max_iter, starts=[x0])
        if cand.loglik <= sol.loglik + MERGE_TOL:
            path[-1]["note"] = "the added point did not raise the log likelihood"
            break
        sol = cand
    info = {"max_derivative": path[-1]["max_derivative"], "tolerance": GATEAUX_TOL, "path": path}
    if path[-1]["max_derivative"] > GATEAUX_TOL and "note" not in path[-1]:
        warnings.append(f"discrete: auto stopped at {sol.model.discrete[0].K} points with the Gateaux derivative still "
                        f"{path[-1]['max_derivative']:.3g} > {GATEAUX_TOL}")
    return sol, info


def relabel(model: CompiledModel, x: np.ndarray, order: np.ndarray, level: int = 0) -> np.ndarray:
    """The same fit with a discrete level's points in `order` (a permutation; the likelihood is unchanged):
    point order[0] first."""
    dl = model.discrete[level]
    pt = model.partable
    values = pt.unpack(x)
    v = values[dl.loc_rows]
    a = np.concatenate([[0.0], values[dl.logit_rows]])
    G = np.vstack([np.zeros((1, len(dl.w_names))), values[dl.gamma_rows]])
    if dl.centered:
        e, p = masses(dl, values)
        return _set_points(model, x, e[order], p[order], level)
    values[dl.loc_rows] = v[order]
    values[dl.logit_rows] = (a[order] - a[order][0])[1:]
    values[dl.gamma_rows] = (G[order] - G[order][0])[1:]
    if len(dl.scale_rows):
        shift = np.concatenate([[0.0], values[dl.scale_rows]])[order]
        values[dl.scale_rows] = (shift - shift[0])[1:]
        common = np.unique(np.concatenate([eq.scale_rows for eq in model.equations if eq.scale_rows is not None]))
        values[common] *= np.exp(shift[0])
    return pt.pack(values)


def canonical(sol: Solution) -> Solution:
    """Points in a fixed order (label switching): NPMLE masses ascending, classes by decreasing probability."""
    for level, dl in enumerate(sol.model.discrete):
        e, p = masses(dl, sol.model.partable.unpack(sol.free))
        order = np.lexsort([e[:, j] for j in range(e.shape[1] - 1, -1, -1)]) if dl.centered \
            else np.argsort(-p, kind="stable")
        sol.free = relabel(sol.model, sol.free, order, level)
    return sol


def _summary(sol: Solution, cov: np.ndarray | None, requested: object) -> dict:
    """results.json's `discrete` entry: masses, probabilities, implied variance, identification and starts."""
    model, dl = sol.model, sol.model.discrete[0]
    values = model.partable.unpack(sol.free)
    e, p = masses(dl, values)
    mean = p @ e
    out = {"level": model.levels[dl.level].name, "kind": dl.kind, "points": dl.K, "requested": requested,
           "names": list(dl.names), "masses": e.tolist(), "probabilities": p.tolist(),
           "identification": ("mean of the discrete distribution fixed at 0 (the fixed part keeps its constant; "
                              "mass + _cons gives the point's own intercept)" if dl.centered else
                              "class-specific coefficients all free; the fixed part has no term they span"),
           "starts": {"count": len(sol.start_logliks), "seed": dl.seed, "em_logliks": sol.start_logliks,
                      "screening": "EM" if supports_em(sol.obj) else "quasi-Newton",
                      "converged_logliks": {str(s + 1): ll for s, ll in sol.polished.items()},
                      "best": sol.best_start + 1,
                      "spread": float(max(sol.polished.values()) - min(sol.polished.values())) if sol.polished else 0.0}}
    if dl.centered:
        out["variance"] = [float(p @ (e[:, j] - mean[j]) ** 2) for j in range(dl.dim)]
        beta = dict(zip(model.x_names, values[model.beta_rows], strict=True))
        if "Intercept" in beta and "_cons" in dl.names:
            j = list(dl.names).index("_cons")
            out["intercepts"] = (e[:, j] + beta["Intercept"]).tolist()
    others = []
    for d in model.discrete[1:]:
        e2, p2 = masses(d, values)
        entry = {"level": model.levels[d.level].name, "kind": d.kind, "points": d.K, "names": list(d.names),
                 "masses": e2.tolist(), "probabilities": p2.tolist()}
        if d.centered:
            entry["variance"] = [float(p2 @ (e2[:, j] - p2 @ e2[:, j]) ** 2) for j in range(d.dim)]
        others.append(entry)
    if others:
        out["other_levels"] = others
    return out


def empirical_bayes_points(sol: Solution) -> dict:
    """Posterior means and SDs of the discrete latent variables per unit (sum over points), in results.json's layout."""
    dl = sol.model.discrete[0]
    level = sol.model.levels[dl.level]
    post = sol.obj.unit_posterior(sol.obj.evaluate(sol.free, gradient=False).posterior)
    e, _ = masses(dl, sol.model.partable.unpack(sol.free))
    mean = post @ e
    var = post @ (e**2) - mean**2
    out: dict = {"units": [str(u) for u in level.labels]}
    for j, name in enumerate(dl.names):
        out[name] = {"mean": mean[:, j].tolist(), "sd": np.sqrt(np.clip(var[:, j], 0.0, None)).tolist()}
    return {level.name: out}


def posterior_json(sol: Solution) -> dict:
    """Posterior point (class) probabilities per unit, 6 significant digits, units labelled as in results.json."""
    ev = sol.obj.evaluate(sol.free, gradient=False)
    level = sol.model.levels[sol.model.discrete[0].level]
    return {"level": level.name, "units": [str(u) for u in level.labels],
            "probabilities": [[float(f"{x:.6g}") for x in row] for row in sol.obj.unit_posterior(ev.posterior)]}


def fit_discrete(model: CompiledModel, progress: Callable[[int, float], None] | None = None) -> FitResult:
    """Fit a model whose latent variables are discrete at one level (NPMLE mass points or latent classes)."""
    t0 = time.perf_counter()
    warnings: list[str] = []
    est = model.spec.estimation
    dl = model.discrete[0]
    extras: dict = {}
    if dl.auto:
        sol, extras_g = auto_points(model, est.max_iter, progress, warnings)
        sol = collapse(sol, est.max_iter, warnings)
        requested: object = "auto"
    else:
        sol = fit_points(model, None, est.max_iter, progress)
        sol = collapse(sol, est.max_iter, warnings)
        requested, extras_g = dl.K, None
    sol = canonical(sol)
    if hasattr(sol.obj, "readapt"):
        sol.obj.readapt(sol.free)
        sol.loglik = sol.obj.evaluate(sol.free, gradient=False).loglik
    grad = lambda x: sol.obj.evaluate(x).gradient  # noqa: E731
    info = -hessian_from_gradient(grad, sol.free)
    laplace_f = None
    if is_laplace(sol.obj):
        sol, laplace_f = laplace_polish(sol, info)
        info = -numeric_hessian(laplace_f, sol.free)
    cov, problem = covariance_from_hessian(info, sol.model.partable.free_names())
    if problem:
        warnings.append(problem)
    g = sol.obj.evaluate(sol.free).gradient
    if laplace_f is None and cov is not None and 0.5 * float(g @ cov @ g) > 1e-4:
        sol.converged = False
    if not sol.converged:
        warnings.append("optimisation did not converge: the quasi-Newton stage stopped before the gradient vanished")
    extras["discrete"] = _summary(sol, cov, requested)
    if extras_g is None and dl.kind == "npmle" and dl.dim <= 2 and isinstance(sol.obj, DiscreteObjective):
        D, where = gateaux_max(sol, SUMMARY_GRID)
        extras_g = {"max_derivative": D, "at": where.tolist(), "tolerance": GATEAUX_TOL}
    if extras_g is not None:
        extras["discrete"]["gateaux"] = extras_g
    extras["class_posterior"] = posterior_json(sol)
    if dl.kind == "npmle":
        extras["empirical_bayes"] = empirical_bayes_points(sol)
    m = sol.model
    integration = {"method": "discrete", "points": m.discrete[0].K}
    if m.latent:
        plan = sol.obj.plan if hasattr(sol.obj, "plan") else sol.obj.quad.plan
        integration = {**plan.describe(), "discrete_points": m.discrete[0].K}
        if plan.method == "laplace":
            integration["points"] = 1
    return FitResult(model=m, values=m.partable.unpack(sol.free), free=sol.free, cov_free=cov, loglik=sol.loglik,
                     method="ML", integration=integration,
                     converged=sol.converged, iterations=sol.iterations, n_evaluations=sol.obj.n_evaluations,
                     fit_seconds=time.perf_counter() - t0, warnings=tuple(warnings), extras=extras)
