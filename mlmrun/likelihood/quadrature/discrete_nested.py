"""A discrete level inside the nested quadrature, under normal latent variables at higher levels.

The discrete level becomes one more level of likelihood/quadrature/adaptive.py's
hierarchy whose disturbance is a one-hot vector u in {delta_1..delta_K}: its
columns of the linear predictor are A_ik = z_i' e_k (so A_i u = z_i' e_k at
point k) and its rule has the K unit vectors as nodes with log weights
log p_k, placed non-adaptively. Inside the nested integral a unit's
contribution is then the probability-weighted sum over its points instead
of a Gauss-Hermite sum, with the normal levels around it integrated by
(adaptive) Gauss-Hermite quadrature as usual.

Adaptation of the normal levels: posterior means and covariances computed by
the quadrature itself, iterated (gllamm's adapt; Rabe-Hesketh, Skrondal &
Pickles 2005), the discrete level's nodes left in place. A normal level's
nodes may shift with a discrete ancestor's point: the Gaussian regression of
u_c on the one-hot ancestor is exact in the point (any function of a one-hot
vector is linear in it), taken with a pseudo-inverse since the one-hot
vector's covariance is singular.

Gradient (adaptation frozen, Fisher identity): the engine's E[s_i u_chain]
on the one-hot columns is E[s_i 1{point k}], giving the locations' and the
discrete loadings' terms; the posterior point probabilities (first moments
of the one-hot vector) give the logits' terms; the normal parameters go
through objective.free_gradient.
"""

from __future__ import annotations

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.quadrature.adaptive import (
    Adaptation,
    Predictor,
    chain_modes,
    evaluate,
    logsumexp,
    make_hierarchy,
)
from mlmrun.likelihood.quadrature.choice_rows import choice_sets
from mlmrun.likelihood.quadrature.discrete import DiscreteEvaluation
from mlmrun.likelihood.quadrature.modes import _spd
from mlmrun.likelihood.quadrature.objective import Layout, free_gradient, pieces
from mlmrun.likelihood.quadrature.plan import IntegrationPlan
from mlmrun.likelihood.quadrature.rows import row_set
from mlmrun.likelihood.quadrature.rules import LOG_2PI, Rule

ADAPT_ITERATIONS = 30
"""Posterior-moment adaptation steps at most per `readapt` (stops when the node centres move less than ADAPT_TOL)."""
ADAPT_TOL = 1e-8


def point_rule(logp: np.ndarray) -> Rule:
    """The K points as a rule over one-hot nodes: log_ratio = log p_k - log phi_K(delta_k), so the weight is p_k."""
    K = len(logp)
    logphi = -0.5 - 0.5 * K * LOG_2PI
    return Rule(np.eye(K), logp.copy(), logp - logphi, 1)


class NestedObjective:
    """Discrete levels (NPMLE points or classes) inside the nested quadrature of the normal levels around them.

    Handles one discrete level under normal latent variables, and discrete distributions at several levels
    (with or without normal ones). `dl`, `pos` and the posteriors returned are those of the first (lowest)
    discrete level, the one estimate/discrete_fit.py's merging and reporting act on.
    """

    def __init__(self, model: CompiledModel, plan: IntegrationPlan) -> None:
        from mlmrun.compile.discrete import point_logits

        self._point_logits = point_logits
        self.model, self.plan = model, plan
        self.dls = tuple(model.discrete)
        self.dl = self.dls[0]
        normal = tuple(model.nested_levels)
        levels = tuple(sorted(normal + tuple(d.level for d in self.dls)))
        self.levels = levels
        rows = row_set(model, levels, merge=False)
        choice = {e: choice_sets(eq.choice, rows, rows.eq_rows[e]) for e, eq in enumerate(model.equations)
                  if eq.choice is not None}
        order = np.array([m for lvl in normal for m in model.latent_at(lvl)], dtype=int)
        self.lay = Layout(normal, order, rows, None, choice, None)
        at = {d.level: d for d in self.dls}
        dims = [at[lvl].K if lvl in at else len(model.latent_at(lvl)) for lvl in levels]
        self.h = make_hierarchy([rows.codes[lvl] for lvl in levels], [model.levels[lvl].n_units for lvl in levels],
                                dims)
        self.positions = tuple(levels.index(d.level) for d in self.dls)
        self.pos = self.positions[0]
        self.offsets = tuple(self.h.offset(k) for k in self.positions)
        self.offset = self.offsets[0]
        disc_cols = np.concatenate([np.arange(o, o + d.K) for o, d in zip(self.offsets, self.dls, strict=True)])
        self.normal_cols = np.setdiff1d(np.arange(sum(dims)), disc_cols)
        self.unit = rows.codes[self.dl.level]
        self.n_units = model.levels[self.dl.level].n_units
        self.Zs = tuple(tuple(Zj[rows.original] for Zj in d.Z) for d in self.dls)
        self.Z = self.Zs[0]
        self.freq = np.ones(self.n_units)
        self.pattern_of_unit = np.arange(self.n_units)
        normal_rules = iter(plan.rules)
        self._rules = [None if k in self.positions else next(normal_rules) for k in range(len(levels))]
        self.ad: Adaptation | None = None
        self.n_evaluations = 0

    def unit_posterior(self, posterior: np.ndarray) -> np.ndarray:
        return posterior

    def _points(self, values: np.ndarray, d, Z: tuple) -> tuple:
        """(z (n, dim), raw v, centred e, log p (1, K)) of one discrete level."""
        cols = [Zj[:, 0] if not len(r) else Zj @ values[r] for Zj, r in zip(Z, d.loading_rows, strict=True)]
        z = np.column_stack(cols)
        logits = self._point_logits(d, values)
        logp = logits - logsumexp(logits, axis=1)[:, None]
        v = values[d.loc_rows]
        e = v - np.exp(logp[0]) @ v if d.centered else v
        return z, v, e, logp

    def _parts(self, free: np.ndarray):
        values = self.model.partable.unpack(np.asarray(free, dtype=float))
        pc = pieces(self.model, self.lay, np.asarray(free, dtype=float))
        pts = [self._points(values, d, Z) for d, Z in zip(self.dls, self.Zs, strict=True)]
        blocks, col = [], 0
        for k, q in enumerate(self.h.dims):
            if k in self.positions:
                z, _, e, _ = pts[self.positions.index(k)]
                blocks.append(z @ e.T)
            else:
                blocks.append(pc.pred.A[:, col:col + q])
                col += q
        A = np.concatenate(blocks, axis=1)
        rules = tuple(point_rule(pts[self.positions.index(k)][3][0]) if r is None else r
                      for k, r in enumerate(self._rules))
        return values, pc, pts, Predictor(pc.pred.fixed, A), rules

    def _plain(self, rules: tuple[Rule, ...]) -> Adaptation:
        return self.plan.plain(self.h, rules)

    def _from_moments(self, moments: list, rules: tuple[Rule, ...]) -> Adaptation:
        """Normal levels' nodes from posterior moments (regression on ancestors by pseudo-inverse); points kept."""
        h = self.h
        centre, anc_centre, chol, shift = [], [], [], []
        for k, (first, second) in enumerate(moments):
            q, n_k = h.dims[k], h.n_units[k]
            tail = first.shape[1] - q
            if k in self.positions:
                centre.append(np.zeros((n_k, q)))
                anc_centre.append(first[:, :q])
                chol.append(np.broadcast_to(np.eye(q), (n_k, q, q)).copy())
                shift.append(np.zeros((n_k, q, tail)))
                continue
            V = second - first[:, :, None] * first[:, None, :]
            Vcc, Vca, Vaa = V[:, :q, :q], V[:, :q, q:], V[:, q:, q:]
            S = Vca @ np.linalg.pinv(Vaa, rcond=1e-10, hermitian=True) if tail else Vca
            cond = Vcc - np.einsum("cqa,cpa->cqp", S, Vca)
            cond = _spd(0.5 * (cond + np.swapaxes(cond, 1, 2)) + 1e-12 * np.eye(q))
            centre.append(first[:, :q])
            anc_centre.append(first[:, :q])
            chol.append(np.linalg.cholesky(cond))
            shift.append(S)
        return Adaptation(rules, tuple(centre), tuple(chol), tuple(shift), tuple(chain_modes(h, anc_centre)))

    def readapt(self, free: np.ndarray) -> None:
        """Place the normal levels' nodes at the posterior moments at `free` (plain nodes for ghq or none)."""
        _, pc, _, pred, rules = self._parts(free)
        if self.plan.method == "ghq" or not len(self.lay.levels):
            self.ad = self._plain(rules)
            return
        ad = self._plain(rules) if self.ad is None else self.ad.with_rules(rules)
        for _ in range(ADAPT_ITERATIONS):
            new = self._from_moments(evaluate(self.h, pred, pc.fam, ad, moments=True).moments, rules)
            change = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(new.mode, ad.mode, strict=True))
            ad = new
            if change < ADAPT_TOL:
                break
        self.ad = ad

    def gateaux(self, free: np.ndarray, candidates: np.ndarray, unit_ll: np.ndarray | None = None) -> np.ndarray:
        """Gateaux derivative towards a point mass at each candidate (module function `gateaux`)."""
        return gateaux(self, free, candidates)

    def evaluate(self, free: np.ndarray, weights: np.ndarray | None = None, gradient: bool = True) -> DiscreteEvaluation:
        """Log likelihood and its gradient at the current adaptation (EM's `weights` are not supported here)."""
        if weights is not None:
            raise NotImplementedError("EM's complete-data objective is not built for discrete levels in the nested engine")
        self.n_evaluations += 1
        model = self.model
        values, pc, pts, pred, rules = self._parts(free)
        K = self.dl.K
        if not pc.mm.valid:
            return DiscreteEvaluation(-np.inf, -np.inf, np.zeros(len(free)) if gradient else None,
                                      np.full((self.n_units, K), 1.0 / K), np.full(self.n_units, -np.inf))
        if self.ad is None:
            self.readapt(free)
        ev = evaluate(self.h, pred, pc.fam, self.ad.with_rules(rules), gradient=gradient, moments=True)
        posts = [np.clip(ev.moments[k][0][:, :d.K], 0.0, 1.0) for k, d in zip(self.positions, self.dls, strict=True)]
        if not gradient:
            return DiscreteEvaluation(ev.loglik, ev.loglik, None, posts[0], np.full(self.n_units, np.nan))
        grad = free_gradient(model, self.lay, pc, ev.es, ev.esu[:, self.normal_cols], ev.family or [])
        g = np.zeros(len(values))
        for d, Z, off, post, (z, v, e, logp) in zip(self.dls, self.Zs, self.offsets, posts, pts, strict=True):
            _point_gradient(g, d, Z, ev.esu[:, off:off + d.K], post, z, v, e, logp)
        grad = grad + model.partable.jacobian(np.asarray(free, dtype=float)).T @ g
        return DiscreteEvaluation(ev.loglik, ev.loglik, grad, posts[0], np.full(self.n_units, np.nan))


def _point_gradient(g: np.ndarray, d, Z: tuple, Esk: np.ndarray, post: np.ndarray, z: np.ndarray, v: np.ndarray,
                    e: np.ndarray, logp: np.ndarray) -> None:
    """Add one discrete level's terms to the values gradient g: its loadings, locations and logits.

    Esk (n, K) is E[s_i 1{point k}] per row, post (n_units, K) the units' posterior point probabilities.
    """
    for j, (Zj, r) in enumerate(zip(Z, d.loading_rows, strict=True)):
        if len(r):
            g[r] += Zj.T @ (Esk @ e[:, j])
    G_e = Esk.T @ z
    p = np.exp(logp[0])
    R = post - p[None, :]
    if d.centered:
        total = G_e.sum(axis=0)
        g_v = G_e - p[:, None] * total[None, :]
        hp = -(v @ total)
        g_logit = R.sum(axis=0) + p * (hp - p @ hp)
    else:
        g_v, g_logit = G_e, R.sum(axis=0)
    g[d.loc_rows.reshape(-1)] += g_v.reshape(-1)
    g[d.logit_rows] += g_logit[1:]


NEW_POINT_PROBABILITY = 1e-12
"""Probability of the candidate point in `NestedObjective.gateaux` (the derivative is its limit at 0)."""


def _with_point(ad: Adaptation, h_new, pos: int, K: int) -> Adaptation:
    """The adaptation with one more point at the discrete level (hierarchy index `pos`): its own nodes stay
    plain, and the levels below it get a zero shift (and centre) on the new point's column."""
    mode, chol, shift, anc = list(ad.mode), list(ad.chol), list(ad.shift), list(ad.anc_mode)
    n = mode[pos].shape[0]
    mode[pos] = np.zeros((n, K + 1))
    chol[pos] = np.broadcast_to(np.eye(K + 1), (n, K + 1, K + 1)).copy()
    shift[pos] = np.zeros((n, K + 1, shift[pos].shape[2]))
    for k in range(pos):
        col = h_new.offset(pos) - h_new.offset(k + 1) + K
        shift[k] = np.insert(shift[k], col, 0.0, axis=2)
        anc[k] = np.insert(anc[k], col, 0.0, axis=1)
    return Adaptation(ad.rules, tuple(mode), tuple(chol), tuple(shift), tuple(anc))


def gateaux(obj: NestedObjective, free: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Gateaux derivative of the log likelihood towards a point mass at each candidate (centred scale).

    With the candidate added at probability eps -> 0, d loglik / d eps = sum_j (E[1{j at the new point}] / eps)
    - n_units: the posterior probability of the new point, from the quadrature's moments in log space (no
    cancellation), over its prior one. The normal levels' nodes stay where they are for the fit.
    """
    values, pc, pts, pred, rules = obj._parts(free)
    if obj.ad is None:
        obj.readapt(free)
    K, pos, h = obj.dl.K, obj.pos, obj.h
    dims = list(h.dims)
    dims[pos] = K + 1
    h1 = make_hierarchy(list(h.unit_of_row), list(h.n_units), dims)
    ad1 = _with_point(obj.ad, h1, pos, K)
    z, _, e, logp = pts[0]
    eps = NEW_POINT_PROBABILITY
    logp1 = np.concatenate([logp[0] + np.log1p(-eps), [np.log(eps)]])
    rules1 = tuple(point_rule(logp1) if k == pos else r for k, r in enumerate(rules))
    col = obj.offset + K
    out = np.empty(len(candidates))
    for g, cand in enumerate(candidates):
        A = np.insert(pred.A, col, z @ cand, axis=1)
        ev = evaluate(h1, Predictor(pred.fixed, A), pc.fam, ad1.with_rules(rules1), moments=True)
        out[g] = float(ev.moments[pos][0][:, K].sum()) / eps - obj.n_units
    return out
