"""Observed information of the frozen-node quadrature likelihood in one pass (Louis 1982, per unit).

With the adaptation frozen, the log likelihood of a unit c given the node
configuration s of its ancestors is log L_c(s) = log sum_r w_r exp(sum_d l_d(r, s)),
d running over its children (sub-units, or rows at the lowest level), so

    grad log L_c(s) = E_r[sum_d G_d(r, s)]                       =: G_c(s),
    hess log L_c(s) = E_r[sum_d hess l_d(r, s)] + Var_r[sum_d G_d(r, s)],

expectations over the posterior of c's node r given s. Unrolled down to the
rows (l_i = log f(y_i | nu_i), nu_i = fixed_i + A_i . u), the Hessian of the
log likelihood is

    sum_i E[s2_i dnu_i dnu_i'] + sum_i E[s_i d2nu_i]
      + sum over units c of every level, E over the ancestors' configuration of Var_r[sum_d G_d],

with s, s2 the first and second nu-derivatives of log f and expectations over
the posterior of all nodes. The predictor is linear in the nodes, so
dnu_i = J_i + K_i u with J = d fixed / d theta and K = d A / d theta; the
`sum_i E[s_i d2nu_i]` part is linear in the per-row E[s_i], E[s_i u] (the
Fisher-identity gradient's adjoint, differentiated by the caller). This is
exact for the frozen objective, whose Hessian the numeric Jacobian of its
gradient approximates, at the cost of about one gradient evaluation.

Sampling weights (likelihood/quadrature/weights.py) enter as in the
gradient: row weights through the family's derivatives, unit weights where
children are summed into their parent and on every unit's variance term
(times the weights of its ancestors).
"""

from __future__ import annotations

import numpy as np

from mlmrun.likelihood.quadrature.adaptive import (
    CHUNK_ELEMENTS,
    Adaptation,
    Hierarchy,
    Predictor,
    RowFamily,
    Upward,
    block_log_weights,
    block_moments,
    blocks,
    log_integral,
    logsumexp,
    lowest,
    node_log_weights,
    unit_moments,
    upward,
)
from mlmrun.likelihood.quadrature.separable import SEPARABLE_CHUNK, RowExponentials, separable_logit


def unit_scales(h: Hierarchy) -> list[np.ndarray]:
    """Per level, each unit's weight times its ancestors' (what its variance term is multiplied by); ones unweighted."""
    K = h.depth
    if h.unit_weight is None:
        return [np.ones(n) for n in h.n_units]
    out: list = [None] * K
    out[K - 1] = np.asarray(h.unit_weight[K - 1], dtype=float)
    for k in range(K - 2, -1, -1):
        out[k] = h.unit_weight[k] * out[k + 1][h.parent[k]]
    return out


def _add_centred_square(H: np.ndarray, g: np.ndarray, post: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """H += sum over (unit, configuration) of weight * Var_post(g); returns the posterior means of g.

    g (units, S, R, p) per node r (overwritten), post (units, S, R) its posterior given the configuration,
    weight (units, S).
    """
    mean = (post[:, :, None, :] @ g)[:, :, 0, :]
    g -= mean[:, :, None, :]
    g *= np.sqrt(post * weight[:, :, None])[..., None]
    flat = g.reshape(-1, g.shape[-1])
    H += flat.T @ flat
    return mean


def quadrature_hessian(h: Hierarchy, pred: Predictor, fam: RowFamily, ad: Adaptation, J: np.ndarray,
                       K: np.ndarray, up: Upward | None = None, moments: bool = False,
                       chunk: int = CHUNK_ELEMENTS) -> tuple[np.ndarray, list | None]:
    """The Hessian of the frozen log likelihood less its `sum_i E[s_i d2nu_i]` part (the caller's).

    J (n, p): d fixed_i / d theta; K (n, D, p): d A_i / d theta, chain columns as in `pred.A`.
    Families must have no parameters of their own and separate rows (no choice sets).
    One pass over the lowest level given `up`, the posterior weights of the configurations
    above (Evaluation.upward of an evaluation at the same point); without it, a first pass finds them.
    With `moments`, the same pass also gives every unit's posterior moments (Evaluation.moments,
    for empirical Bayes), returned second (else None).
    """
    Kd = h.depth
    p = J.shape[1]
    q0, x0 = h.dims[0], ad.rules[0].nodes
    low = lowest(h, pred, ad, chunk)
    n0, unit0 = h.n_units[0], h.unit_of_row[0]
    sep = separable_logit(fam, h.row_start, low.base, low.AC, x0)
    if up is None:
        log_i0 = np.empty((n0, low.n_cfg))
        for b in blocks(h, low, x0, chunk):
            log_i0[b.u0:b.u1, b.cfg] = logsumexp(block_log_weights(h, low, b, fam.derivs(b.nu, 0, b.rows)[0]), axis=1)
        up = upward(h, ad, low.lw, log_i0, True)
    scales = unit_scales(h)
    C0 = ad.chol[0]
    K0 = K[:, :q0, :]
    Bm = np.einsum("idp,idj->ijp", K0, C0[unit0])
    """B_i: d nu_i / d theta per standard node coordinate of the row's lowest unit, (n, q0, p)."""
    U1 = low.U[1][h.unit_of_row[1]] if Kd > 1 else None
    xx = x0[:, :, None] * x0[:, None, :]
    H = np.zeros((p, p))
    mean0 = np.empty((n0, low.n_cfg, p))
    mom_c = (np.empty((n0, low.n_cfg, q0)), np.empty((n0, low.n_cfg, q0, q0))) if moments else None
    starts = h.row_start
    exp_dev = RowExponentials()
    for b in blocks(h, low, x0, chunk if sep is None else max(chunk, SEPARABLE_CHUNK)):
        u0, u1, rows, cfg = b.u0, b.u1, b.rows, b.cfg
        if sep is not None:
            ll_u, rho = sep.unit_loglik(starts, u0, u1, rows, cfg, exp_dev(b.dev), True)
            a = node_log_weights(low, b, ll_u)
            d1, d2 = sep.derivs(rows, rho)
        else:
            ll, d1, d2 = fam.derivs(b.nu, 2, rows)
            a = block_log_weights(h, low, b, ll)
        post = log_integral(a)[1]
        if mom_c is not None:
            block_moments(b, low.centre[u0:u1, cfg], post, C0, x0, mom_c)
        cen = low.centre[u0:u1, cfg][b.local]
        vec = J[rows, None, :] + np.einsum("isd,idp->isp", cen, K0[rows])
        if U1 is not None:
            vec += np.einsum("isd,idp->isp", U1[rows, cfg], K[rows, q0:, :])
        # rows: E[s2 dnu dnu'] with dnu = vec_is + B_i x_r
        wrow = up.above0[unit0[rows], cfg] * scales[0][unit0[rows], None]
        p2 = np.repeat(post, b.counts, axis=0) * d2
        m0 = p2.sum(axis=1) * wrow
        m1 = np.tensordot(p2, x0, axes=([1], [0])) * wrow[..., None]
        m2 = np.tensordot(p2, xx, axes=([1], [0])) * wrow[..., None, None]
        Br = Bm[rows]
        H += np.einsum("isp,isq->pq", vec * m0[..., None], vec)
        cross = np.einsum("isp,isj->ijp", vec, m1).reshape(-1, p).T @ Br.reshape(-1, p)
        H += cross + cross.T
        H += Br.reshape(-1, p).T @ np.einsum("isjk,ikq->ijq", m2, Br).reshape(-1, p)
        # lowest units: Var_r of the unit's score g(r) = sum_i s_irs (vec_is + B_i x_r), given the configuration:
        # per unit, (nodes x its rows' scores) @ (those rows' vec), plus (the scores times x_rj) @ (their B_j)
        width = int(b.counts.max())
        slot = np.arange(rows.start, rows.stop) - starts[u0:u1][b.local]
        n_u, n_s = u1 - u0, cfg.stop - cfg.start
        s_pad = np.zeros((n_u, n_s, len(x0), width))
        s_pad[b.local, :, :, slot] = np.moveaxis(d1, 1, 2)
        basis = np.zeros((1 + q0, n_u, n_s, width, p))
        basis[0, b.local, :, slot] = vec
        basis[1:, b.local, :, slot] = Br[:, :, None]
        g = s_pad @ basis[0]
        for j in range(q0):
            g += (s_pad * x0[:, j, None]) @ basis[1 + j]
        weight = up.above0[u0:u1, cfg] * scales[0][u0:u1, None]
        mean0[u0:u1, cfg] = _add_centred_square(H, g, np.moveaxis(post, 1, 2), weight)
    mean = mean0
    for k in range(1, Kd):
        n_k, R_k = h.n_units[k], ad.rules[k].size
        g = (h.child_sum[k] @ mean.reshape(len(mean), -1)).reshape(n_k, R_k, -1, p)
        above = up.weight_ge[k + 1][h.parent[k]] if k < Kd - 1 else np.ones((n_k, 1))
        mean = _add_centred_square(H, np.moveaxis(g, 1, 2), np.moveaxis(up.post_up[k], 1, 2),
                                   above * scales[k][:, None])
    return H, None if mom_c is None else unit_moments(h, low.U, up.weight_ge, up.above0, mom_c)
