"""Posterior modes and curvature of the standardised latent disturbances, for adaptive quadrature.

For each top-level unit the joint log posterior of all its u's (its own and
every nested sub-unit's) is

    h(u) = sum_i log f(y_i | nu_i(u)) + sum_units log phi(u_c),

maximised by Newton's method with a per-top-unit step-halving line search.
The Hessian of h has the nested (tree) sparsity of the hierarchy, so every
Newton system is solved by block elimination bottom-up: a unit's block is
eliminated (Schur complement) into its ancestors' blocks, then the steps
are recovered top-down. Cost is linear in the number of units.

The same elimination gives, at the mode, the Gaussian approximation that
adaptive quadrature needs (likelihood/quadrature/adaptive.py): with precision P (the
negated Hessian) after eliminating a unit's descendants, u_c given its
ancestors u_a has mean m_c - P_cc^-1 P_ca (u_a - m_a) and covariance P_cc^-1
(Rabe-Hesketh, Skrondal & Pickles 2005, section 3; Pinheiro & Chao 2006 for
the nested Laplace case). One point per level is then exactly Laplace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.likelihood.quadrature.adaptive import (
    Adaptation,
    Hierarchy,
    Predictor,
    RowFamily,
    chain_modes,
    evaluate,
    indicator,
)
from mlmrun.likelihood.quadrature.rules import Rule
from mlmrun.likelihood.quadrature.weights import below_top

MIN_EIGEN = 1e-6
"""Smallest eigenvalue allowed in a precision block (non-log-concave families may give indefinite curvature)."""


@dataclass(frozen=True)
class Factors:
    """Block elimination of the Newton system at one point, per level."""

    own: list[np.ndarray]
    """P_cc after eliminating descendants, (n_k, q_k, q_k)."""
    gain: list[np.ndarray]
    """P_cc^-1 P_ca, (n_k, q_k, D_{>k})."""
    step_own: list[np.ndarray]
    """P_cc^-1 g_c (after elimination), (n_k, q_k)."""


def _spd(P: np.ndarray) -> np.ndarray:
    """P itself when positive definite, else with eigenvalues lifted to MIN_EIGEN (modified Newton)."""
    try:
        np.linalg.cholesky(P)
        return P
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(P)
        return np.einsum("cij,cj,ckj->cik", V, np.maximum(w, MIN_EIGEN), V)


def predictor_at(h: Hierarchy, pred: Predictor, u: list[np.ndarray]) -> np.ndarray:
    """nu at given per-unit u values."""
    nu = pred.fixed.copy()
    col = 0
    for k, q in enumerate(h.dims):
        nu += np.einsum("iq,iq->i", pred.A[:, col:col + q], u[k][h.unit_of_row[k]])
        col += q
    return nu


def cross_precision(h: Hierarchy, pred: Predictor, rows: np.ndarray, group: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Off-diagonal curvature of choice sets (families/choice.py), per lowest unit: sum over stages of v v'
    minus sum over entries of p^2 a a', with v = sum of p a over a stage's entries (the negated precision part)."""
    D, n0 = pred.A.shape[1], h.n_units[0]
    pa = p[:, None] * pred.A[rows]
    n_g = int(group.max()) + 1 if len(group) else 0
    V = indicator(group, n_g) @ pa
    unit_e = h.unit_of_row[0][rows]
    unit_g = np.zeros(n_g, dtype=np.intp)
    unit_g[group] = unit_e
    vv = indicator(unit_g, n0) @ (V[:, :, None] * V[:, None, :]).reshape(n_g, D * D)
    ee = indicator(unit_e, n0) @ (pa[:, :, None] * pa[:, None, :]).reshape(len(rows), D * D)
    return (vv - ee).reshape(n0, D, D)


def eliminate(h: Hierarchy, pred: Predictor, u: list[np.ndarray], d1: np.ndarray, d2: np.ndarray,
              cross: tuple | None = None) -> Factors:
    """Gradient and precision of h at u, eliminated bottom-up into per-level factors.

    `cross` (rows, stage, probability) adds the off-diagonal curvature of choice sets, whose rows'
    log densities are not separate (RowFamily.cross).
    """
    n, D = pred.A.shape
    g = h.row_sum @ (d1[:, None] * pred.A)
    outer = (-d2)[:, None, None] * pred.A[:, :, None] * pred.A[:, None, :]
    P = (h.row_sum @ outer.reshape(n, D * D)).reshape(-1, D, D)
    if cross is not None:
        P -= cross_precision(h, pred, *cross)
    own, gain, step_own = [], [], []
    for k, q in enumerate(h.dims):
        g = g.copy()
        g[:, :q] -= u[k]
        P = P.copy()
        P[:, np.arange(q), np.arange(q)] += 1.0
        Pcc = _spd(P[:, :q, :q])
        own.append(Pcc)
        sc = np.linalg.solve(Pcc, g[:, :q, None])[..., 0]
        step_own.append(sc)
        if k == h.depth - 1:
            gain.append(np.zeros((len(Pcc), q, 0)))
            break
        cross = P[:, :q, q:]
        Kc = np.linalg.solve(Pcc, cross)
        gain.append(Kc)
        rest = P[:, q:, q:] - np.einsum("cqa,cqb->cab", cross, Kc)
        g_rest = g[:, q:] - np.einsum("cqa,cq->ca", cross, sc)
        Dn = rest.shape[1]
        P = (h.child_sum[k + 1] @ rest.reshape(len(rest), Dn * Dn)).reshape(-1, Dn, Dn)
        g = h.child_sum[k + 1] @ g_rest
    return Factors(own, gain, step_own)


def newton_step(h: Hierarchy, f: Factors) -> list[np.ndarray]:
    """Back-substitution top-down: delta_c = P_cc^-1 g_c - gain_c delta_ancestors."""
    K = h.depth
    delta: list = [None] * K
    chain: list = [None] * K
    delta[K - 1] = f.step_own[K - 1]
    chain[K - 1] = delta[K - 1]
    for k in range(K - 2, -1, -1):
        anc = chain[k + 1][h.parent[k]]
        delta[k] = f.step_own[k] - np.einsum("cqd,cd->cq", f.gain[k], anc)
        chain[k] = np.concatenate([delta[k], anc], axis=1)
    return delta


def _top_of(h: Hierarchy) -> list[np.ndarray]:
    """For each level, the top-level unit of every unit; last entry: top unit of every row."""
    tops: list = [None] * h.depth
    tops[-1] = np.arange(h.n_units[-1])
    for k in range(h.depth - 2, -1, -1):
        tops[k] = tops[k + 1][h.parent[k]]
    return tops + [tops[0][h.unit_of_row[0]]]


def _objective(h: Hierarchy, tops: list, ll: np.ndarray, u: list[np.ndarray]) -> np.ndarray:
    """h(u) per top-level unit (up to constants)."""
    n_top = h.n_units[-1]
    units, rows = below_top(h)
    val = np.bincount(tops[-1], weights=ll * rows, minlength=n_top)
    for k in range(h.depth):
        val -= 0.5 * np.bincount(tops[k], weights=units[k] * np.sum(u[k] ** 2, axis=1), minlength=n_top)
    return val


def _cross(fam: RowFamily, nu: np.ndarray) -> tuple | None:
    """The family's choice-set curvature terms at nu, when it has any (families/choice.py)."""
    cross = getattr(fam, "cross", None)
    return None if cross is None else cross(nu)


def find_modes(h: Hierarchy, pred: Predictor, fam: RowFamily, start: list[np.ndarray] | None = None,
               tol: float = 1e-10, max_iter: int = 60) -> tuple[list[np.ndarray], Factors, bool]:
    """Joint posterior modes of u for every top-level unit, the elimination factors there, and convergence."""
    u = [np.zeros((m, q)) for m, q in zip(h.n_units, h.dims, strict=True)] if start is None else [x.copy() for x in start]
    tops = _top_of(h)
    nu = predictor_at(h, pred, u)
    ll, d1, d2 = fam.derivs(nu, 2)
    value = _objective(h, tops, ll, u)
    converged = False
    for _ in range(max_iter):
        factors = eliminate(h, pred, u, d1, d2, _cross(fam, nu))
        delta = newton_step(h, factors)
        size = max(float(np.max(np.abs(d), initial=0.0)) for d in delta)
        if not np.isfinite(size):
            break
        if size < tol:
            converged = True
            break
        alpha = np.ones(h.n_units[-1])
        for _halving in range(40):
            trial = [x + alpha[tops[k]][:, None] * d for k, (x, d) in enumerate(zip(u, delta, strict=True))]
            t_nu = predictor_at(h, pred, trial)
            t_ll, t_d1, t_d2 = fam.derivs(t_nu, 2)
            t_val = _objective(h, tops, t_ll, trial)
            worse = ~(t_val >= value - 1e-12 * (1.0 + np.abs(value)))
            if not worse.any():
                break
            alpha[worse] *= 0.5
        u, nu, ll, d1, d2, value = trial, t_nu, t_ll, t_d1, t_d2, t_val
    else:
        factors = eliminate(h, pred, u, d1, d2, _cross(fam, nu))
    if not converged:
        size = max(float(np.max(np.abs(d), initial=0.0)) for d in newton_step(h, factors))
        converged = size < 1e-6
    return u, factors, converged


def adaptation_from(h: Hierarchy, modes: list[np.ndarray], f: Factors, rules: tuple[Rule, ...]) -> Adaptation:
    """Nodes centred at the modes, scaled by the conditional curvature: C C' = P_cc^-1, S = -P_cc^-1 P_ca."""
    chol = []
    for Pcc in f.own:
        R = np.linalg.cholesky(Pcc)
        eye = np.broadcast_to(np.eye(R.shape[1]), R.shape)
        chol.append(np.swapaxes(np.linalg.solve(R, eye), 1, 2))
    shift = [-g for g in f.gain]
    return Adaptation(tuple(rules), tuple(modes), tuple(chol), tuple(shift), tuple(chain_modes(h, modes)))


def adapt(h: Hierarchy, pred: Predictor, fam: RowFamily, rules: tuple[Rule, ...],
          start: list[np.ndarray] | None = None) -> tuple[Adaptation, bool]:
    """Mode/curvature adaptation at the current parameters (warm-started from previous modes)."""
    modes, factors, ok = find_modes(h, pred, fam, start)
    return adaptation_from(h, modes, factors, rules), ok


def adaptation_from_moments(h: Hierarchy, moments: list, rules: tuple[Rule, ...]) -> Adaptation:
    """Nodes from posterior moments (gllamm's adapt): mean, and the Gaussian regression on the ancestors.

    For a unit's chain (u_c, u_a) with posterior mean mu and covariance V:
    S = V_ca V_aa^-1, C C' = V_cc - S V_ac, centred at mu_c, ancestors at their own means.
    """
    means, chol, shift = [], [], []
    for k, (first, second) in enumerate(moments):
        q = h.dims[k]
        V = second - first[:, :, None] * first[:, None, :]
        Vcc, Vca, Vaa = V[:, :q, :q], V[:, :q, q:], V[:, q:, q:]
        if Vaa.shape[1]:
            ridge = 1e-12 * np.eye(Vaa.shape[1])
            S = np.swapaxes(np.linalg.solve(Vaa + ridge, np.swapaxes(Vca, 1, 2)), 1, 2)
        else:
            S = Vca
        cond = Vcc - np.einsum("cqa,cpa->cqp", S, Vca)
        cond = _spd(0.5 * (cond + np.swapaxes(cond, 1, 2)) + 1e-12 * np.eye(q))
        means.append(first[:, :q])
        chol.append(np.linalg.cholesky(cond))
        shift.append(S)
    return Adaptation(tuple(rules), tuple(means), tuple(chol), tuple(shift), tuple(chain_modes(h, means)))


def adapt_to_means(h: Hierarchy, pred: Predictor, fam: RowFamily, ad: Adaptation, iterations: int = 10,
                   tol: float = 1e-8) -> Adaptation:
    """Iterate node placement to the posterior means/covariances computed with the current nodes.

    Starts from a mode adaptation; useful when posteriors are skewed (few
    observations per unit, extreme probabilities), where the mode and
    curvature describe the posterior poorly.
    """
    for _ in range(iterations):
        new = adaptation_from_moments(h, evaluate(h, pred, fam, ad, moments=True).moments, ad.rules)
        change = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(new.mode, ad.mode, strict=True))
        ad = new
        if change < tol:
            break
    return ad
