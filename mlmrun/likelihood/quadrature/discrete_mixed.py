"""A discrete top level over normal latent variables at the levels below it: points outside, quadrature inside.

For unit j of the discrete level and its point k, the lower levels' normal
latent variables are integrated by the nested (adaptive) quadrature of
likelihood/quadrature/adaptive.py with the point's contribution z_i' e_k added to every
row's linear predictor; the adaptation (posterior modes and curvatures) is
found per point, since the modes move with e_k. Then

    log L_j = logsumexp_k [ log p_jk + sum_{top units t in j} log L_t(e_k) ],

the same outer sum as likelihood/quadrature/discrete.py. The gradient with the
adaptations held fixed is exact (the Fisher identity inside, posterior point
weights outside): the per-row score expectations of every point are weighted
by the unit's posterior point probabilities and mapped by the quadrature
engine's adjoint (objective.free_gradient); locations, loadings of the
discrete dimensions and logits get the discrete engine's terms.
"""

from __future__ import annotations

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.quadrature.adaptive import Adaptation, Predictor, evaluate, logsumexp
from mlmrun.likelihood.quadrature.discrete import DiscreteEvaluation
from mlmrun.likelihood.quadrature.modes import adapt
from mlmrun.likelihood.quadrature.objective import QuadratureObjective, free_gradient
from mlmrun.likelihood.quadrature.plan import IntegrationPlan


class MixedObjective:
    """Discrete points at the top, nested quadrature below; adaptations per point, refreshed by `readapt`."""

    def __init__(self, model: CompiledModel, plan: IntegrationPlan) -> None:
        from mlmrun.compile.discrete import point_logits

        self._point_logits = point_logits
        self.model = model
        self.dl = model.discrete[0]
        self.quad = QuadratureObjective(model, plan, merge=False)
        lay = self.quad.lay
        rows = lay.rows
        disc_codes = model.levels[self.dl.level].codes[rows.original]
        self.unit = disc_codes
        self.n_units = model.levels[self.dl.level].n_units
        h = lay.hierarchy
        top = h.unit_of_row[-1]
        self.top_to_unit = np.zeros(h.n_units[-1], dtype=np.intp)
        self.top_to_unit[top] = disc_codes
        self.Z = tuple(Zj[rows.original] for Zj in self.dl.Z)
        self.W = self.dl.W
        self.freq = np.ones(self.n_units)
        self.pattern_of_unit = np.arange(self.n_units)
        self.ads: list[Adaptation] | None = None
        self.n_evaluations = 0

    def unit_posterior(self, posterior: np.ndarray) -> np.ndarray:
        return posterior

    def _parts(self, free: np.ndarray):
        values = self.model.partable.unpack(np.asarray(free, dtype=float))
        pc = self.quad.pieces(free)
        cols = [Zj[:, 0] if not len(r) else Zj @ values[r] for Zj, r in zip(self.Z, self.dl.loading_rows, strict=True)]
        z = np.column_stack(cols)
        logits = self._point_logits(self.dl, values)
        logp = logits - logsumexp(logits, axis=1)[:, None]
        v = values[self.dl.loc_rows]
        e = v - np.exp(logp[0]) @ v if self.dl.centered else v
        return values, pc, z, v, e, logp

    def readapt(self, free: np.ndarray) -> None:
        """Place every point's quadrature nodes at the posterior modes of the lower levels at `free`."""
        _, pc, z, _, e, _ = self._parts(free)
        plan = self.quad.plan
        h = self.quad.lay.hierarchy
        ads = []
        for k in range(len(e)):
            pred = Predictor(pc.pred.fixed + z @ e[k], pc.pred.A)
            if plan.method == "ghq":
                ads.append(plan.plain(h, plan.rules))
                continue
            warm = None if self.ads is None or len(self.ads) != len(e) else list(self.ads[k].mode)
            ads.append(adapt(h, pred, pc.fam, plan.rules, warm)[0])
        self.ads = ads

    def evaluate(self, free: np.ndarray, weights: np.ndarray | None = None, gradient: bool = True) -> DiscreteEvaluation:
        """Log likelihood (or EM's Q with `weights`) and its gradient, at the current adaptations."""
        self.n_evaluations += 1
        model, dl, lay = self.model, self.dl, self.quad.lay
        values, pc, z, v, e, logp = self._parts(free)
        if not pc.mm.valid:
            K = len(e)
            post = np.full((self.n_units, K), 1.0 / K)
            return DiscreteEvaluation(-np.inf, -np.inf, np.zeros(len(free)) if gradient else None, post,
                                      np.full(self.n_units, -np.inf))
        if self.ads is None or len(self.ads) != len(e):
            self.readapt(free)
        h = lay.hierarchy
        evs = []
        c = np.zeros((self.n_units, len(e)))
        for k in range(len(e)):
            pred = Predictor(pc.pred.fixed + z @ e[k], pc.pred.A)
            ev = evaluate(h, pred, pc.fam, self.ads[k], gradient=gradient)
            c[:, k] = np.bincount(self.top_to_unit, weights=ev.top, minlength=self.n_units)
            evs.append(ev)
        a = c + logp
        unit_ll = logsumexp(a, axis=1)
        post = np.exp(a - unit_ll[:, None])
        loglik = float(unit_ll.sum())
        W = post if weights is None else weights
        value = loglik if weights is None else float(np.sum(W * a))
        if not gradient:
            return DiscreteEvaluation(value, loglik, None, post, unit_ll)
        n = lay.rows.n
        es = np.zeros(n)
        esu = np.zeros((n, evs[0].esu.shape[1]))
        fam = [np.zeros_like(f) for f in (evs[0].family or [])]
        G_e = np.zeros_like(e)
        g = np.zeros(len(values))
        for k, ev in enumerate(evs):
            w = W[self.unit, k]
            wes = w * ev.es
            es += wes
            esu += w[:, None] * ev.esu
            for store, f in zip(fam, ev.family or [], strict=True):
                store += w.reshape((-1,) + (1,) * (f.ndim - 1)) * f
            G_e[k] = wes @ z
            for j, (Zj, r) in enumerate(zip(self.Z, dl.loading_rows, strict=True)):
                if len(r):
                    g[r] += Zj.T @ (wes * e[k, j])
        grad = free_gradient(model, lay, pc, es, esu, fam)
        p = np.exp(logp[0])
        R = W - np.exp(logp)
        if dl.centered:
            total = G_e.sum(axis=0)
            g_v = G_e - p[:, None] * total[None, :]
            hp = -(v @ total)
            g_logit = R.sum(axis=0) + p * (hp - p @ hp)
        else:
            g_v, g_logit = G_e, R.sum(axis=0)
        g[dl.loc_rows.reshape(-1)] += g_v.reshape(-1)
        g[dl.logit_rows] += g_logit[1:]
        if dl.w_names:
            g[dl.gamma_rows.reshape(-1)] += (self.W.T @ R[:, 1:]).T.reshape(-1)
        grad = grad + model.partable.jacobian(np.asarray(free, dtype=float)).T @ g
        return DiscreteEvaluation(value, loglik, grad, post, unit_ll)

    def gateaux(self, free: np.ndarray, candidates: np.ndarray, unit_ll: np.ndarray) -> np.ndarray:
        """Gateaux derivative sum_j L_j(e) / L_j(fit) - 1 towards a point mass at each candidate (centred scale).

        L_j(e) integrates the levels below at the candidate point, with its own adaptation (the modes move
        with e), as `evaluate` does for the fitted points.
        """
        _, pc, z, _, _, _ = self._parts(free)
        plan, h = self.quad.plan, self.quad.lay.hierarchy
        out = np.empty(len(candidates))
        for g, cand in enumerate(candidates):
            pred = Predictor(pc.pred.fixed + z @ cand, pc.pred.A)
            ad = plan.plain(h, plan.rules) if plan.method == "ghq" else adapt(h, pred, pc.fam, plan.rules)[0]
            top = evaluate(h, pred, pc.fam, ad).top
            c = np.bincount(self.top_to_unit, weights=top, minlength=self.n_units)
            out[g] = float(np.sum(np.exp(c - unit_ll))) - self.n_units
        return out
