"""The quadrature objective: CompiledModel + free vector -> log likelihood and its gradient.

Composes the pure pieces: `model_matrices` (partable -> beta, lambda, B, Gamma,
L, family parameters), the linear predictor in u-space

    nu_i = x_i'beta + offset_i + z_i' T Gamma w_i + z_i' T L u,   T = (I - B)^-1,

(so A_i = z_i' T L, columns ordered by level), the nested adaptive quadrature
of likelihood/quadrature/adaptive.py and, for the gradient, the adjoint of this map:
from E[s_i] and E[s_i u] per row to d loglik / d (beta, lambda, L, B, Gamma,
family parameters), then `values_gradient` and the partable Jacobian onto the
free vector. No parameter list exists here besides the partable's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlmrun.compile.matrices import MatrixGradient, ModelMatrices, model_matrices, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.families.choice import ChoiceSets
from mlmrun.likelihood.quadrature.adaptive import Adaptation, Evaluation, Hierarchy, Predictor, evaluate, make_hierarchy
from mlmrun.likelihood.quadrature.choice_rows import choice_sets
from mlmrun.likelihood.quadrature.kernels import BinomialLogit, LogitCounts, kernel_for
from mlmrun.likelihood.quadrature.louis import quadrature_hessian
from mlmrun.likelihood.quadrature.modes import adapt, adapt_to_means
from mlmrun.likelihood.quadrature.plan import IntegrationPlan
from mlmrun.likelihood.quadrature.rows import RowSet, row_set
from mlmrun.likelihood.quadrature.weights import WeightedFamilies


class EquationFamilies:
    """RowFamily over a model's equations: one vectorised family call per equation, none per row.

    `rows` arguments select a contiguous block (slice) or subset of the row
    set, so adaptive.py can evaluate cache-sized chunks of rows.
    """

    def __init__(self, model: CompiledModel, rows: RowSet, mm: ModelMatrices,
                 choice: dict[int, ChoiceSets] | None = None) -> None:
        self.n = rows.n
        self.eq_of = np.zeros(rows.n, dtype=np.intp)
        self.parts = []
        self.choice: list[ChoiceSets] = []
        for e, eq in enumerate(model.equations):
            idx = rows.eq_rows[e]
            self.eq_of[idx] = e
            if eq.ordinal is not None:
                params, per_row = mm.thresholds[e][rows.original], True
            elif eq.threshold_rows is not None:
                params, per_row = mm.thresholds[e], False
            elif eq.scale_rows is not None:
                params, per_row = mm.scale[rows.original], True
            elif eq.family_params is not None:
                params, per_row = np.full((rows.n, mm.family[e].shape[1]), np.nan), True
                params[rows.eq_rows[e]] = mm.family[e][np.searchsorted(eq.rows, rows.original[rows.eq_rows[e]])]
            else:
                params, per_row = None, False
            const = None if rows.constant is None else rows.constant
            kernel = kernel_for(eq.family, rows.y, rows.trials, const)
            if eq.choice is not None:
                sets = choice[e] if choice and e in choice else choice_sets(eq.choice, rows, idx)
                self.choice.append(sets)
                kernel = sets.derivs
            self.parts.append((eq.family, params, per_row, kernel))
        self.param_eqs = [e for e, part in enumerate(self.parts) if part[1] is not None]
        self.param_rows = [rows.eq_rows[e] for e in self.param_eqs]
        self.y, self.trials = rows.y, rows.trials

    def _call(self, e: int, nu: np.ndarray, order: int, rows: slice | np.ndarray) -> tuple:
        family, params, per_row, kernel = self.parts[e]
        if kernel is not None:
            return kernel(nu, order, rows)
        trials = None if self.trials is None else self.trials[rows]
        return family.loglik_derivs(self.y[rows], nu, params[rows] if per_row else params, trials, order)

    @property
    def logit_counts(self) -> LogitCounts | None:
        """The rows' binomial-logit data when every row is binomial-logit (likelihood/quadrature/separable.py)."""
        kernel = self.parts[0][3] if len(self.parts) == 1 else None
        return kernel.counts if isinstance(kernel, BinomialLogit) else None

    def cross(self, nu: np.ndarray) -> tuple | None:
        """Choice sets' (row, stage, probability) entries at nu for the mode finder's curvature, or None."""
        if not self.choice:
            return None
        parts = [sets.cross(nu) for sets in self.choice]
        offsets = np.cumsum([0] + [sets.n_groups for sets in self.choice])
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] + o for p, o in zip(parts, offsets, strict=False)]),
                np.concatenate([p[2] for p in parts]))

    def _split(self, rows: slice | np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(equation, positions within the block, row indices) for each equation present in a block."""
        index = np.arange(self.n)[rows]
        eq = self.eq_of[index]
        return [(e, pos, index[pos]) for e in range(len(self.parts)) if len(pos := np.flatnonzero(eq == e))]

    def derivs(self, nu: np.ndarray, order: int, rows: slice | np.ndarray = slice(None)) -> tuple:
        if len(self.parts) == 1:
            return self._call(0, nu, order, rows)
        out = [np.empty_like(nu) for _ in range(order + 1)]
        for e, pos, idx in self._split(rows):
            for store, r in zip(out, self._call(e, nu[pos], order, idx), strict=False):
                store[pos] = r
        return tuple(out) + (None,) * (2 - order)

    def param_expect(self, nu: np.ndarray, weight: np.ndarray, rows: slice | np.ndarray = slice(None)) -> list:
        """Per equation with family parameters: sum over axis 1 of weight * score, zero on other rows."""
        out = []
        blocks = self._split(rows) if len(self.parts) > 1 else [(0, slice(None), rows)]
        for e in self.param_eqs:
            family, params, per_row, _ = self.parts[e]
            res = None
            for e2, pos, idx in blocks:
                if e2 != e:
                    continue
                trials = None if self.trials is None else self.trials[idx]
                score = family.param_score(self.y[idx], nu[pos], params[idx] if per_row else params, trials)
                part = np.einsum("ir...,ir...p->i...p", weight[pos], score)
                res = np.zeros((nu.shape[0],) + part.shape[1:]) if res is None else res
                res[pos] = part
            if res is None:
                k = len(params) if not per_row else (params.shape[1] if params.ndim == 2 else 1)
                res = np.zeros((nu.shape[0],) + nu.shape[2:] + (k,))
            out.append(res)
        return out


@dataclass(frozen=True)
class Layout:
    """Where each latent variable sits in the chain of disturbances (levels lowest first), and the rows."""

    levels: tuple[int, ...]
    """Model level index of each hierarchy level."""
    order: np.ndarray
    """Latent variable indices in chain order."""
    rows: RowSet
    hierarchy: Hierarchy | None
    choice: dict[int, ChoiceSets] = field(default_factory=dict)
    """Per choice equation: its sets in row order (parameter-free, built once)."""
    row_weight: np.ndarray | None = None
    """Weight of every row in quadrature order (likelihood/quadrature/weights.py), None when unweighted."""


def layout(model: CompiledModel, merge: bool = True) -> Layout:
    """Chain order of the latent variables, the row set and the index structure of the nested levels."""
    levels = tuple(model.nested_levels)
    order = np.array([m for lvl in levels for m in model.latent_at(lvl)], dtype=int)
    rows = row_set(model, levels, merge)
    choice = {e: choice_sets(eq.choice, rows, rows.eq_rows[e]) for e, eq in enumerate(model.equations)
              if eq.choice is not None}
    wt = model.weighting
    row_w = None if wt is None or wt.row is None else wt.row[rows.original]
    if not levels:
        return Layout((), order, rows, None, choice, row_w)
    codes = [rows.codes[lvl] for lvl in levels]
    n_units = [model.levels[lvl].n_units for lvl in levels]
    dims = [len(model.latent_at(lvl)) for lvl in levels]
    unit_w = None
    if wt is not None and wt.unit:
        unit_w = [wt.unit.get(lvl, np.ones(n)) for lvl, n in zip(levels, n_units, strict=True)]
    return Layout(levels, order, rows, make_hierarchy(codes, n_units, dims, unit_w), choice, row_w)


@dataclass
class Pieces:
    """Parameter-dependent arrays shared by the likelihood and its gradient at one free vector."""

    free: np.ndarray
    values: np.ndarray
    mm: ModelMatrices
    Z: np.ndarray
    """(n, M): z_m(i) = Z_m[i] @ lambda_m."""
    T: np.ndarray
    Lfull: np.ndarray
    WG: np.ndarray
    """(n, M): Gamma w_i."""
    pred: Predictor
    fam: EquationFamilies | WeightedFamilies


def pieces(model: CompiledModel, lay: Layout, free: np.ndarray) -> Pieces:
    """Unpack the free vector and build the linear predictor in u-space."""
    values = model.partable.unpack(free)
    mm = model_matrices(model, values)
    rows = lay.rows
    n, M = rows.n, len(model.latent)
    Z = np.zeros((n, M))
    for m, Zm in enumerate(rows.Z):
        if Zm.shape[1]:
            Z[:, m] = Zm @ mm.lambdas[m]
    T = np.linalg.inv(np.eye(M) - mm.B) if M else np.zeros((0, 0))
    Lfull = np.zeros((M, M))
    for lvl in lay.levels:
        members = model.latent_at(lvl)
        Lfull[np.ix_(members, members)] = mm.L[lvl]
    WG = rows.W @ mm.Gamma.T if rows.W.shape[1] else np.zeros((n, M))
    ZT = Z @ T
    fixed = rows.X @ mm.beta + rows.offset + np.einsum("im,im->i", ZT, WG)
    A = (ZT @ Lfull)[:, lay.order]
    fam = EquationFamilies(model, rows, mm, lay.choice)
    if lay.row_weight is not None:
        fam = WeightedFamilies(fam, lay.row_weight)
    return Pieces(free, values, mm, Z, T, Lfull, WG, Predictor(fixed, A), fam)


def free_gradient(model: CompiledModel, lay: Layout, pc: Pieces, es: np.ndarray, esu_chain: np.ndarray,
                  fam_exp: list[np.ndarray]) -> np.ndarray:
    """Adjoint of `pieces`: gradient on the free vector from E[s], E[s u_chain] and family-score expectations."""
    mm, rows = pc.mm, lay.rows
    grad = MatrixGradient.zeros(mm)
    grad.beta = rows.X.T @ es
    M = len(model.latent)
    if M:
        esu = np.zeros((rows.n, M))
        esu[:, lay.order] = esu_chain
        v_s = es[:, None] * pc.WG + esu @ pc.Lfull.T
        eta_s = v_s @ pc.T.T
        ZT = pc.Z @ pc.T
        grad.lambdas = [Zm.T @ eta_s[:, m] for m, Zm in enumerate(rows.Z)]
        gL = ZT.T @ esu
        grad.L = {lvl: gL[np.ix_(model.latent_at(lvl), model.latent_at(lvl))] for lvl in mm.L}
        if rows.W.shape[1]:
            grad.Gamma = ZT.T @ (es[:, None] * rows.W)
        grad.B = pc.T.T @ (pc.Z.T @ v_s) @ pc.T.T
    for e, f in zip(pc.fam.param_eqs, fam_exp, strict=True):
        eq = model.equations[e]
        if eq.ordinal is not None:
            idx = rows.eq_rows[e]
            grad.thresholds[e] = np.zeros_like(mm.thresholds[e])
            grad.thresholds[e][rows.original[idx]] = f[idx]
        elif eq.threshold_rows is not None:
            grad.thresholds[e] = f.sum(axis=0)
        elif eq.family_params is not None:
            idx = rows.eq_rows[e]
            grad.family[e][np.searchsorted(eq.rows, rows.original[idx])] = f[idx]
        else:
            idx = rows.eq_rows[e]
            grad.scale[rows.original[idx]] = f[idx, 0]
    g_values = values_gradient(model, pc.values, grad)
    return model.partable.jacobian(pc.free).T @ g_values


HESSIAN_STEP = 1e-5
"""Relative step of the central differences of the parameter-to-predictor map in `QuadratureObjective.hessian`."""


@dataclass
class QuadratureObjective:
    """Log likelihood of a compiled model by nested adaptive quadrature, with frozen or re-found adaptation.

    `frozen(free, ad)` evaluates with node placement `ad` held fixed (its exact
    gradient is the Fisher identity); `readapted(free)` first moves the nodes to
    the posterior modes at `free` (the quantity lme4/gllamm report).
    """

    model: CompiledModel
    plan: IntegrationPlan
    merge: bool = True
    """Merge rows with identical predictors where the family allows (rows.py)."""
    lay: Layout = field(init=False)
    n_evaluations: int = 0
    _cache: tuple | None = field(default=None, repr=False)
    _last: tuple | None = field(default=None, repr=False)
    """(free, adaptation, Evaluation) of the latest evaluation with gradient (`hessian` at the optimum reuses it)."""
    _moments: tuple | None = field(default=None, repr=False)
    """(free, adaptation, Evaluation with posterior moments) from the latest `hessian` (empirical Bayes reuses it)."""

    def __post_init__(self) -> None:
        self.lay = layout(self.model, self.merge)

    def pieces(self, free: np.ndarray) -> Pieces:
        free = np.asarray(free, dtype=float)
        if self._cache is not None and np.array_equal(self._cache[0], free):
            return self._cache[1]
        pc = pieces(self.model, self.lay, free)
        self._cache = (free.copy(), pc)
        return pc

    def adapt(self, free: np.ndarray, warm: Adaptation | None = None, rules: tuple | None = None) -> Adaptation:
        """Adaptation at `free` (plain nodes for ghq), warm-started from `warm`'s modes."""
        rules = self.plan.rules if rules is None else rules
        if self.plan.method == "ghq":
            return self.plan.plain(self.lay.hierarchy, rules)
        pc = self.pieces(free)
        start = None if warm is None else list(warm.mode)
        ad, _ = adapt(self.lay.hierarchy, pc.pred, pc.fam, rules, start)
        if self.plan.adapt == "mean":
            ad = adapt_to_means(self.lay.hierarchy, pc.pred, pc.fam, ad)
        return ad

    def frozen(self, free: np.ndarray, ad: Adaptation, gradient: bool = True) -> tuple[float, np.ndarray | None]:
        """Log likelihood at fixed node placement, and its exact gradient on the free vector."""
        pc = self.pieces(free)
        self.n_evaluations += 1
        if not pc.mm.valid:
            return -np.inf, np.zeros_like(free) if gradient else None
        ev = evaluate(self.lay.hierarchy, pc.pred, pc.fam, ad, gradient=gradient)
        if not gradient:
            return ev.loglik, None
        self._last = (np.array(free, dtype=float), ad, ev)
        return ev.loglik, free_gradient(self.model, self.lay, pc, ev.es, ev.esu, ev.family or [])

    def scores(self, free: np.ndarray, ad: Adaptation) -> Evaluation:
        """Evaluation with the per-row score expectations at (free, ad): the latest gradient's when at its point."""
        last = self._last
        if last is not None and last[1] is ad and np.array_equal(last[0], free):
            return last[2]
        pc = self.pieces(free)
        self.n_evaluations += 1
        ev = evaluate(self.lay.hierarchy, pc.pred, pc.fam, ad, gradient=True)
        self._last = (np.array(free, dtype=float), ad, ev)
        return ev

    def louis_applies(self) -> bool:
        """Whether `hessian` can work analytically: no family parameters of their own, separate rows (no choice sets)."""
        if self.lay.hierarchy is None or self.lay.choice:
            return False
        return not any(eq.family_params is not None or eq.ordinal is not None or eq.threshold_rows is not None
                       or eq.scale_rows is not None for eq in self.model.equations)

    def hessian(self, free: np.ndarray, ad: Adaptation, keep_moments: bool = False) -> np.ndarray:
        """Hessian of the frozen log likelihood on the free vector, by Louis' identity per unit (louis.py).

        The pieces that do not involve the quadrature (d nu / d theta at every row, and the adjoint's
        own dependence on theta at fixed posterior expectations) are central differences of the cheap
        parameter-to-predictor map, exact up to rounding for the bilinear loading x scale products.
        Only where `louis_applies`. `keep_moments`: the same pass keeps the posterior moments at
        (free, ad), which `evaluation` then returns instead of evaluating again (empirical Bayes).
        """
        free = np.asarray(free, dtype=float)
        if not len(free):
            return np.zeros((0, 0))
        pc = self.pieces(free)
        h = self.lay.hierarchy
        ev = self.scores(free, ad)
        p = len(free)
        n, D = pc.pred.A.shape
        J, K, H = np.zeros((n, p)), np.zeros((n, D, p)), np.zeros((p, p))
        for j in range(p):
            step = HESSIAN_STEP * max(1.0, abs(free[j]))
            out = []
            for sign in (1.0, -1.0):
                x = free.copy()
                x[j] += sign * step
                pj = pieces(self.model, self.lay, x)
                out.append((pj.pred.fixed, pj.pred.A, free_gradient(self.model, self.lay, pj, ev.es, ev.esu, [])))
            J[:, j] = (out[0][0] - out[1][0]) / (2 * step)
            K[:, :, j] = (out[0][1] - out[1][1]) / (2 * step)
            H[:, j] = (out[0][2] - out[1][2]) / (2 * step)
        part, moments = quadrature_hessian(h, pc.pred, pc.fam, ad, J, K, ev.upward, moments=keep_moments)
        if keep_moments:
            self._moments = (free.copy(), ad, Evaluation(ev.loglik, ev.top, moments=moments))
        H += part
        return 0.5 * (H + H.T)

    def readapted(self, free: np.ndarray, warm: Adaptation | None = None) -> tuple[float, Adaptation]:
        """Log likelihood with nodes re-centred at the posterior modes of `free`."""
        ad = self.adapt(free, warm)
        return self.frozen(free, ad, gradient=False)[0], ad

    def evaluation(self, free: np.ndarray, ad: Adaptation, moments: bool = True) -> Evaluation:
        """Full evaluation with posterior moments (empirical Bayes; those of the latest `hessian` when at its point)."""
        kept = self._moments
        if moments and kept is not None and kept[1] is ad and np.array_equal(kept[0], free):
            return kept[2]
        pc = self.pieces(free)
        return evaluate(self.lay.hierarchy, pc.pred, pc.fam, ad, moments=moments)

    def glm(self, free: np.ndarray) -> tuple[float, np.ndarray]:
        """Log likelihood and gradient with every latent variable switched off (u = 0)."""
        pc = self.pieces(free)
        self.n_evaluations += 1
        nu = pc.pred.fixed
        ll, d1, _ = pc.fam.derivs(nu, 1)
        scale = np.ones(len(nu)) if self.lay.hierarchy is None else self.lay.hierarchy.row_scale()
        ll, d1 = ll * scale, d1 * scale
        fam_exp = pc.fam.param_expect(nu[:, None], scale[:, None])
        esu = np.zeros((self.lay.rows.n, len(self.lay.order)))
        return float(ll.sum()), free_gradient(self.model, self.lay, pc, d1, esu, fam_exp)
