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

import dataclasses
from dataclasses import dataclass

import numpy as np

from mlmrun.compile.discrete import DiscreteLevel, point_logits
from mlmrun.compile.matrices import MatrixGradient, model_matrices, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.quadrature.adaptive import logsumexp
from mlmrun.likelihood.quadrature.objective import EquationFamilies
from mlmrun.likelihood.quadrature.rows import RowSet, row_set


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
        rows = row_set(model, (lvl,), merge=False)
        unit = rows.codes[lvl]
        n_units = model.levels[lvl].n_units
        self.pattern_of_unit, keep_units, self.freq = _unit_patterns(model, self.dl, rows, unit, n_units)
        keep = np.flatnonzero(np.isin(unit, keep_units))
        self.rows = _subset(rows, keep, len(model.equations))
        self.unit = np.searchsorted(keep_units, unit[keep])
        self.n_units = len(keep_units)
        self.W = self.dl.W[keep_units]
        self.counts = np.bincount(self.unit, minlength=self.n_units)
        self.row_start = np.concatenate([[0], np.cumsum(self.counts)])[:-1]
        self.Z = tuple(Zj[self.rows.original] for Zj in self.dl.Z)
        self.n_evaluations = 0
        self._fam: EquationFamilies | None = None
        self._last: tuple | None = None
        """(free, order, arrays) of the last kernel call: EM's M-step starts where its E-step evaluated."""

    def families(self, mm) -> EquationFamilies | BernoulliLogit:
        """The row families; built once when no equation has family parameters (their kernels do not change)."""
        if self._fam is not None:
            return self._fam
        eqs = self.model.equations
        if (len(eqs) == 1 and eqs[0].family.name == "binomial" and eqs[0].family.link == "logit"
                and (self.rows.trials is None or np.all(self.rows.trials == 1))):
            self._fam = BernoulliLogit(self.rows.y)
            return self._fam
        fam = EquationFamilies(self.model, self.rows, mm)
        if not fam.param_eqs:
            self._fam = fam
        return fam

    def unit_posterior(self, posterior: np.ndarray) -> np.ndarray:
        """Posterior point probabilities of every unit of the level (patterns expanded), (n_units_level, K)."""
        return posterior[self.pattern_of_unit]

    def loadings(self, values: np.ndarray) -> np.ndarray:
        """(n, d): z_j(i) = Z_j[i] @ lambda_j (weight 1 where the dimension has no loading rows)."""
        cols = [Zj[:, 0] if not len(r) else Zj @ values[r] for Zj, r in zip(self.Z, self.dl.loading_rows, strict=True)]
        return np.column_stack(cols) if cols else np.zeros((self.rows.n, 0))

    def points(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw locations v (K, d), centred locations e (K, d), log probabilities (n_units or 1, K))."""
        logits = point_logits(self.dl, values, self.W)
        logp = logits - logsumexp(logits, axis=1)[:, None]
        v = values[self.dl.loc_rows]
        e = v - np.exp(logp[0]) @ v if self.dl.centered else v
        return v, e, logp

    def fixed_part(self, values: np.ndarray) -> tuple[np.ndarray, EquationFamilies]:
        mm = model_matrices(self.model, values)
        return self.rows.X @ mm.beta + self.rows.offset, self.families(mm)

    def evaluate(self, free: np.ndarray, weights: np.ndarray | None = None, gradient: bool = True) -> DiscreteEvaluation:
        """Log likelihood and gradient at `free`; with `weights` (n_units, K), EM's Q and its gradient instead."""
        self.n_evaluations += 1
        model, dl, rows = self.model, self.dl, self.rows
        values = model.partable.unpack(np.asarray(free, dtype=float))
        mm = model_matrices(model, values)
        fam = self.families(mm)
        fixed = rows.X @ mm.beta + rows.offset
        z = self.loadings(values)
        v, e, logp = self.points(values)
        order = 1 if gradient else 0
        last = self._last
        if last is not None and last[1] >= order and np.array_equal(last[0], free):
            nu, c, d1 = last[2]
        else:
            nu = fixed[:, None] + z @ e.T
            if len(dl.scale_rows):
                ll, d1 = self._class_kernel(mm, values, nu, order)
            else:
                ll, d1, _ = fam.derivs(nu, order)
            c = np.add.reduceat(ll, self.row_start, axis=0)
            self._last = (np.array(free, dtype=float), order, (nu, c, d1))
        a = c + logp
        unit_ll = logsumexp(a, axis=1)
        post = np.exp(a - unit_ll[:, None])
        f = self.freq
        loglik = float(f @ unit_ll)
        W = (post if weights is None else weights) * f[:, None]
        value = loglik if weights is None else float(np.sum(W * a))
        if not gradient:
            return DiscreteEvaluation(value, loglik, None, post, unit_ll)
        Wr = np.repeat(W, self.counts, axis=0)  # rows are sorted by unit
        Wd = Wr * d1
        es = Wd.sum(axis=1)
        grad = MatrixGradient.zeros(mm)
        grad.beta = rows.X.T @ es
        g_shift = None
        if len(dl.scale_rows):
            scores, g_shift = self._class_scores(mm, values, nu, Wr)
        else:
            scores = fam.param_expect(nu, Wr)
        for eq_i, score in zip(fam.param_eqs, scores, strict=True):
            eq = model.equations[eq_i]
            if eq.threshold_rows is not None:
                grad.thresholds[eq_i] = score.sum(axis=0)
            else:
                idx = rows.eq_rows[eq_i]
                grad.scale[rows.original[idx]] = score[idx, 0]
        g = values_gradient(model, values, grad)
        if g_shift is not None:
            g[dl.scale_rows] += g_shift[1:]
        for j, (Zj, r) in enumerate(zip(self.Z, dl.loading_rows, strict=True)):
            if len(r):
                g[r] += Zj.T @ (Wd @ e[:, j])
        G_e = Wd.T @ z
        p = np.exp(logp[0])
        R = W - f[:, None] * np.exp(logp)
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
            g[dl.gamma_rows.reshape(-1)] += (self.W.T @ R[:, 1:]).T.reshape(-1)
        free_grad = model.partable.jacobian(np.asarray(free, dtype=float)).T @ g
        return DiscreteEvaluation(value, loglik, free_grad, post, unit_ll)

    def _class_families(self, mm, values: np.ndarray) -> list[EquationFamilies]:
        """Per class k, the row families with every scale (gaussian SD, gamma shape) times exp(lnscale_k)."""
        shifts = np.concatenate([[0.0], values[self.dl.scale_rows]])
        return [EquationFamilies(self.model, self.rows, dataclasses.replace(mm, scale=mm.scale * np.exp(a)))
                for a in shifts]

    def _class_kernel(self, mm, values: np.ndarray, nu: np.ndarray, order: int) -> tuple:
        """(log f, d/dnu) (rows, K) with class k's scale in column k (`class_scale`)."""
        parts = [f.derivs(nu[:, [k]], order) for k, f in enumerate(self._class_families(mm, values))]
        ll = np.concatenate([q[0] for q in parts], axis=1)
        return ll, (np.concatenate([q[1] for q in parts], axis=1) if order >= 1 else None)

    def _class_scores(self, mm, values: np.ndarray, nu: np.ndarray, Wr: np.ndarray) -> tuple[list, np.ndarray]:
        """Family-parameter scores summed over classes (the common scale gets exp(shift_k) d/d scale_k), and
        d/d shift_k = sum of rows' scale_k d/d scale_k."""
        fams = self._class_families(mm, values)
        shifts = np.exp(np.concatenate([[0.0], values[self.dl.scale_rows]]))
        scaled = {e for e in fams[0].param_eqs if self.model.equations[e].scale_rows is not None}
        total: list | None = None
        g_shift = np.zeros(len(fams))
        for k, f in enumerate(fams):
            sk = f.param_expect(nu[:, [k]], Wr[:, [k]])
            for i, e in enumerate(f.param_eqs):
                if e in scaled:
                    idx = self.rows.eq_rows[e]
                    g_shift[k] += float(sk[i][idx, 0] @ (mm.scale[self.rows.original[idx]] * shifts[k]))
                    sk[i] = sk[i] * shifts[k]
            total = sk if total is None else [a + b for a, b in zip(total, sk, strict=True)]
        return total or [], g_shift

    def gateaux(self, free: np.ndarray, candidates: np.ndarray, unit_ll: np.ndarray) -> np.ndarray:
        """Gateaux derivative sum_j f_j(e) / f_j(fit) - 1 of the log likelihood towards a point mass at each candidate.

        `candidates` (G, d) are locations on the centred scale of the fitted masses; a positive value means
        adding a point there raises the likelihood (Lindsay 1983; gllamm's gateaux()).
        """
        values = self.model.partable.unpack(np.asarray(free, dtype=float))
        fixed, fam = self.fixed_part(values)
        z = self.loadings(values)
        out = np.empty(len(candidates))
        f = self.freq
        for s in range(0, len(candidates), 64):
            block = candidates[s:s + 64]
            ll = fam.derivs(fixed[:, None] + z @ block.T, 0)[0]
            c = np.add.reduceat(ll, self.row_start, axis=0)
            out[s:s + 64] = f @ np.exp(c - unit_ll[:, None]) - f.sum()
        return out


class BernoulliLogit:
    """Binary responses with the logit link: log f = -softplus(s), d/dnu = (2y - 1) expit(s), s = (1 - 2y) nu.

    The same values as kernels.binomial_logit with one trial, in fewer passes over the (rows x points)
    arrays (no trials or binomial coefficients to apply); the discrete engine's hot loop.
    """

    param_eqs: list[int] = []
    param_rows: list[np.ndarray] = []

    def __init__(self, y: np.ndarray) -> None:
        self.sign = (1.0 - 2.0 * np.asarray(y, dtype=float))[:, None]

    def derivs(self, nu: np.ndarray, order: int, rows: slice | np.ndarray = slice(None)) -> tuple:
        sign = self.sign[rows]
        s = nu * sign
        e = np.abs(s)
        np.negative(e, out=e)
        np.exp(e, out=e)
        e += 1.0  # 1 + exp(-|s|)
        ll = np.maximum(s, 0.0)
        ll += np.log(e)
        np.negative(ll, out=ll)
        if order < 1:
            return ll, None, None
        np.minimum(s, 0.0, out=s)
        np.exp(s, out=s)
        s /= e  # expit(s), no cancellation
        s *= -sign
        return ll, s, None

    def param_expect(self, nu: np.ndarray, weight: np.ndarray, rows: slice | np.ndarray = slice(None)) -> list:
        return []


def _subset(rows: RowSet, keep: np.ndarray, n_eq: int) -> RowSet:
    """The rows at positions `keep` (sorted) of a row set, with their original row numbers."""
    eq_of = np.zeros(rows.n, dtype=int)
    for e, idx in enumerate(rows.eq_rows):
        eq_of[idx] = e
    eq_of = eq_of[keep]
    return RowSet(X=rows.X[keep], offset=rows.offset[keep], Z=tuple(z[keep] for z in rows.Z), W=rows.W[keep],
                  codes={k: c[keep] for k, c in rows.codes.items()}, y=rows.y[keep],
                  trials=None if rows.trials is None else rows.trials[keep], constant=None,
                  eq_rows=tuple(np.flatnonzero(eq_of == e) for e in range(n_eq)), original=rows.original[keep])


def _row_keys(M: np.ndarray) -> np.ndarray:
    """An integer per row, equal exactly for equal rows: a random projection sorted in 1-D, verified element-wise
    (np.unique over rows sorts them lexicographically, ~10x slower; on a collision it is used instead)."""
    proj = M @ np.random.default_rng(0).normal(size=M.shape[1])
    _, first, key = np.unique(proj, return_index=True, return_inverse=True)
    key = key.reshape(-1)
    if np.array_equal(M[first[key]], M):
        return key
    return np.unique(M, axis=0, return_inverse=True)[1].reshape(-1)


def _unit_patterns(model: CompiledModel, dl: DiscreteLevel, rows: RowSet, unit: np.ndarray,
                   n_units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units whose rows are identical (as a multiset) and whose covariates agree share one likelihood term.

    A latent class model on J binary items has at most 2^J response patterns, far fewer than persons;
    each pattern is evaluated once and counted `freq` times. Returns (pattern of each unit,
    representative unit of each pattern (sorted), frequency of each pattern).
    """
    orig = rows.original
    cols = [rows.y[:, None], rows.X, rows.offset[:, None], model.eq_of_row[orig][:, None].astype(float)]
    cols += [Zj[orig] for Zj in dl.Z]
    if rows.trials is not None:
        cols.append(rows.trials[:, None])
    row_key = _row_keys(np.concatenate(cols, axis=1))
    order = np.lexsort((row_key, unit))
    bounds = np.flatnonzero(np.diff(unit[order])) + 1
    keys = np.split(row_key[order], bounds)
    Wu = dl.W
    seen: dict[bytes, int] = {}
    pattern = np.empty(n_units, dtype=np.intp)
    reps: list[int] = []
    for u, k in enumerate(keys):
        sig = k.tobytes() + Wu[u].tobytes()
        p = seen.setdefault(sig, len(reps))
        if p == len(reps):
            reps.append(u)
        pattern[u] = p
    reps_arr = np.array(reps, dtype=np.intp)
    freq = np.bincount(pattern, minlength=len(reps)).astype(float)
    rank = np.argsort(reps_arr)
    position = np.empty(len(reps), dtype=np.intp)
    position[rank] = np.arange(len(reps))
    return position[pattern], reps_arr[rank], freq[rank]
