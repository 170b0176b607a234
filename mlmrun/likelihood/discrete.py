"""Log likelihood of a model whose latent variables are discrete at one level, and its analytic gradient.

The integral over the latent distribution is a finite sum over the level's K
points (compile/discrete.py): for unit j,

    log L_j = logsumexp_k [ log p_jk + sum_{i in j} log f(y_i | nu_i + z_i' e_k) ],

a non-adaptive rule whose nodes are the free locations e_k and whose weights
are the free probabilities p_jk = softmax(logits + Gamma w_j). The gradient
is exact: with posterior weights w_jk, d log L = sum_jk w_jk d(log p_jk +
sum_i log f_ik); the same formula with the weights held fixed is the
gradient of EM's complete-data objective Q (`weights=`), so EM's M-step and
the quasi-Newton stage share one function. Locations of NPMLE points are
centred, e_k = v_k - sum_l p_l v_l, and the chain rule through the centring
adds -p_k sum_l G_l to d/dv_k and -v_k' sum_l G_l to d/dp_k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.discrete import DiscreteLevel, point_logits
from mlmrun.compile.matrices import MatrixGradient, model_matrices, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.adaptive import logsumexp
from mlmrun.likelihood.objective import EquationFamilies
from mlmrun.likelihood.rows import row_set


@dataclass
class DiscreteEvaluation:
    """Log likelihood (or EM's Q), its gradient on the free vector, and the posterior point weights per unit."""

    value: float
    loglik: float
    gradient: np.ndarray | None
    posterior: np.ndarray
    """(n_units, K)."""
    unit_loglik: np.ndarray
    """(n_units,) log L_j."""


class DiscreteObjective:
    """Rows sorted by unit of the discrete level; evaluates log likelihood, EM's Q and their gradients."""

    def __init__(self, model: CompiledModel) -> None:
        self.model = model
        self.dl: DiscreteLevel = model.discrete[0]
        lvl = self.dl.level
        self.rows = row_set(model, (lvl,), merge=False)
        orig = self.rows.original
        self.unit = self.rows.codes[lvl]
        self.n_units = model.levels[lvl].n_units
        counts = np.bincount(self.unit, minlength=self.n_units)
        self.row_start = np.concatenate([[0], np.cumsum(counts)])[:-1]
        self.Z = tuple(Zj[orig] for Zj in self.dl.Z)
        self.n_evaluations = 0

    def loadings(self, values: np.ndarray) -> np.ndarray:
        """(n, d): z_j(i) = Z_j[i] @ lambda_j (weight 1 where the dimension has no loading rows)."""
        cols = [Zj[:, 0] if not len(r) else Zj @ values[r] for Zj, r in zip(self.Z, self.dl.loading_rows, strict=True)]
        return np.column_stack(cols) if cols else np.zeros((self.rows.n, 0))

    def points(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw locations v (K, d), centred locations e (K, d), log probabilities (n_units or 1, K))."""
        logits = point_logits(self.dl, values)
        logp = logits - logsumexp(logits, axis=1)[:, None]
        v = values[self.dl.loc_rows]
        e = v - np.exp(logp[0]) @ v if self.dl.centered else v
        return v, e, logp

    def fixed_part(self, values: np.ndarray) -> tuple[np.ndarray, EquationFamilies]:
        mm = model_matrices(self.model, values)
        return self.rows.X @ mm.beta + self.rows.offset, EquationFamilies(self.model, self.rows, mm)

    def evaluate(self, free: np.ndarray, weights: np.ndarray | None = None, gradient: bool = True) -> DiscreteEvaluation:
        """Log likelihood and gradient at `free`; with `weights` (n_units, K), EM's Q and its gradient instead."""
        self.n_evaluations += 1
        model, dl, rows = self.model, self.dl, self.rows
        values = model.partable.unpack(np.asarray(free, dtype=float))
        mm = model_matrices(model, values)
        fam = EquationFamilies(model, rows, mm)
        fixed = rows.X @ mm.beta + rows.offset
        z = self.loadings(values)
        v, e, logp = self.points(values)
        nu = fixed[:, None] + z @ e.T
        ll, d1, _ = fam.derivs(nu, 1 if gradient else 0)
        a = np.add.reduceat(ll, self.row_start, axis=0) + logp
        unit_ll = logsumexp(a, axis=1)
        post = np.exp(a - unit_ll[:, None])
        loglik = float(unit_ll.sum())
        W = post if weights is None else weights
        value = loglik if weights is None else float(np.sum(W * a))
        if not gradient:
            return DiscreteEvaluation(value, loglik, None, post, unit_ll)
        Wr = W[self.unit]
        Wd = Wr * d1
        es = Wd.sum(axis=1)
        grad = MatrixGradient.zeros(mm)
        grad.beta = rows.X.T @ es
        for eq_i, f in zip(fam.param_eqs, fam.param_expect(nu, Wr), strict=True):
            eq = model.equations[eq_i]
            if eq.threshold_rows is not None:
                grad.thresholds[eq_i] = f.sum(axis=0)
            else:
                idx = rows.eq_rows[eq_i]
                grad.scale[rows.original[idx]] = f[idx, 0]
        g = values_gradient(model, values, grad)
        for j, (Zj, r) in enumerate(zip(self.Z, dl.loading_rows, strict=True)):
            if len(r):
                g[r] += Zj.T @ (Wd @ e[:, j])
        G_e = Wd.T @ z
        p = np.exp(logp[0])
        R = W - np.exp(logp)
        if dl.centered:
            total = G_e.sum(axis=0)
            g_v = G_e - p[:, None] * total[None, :]
            h = -(v @ total)
            g_logit = R.sum(axis=0) + p * (h - p @ h)
        else:
            g_v = G_e
            g_logit = R.sum(axis=0)
        g[dl.loc_rows.reshape(-1)] += g_v.reshape(-1)
        g[dl.logit_rows] += g_logit[1:]
        if dl.w_names:
            g[dl.gamma_rows.reshape(-1)] += (dl.W.T @ R[:, 1:]).T.reshape(-1)
        free_grad = model.partable.jacobian(np.asarray(free, dtype=float)).T @ g
        return DiscreteEvaluation(value, loglik, free_grad, post, unit_ll)

    def gateaux(self, free: np.ndarray, candidates: np.ndarray, unit_ll: np.ndarray) -> np.ndarray:
        """Gateaux derivative sum_j f_j(e) / f_j(fit) - 1 of the log likelihood towards a point mass at each candidate.

        `candidates` (G, d) are locations on the centred scale of the fitted masses; a positive value means
        adding a point there raises the likelihood (Lindsay 1983; gllamm's gateaux()).
        """
        values = self.model.partable.unpack(np.asarray(free, dtype=float))
        fixed, fam = self.fixed_part(values)
        z = self.loadings(values)
        out = np.empty(len(candidates))
        for s in range(0, len(candidates), 64):
            block = candidates[s:s + 64]
            ll = fam.derivs(fixed[:, None] + z @ block.T, 0)[0]
            c = np.add.reduceat(ll, self.row_start, axis=0)
            out[s:s + 64] = np.exp(c - unit_ll[:, None]).sum(axis=0) - len(unit_ll)
        return out
