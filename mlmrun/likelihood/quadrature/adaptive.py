"""Nested adaptive Gauss-Hermite log likelihood and its Fisher-identity score (pure functions of arrays).

Notation (DESIGN.md section 1). Nested levels carrying latent variables are
numbered k = 0 (lowest) .. K-1 (top); unit c of level k has q_k standardised
disturbances u_c ~ N(0, I). Row i's linear predictor is

    nu_i = fixed_i + A_i . (u_0[c_0(i)], u_1[c_1(i)], ..., u_{K-1}[c_{K-1}(i)])

(`Predictor`), so the likelihood of a top-level unit is the nested integral
(Rabe-Hesketh, Skrondal & Pickles 2005, eq. 3): a level-k unit integrates its
own u over the product of its sub-units' integrals.

Adaptive nodes (`Adaptation`): the node of unit c for rule point x_r, given
the node values u_a of its ancestors, is

    u_c = m_c + S_c (u_a - m_a) + C_c x_r,
    log weight = log w_r - log phi(x_r) + log phi(u_c) + log|C_c|,

the Gaussian approximation of the posterior of u_c given its ancestors (mode
m, precision-based shift S and Cholesky factor C; likelihood/quadrature/modes.py). One
point per level then gives the Laplace approximation; m = 0, S = 0, C = I
gives ordinary (non-adaptive) Gauss-Hermite quadrature.

Configurations: the node values of all levels above k for a unit c of level k
form its configuration s in 0..S_{>k}-1, with S_{>k} = R_{k+1} x ... x R_{K-1}
laid out C-order (the next level's point slowest). Rows are evaluated at
(lowest-level point, configuration), chunked over configurations so that
memory stays bounded for issue 4's (rows x person nodes x district nodes).

Gradient (Fisher identity, Louis 1982): with the adaptation frozen, weights
do not depend on the parameters, so d loglik = sum_i E_post[s_i d nu_i] with
s_i = d log f_i / d nu. `evaluate` returns E[s_i] and E[s_i u_chain(i)] per
row and the posterior expectation of the family-parameter scores; the caller
maps them to beta, loadings, L, B, Gamma (likelihood/quadrature/objective.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from mlmrun.likelihood.quadrature.rules import LOG_2PI, Rule
from mlmrun.likelihood.quadrature.separable import SEPARABLE_CHUNK, RowExponentials, node_sums, separable_logit

CHUNK_ELEMENTS = 1 << 15
"""Rows x nodes x configurations evaluated per block (256 kB per float array: the kernel's temporaries stay in cache;
measured on the flagship, 2^15 to 2^16 beat 2^14 (Python overhead) and 2^17 and above (cache misses))."""


class RowFamily(Protocol):
    """Family log densities of every row (mixed responses handled inside, by equation)."""

    param_rows: list[np.ndarray]
    """Row indices of each equation that has family parameters (empty: no family-parameter scores needed)."""

    def derivs(self, nu: np.ndarray, order: int, rows: slice = slice(None)) -> tuple:
        """(log f, d/dnu, d2/dnu2) for the rows `rows`, nu shaped (rows, ...)."""

    def param_expect(self, nu: np.ndarray, weight: np.ndarray, rows: slice = slice(None)) -> list[np.ndarray]:
        """Per equation with family parameters: sum over axis 1 of weight * score (zero on other rows)."""


@dataclass(frozen=True)
class Hierarchy:
    """Nested latent levels, lowest first: which unit each row and each unit belongs to (parameter-free)."""

    n_rows: int
    dims: tuple[int, ...]
    """q_k: number of latent disturbances per unit of level k."""
    unit_of_row: tuple[np.ndarray, ...]
    parent: tuple[np.ndarray, ...]
    """parent[k][c]: unit of level k+1 containing unit c of level k (k < K-1)."""
    row_sum: sp.csr_matrix
    """(n_0 x n_rows) indicator: sums rows into lowest-level units."""
    row_start: np.ndarray
    """Rows are sorted by lowest-level unit: unit c owns rows row_start[c]:row_start[c+1]."""
    child_sum: tuple[sp.csr_matrix | None, ...]
    """child_sum[k] (n_k x n_{k-1}) sums level k-1 units into level k units (None for k = 0), times their weights."""
    unit_weight: tuple[np.ndarray, ...] | None = None
    """Sampling weight of every unit per level, or None (likelihood/quadrature/weights.py: the log pseudolikelihood)."""

    @property
    def depth(self) -> int:
        return len(self.dims)

    @property
    def n_units(self) -> tuple[int, ...]:
        return tuple(self.row_sum.shape[0] if k == 0 else self.child_sum[k].shape[0] for k in range(self.depth))

    def row_scale(self) -> np.ndarray:
        """Per row, the product of the weights of all its units, top included (ones when unweighted): the
        factor on its score in the log pseudolikelihood (likelihood/quadrature/weights.py)."""
        scale = np.ones(self.n_rows)
        for k, w in enumerate(self.unit_weight or ()):
            scale *= w[self.unit_of_row[k]]
        return scale

    def offset(self, k: int) -> int:
        """First column of level k in the chain (u_0, ..., u_{K-1})."""
        return int(sum(self.dims[:k]))


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log sum exp along an axis, shifted by the maximum (all -inf gives -inf)."""
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(np.sum(np.exp(a - top), axis=axis))
    return out + np.squeeze(top, axis=axis)


def indicator(codes: np.ndarray, n_units: int, weight: np.ndarray | None = None) -> sp.csr_matrix:
    """Sparse (n_units x len(codes)) matrix summing items (times `weight`) into their units."""
    n = len(codes)
    return sp.csr_matrix((np.ones(n) if weight is None else weight, (codes, np.arange(n))), shape=(n_units, n))


def make_hierarchy(unit_of_row: list[np.ndarray], n_units: list[int], dims: list[int],
                   unit_weight: list[np.ndarray] | None = None) -> Hierarchy:
    """Build the index structure from each row's unit codes per level (nesting assumed checked)."""
    parents = []
    for k in range(len(dims) - 1):
        par = np.zeros(n_units[k], dtype=np.intp)
        par[unit_of_row[k]] = unit_of_row[k + 1]
        parents.append(par)
    weights = (None,) * len(dims) if unit_weight is None else unit_weight
    child = [None] + [indicator(parents[k - 1], n_units[k], weights[k - 1]) for k in range(1, len(dims))]
    lowest = np.asarray(unit_of_row[0], dtype=np.intp)
    counts = np.bincount(lowest, minlength=n_units[0])
    if np.any(np.diff(lowest) < 0) or np.any(counts == 0):
        raise ValueError("rows must be sorted by lowest-level unit and every unit must have rows")
    row_start = np.concatenate([[0], np.cumsum(counts)])
    return Hierarchy(len(lowest), tuple(dims), tuple(np.asarray(u, dtype=np.intp) for u in unit_of_row),
                     tuple(parents), indicator(lowest, n_units[0]), row_start, tuple(child),
                     None if unit_weight is None else tuple(unit_weight))


@dataclass(frozen=True)
class Predictor:
    """nu = fixed + A . u_chain: the parameter-dependent linear predictor pieces."""

    fixed: np.ndarray
    """(n,)"""
    A: np.ndarray
    """(n, D): columns of level 0, then level 1, ..."""


@dataclass(frozen=True)
class Adaptation:
    """Rules and per-unit node placement for every level (frozen during an optimisation round)."""

    rules: tuple[Rule, ...]
    mode: tuple[np.ndarray, ...]
    """m_k (n_k, q_k)."""
    chol: tuple[np.ndarray, ...]
    """C_k (n_k, q_k, q_k)."""
    shift: tuple[np.ndarray, ...]
    """S_k (n_k, q_k, D_{>k})."""
    anc_mode: tuple[np.ndarray, ...]
    """Ancestors' modes (n_k, D_{>k}), chained like the nodes."""

    @property
    def logdet(self) -> tuple[np.ndarray, ...]:
        return tuple(np.log(np.abs(np.diagonal(c, axis1=1, axis2=2))).sum(axis=1) for c in self.chol)

    def with_rules(self, rules: tuple[Rule, ...]) -> Adaptation:
        """Same placement, other rules (mode/curvature adaptation does not depend on the rule)."""
        return Adaptation(rules, self.mode, self.chol, self.shift, self.anc_mode)


def chain_modes(h: Hierarchy, mode: list[np.ndarray]) -> list[np.ndarray]:
    """Ancestors' modes per unit, (n_k, D_{>k})."""
    out: list[np.ndarray] = [np.zeros((0, 0))] * h.depth
    out[-1] = np.zeros((len(mode[-1]), 0))
    for k in range(h.depth - 2, -1, -1):
        par = h.parent[k]
        out[k] = np.concatenate([mode[k + 1][par], out[k + 1][par]], axis=1)
    return out


def plain_adaptation(h: Hierarchy, rules: tuple[Rule, ...]) -> Adaptation:
    """m = 0, C = I, S = 0: ordinary Gauss-Hermite quadrature (spec method ghq)."""
    n = h.n_units
    tail = [sum(h.dims[k + 1:]) for k in range(h.depth)]
    mode = [np.zeros((n[k], q)) for k, q in enumerate(h.dims)]
    chol = [np.broadcast_to(np.eye(q), (n[k], q, q)).copy() for k, q in enumerate(h.dims)]
    shift = [np.zeros((n[k], q, tail[k])) for k, q in enumerate(h.dims)]
    return Adaptation(tuple(rules), tuple(mode), tuple(chol), tuple(shift), tuple(chain_modes(h, mode)))


@dataclass
class Evaluation:
    """Log likelihood and, on request, the posterior expectations the gradient and predictions need."""

    loglik: float
    top: np.ndarray
    """Per top-level unit log likelihood."""
    es: np.ndarray | None = None
    """E[s_i] per row."""
    esu: np.ndarray | None = None
    """E[s_i u_chain(i)] per row, (n, D)."""
    family: list[np.ndarray] | None = None
    """Per equation with family parameters: E[score] per row, (n, n_params), zero on other equations' rows."""
    moments: list[tuple[np.ndarray, np.ndarray]] | None = None
    """Per level: (E[chain], E[chain chain']) of each unit's (u_c, ancestors' u), shapes (n_k, D_k), (n_k, D_k, D_k)."""
    upward: Upward | None = None
    """The posterior weights of the configurations above the lowest level (with gradient or moments)."""


def _upper_nodes(h: Hierarchy, ad: Adaptation) -> tuple[list, list]:
    """Node chains U_k (n_k, S_{>=k}, D_{>=k}) and log weights (n_k, S_{>=k}) for levels k >= 1, top-down."""
    K = h.depth
    U: list = [None] * K
    lw: list = [None] * K
    logdet = ad.logdet
    for k in range(K - 1, 0, -1):
        rule = ad.rules[k]
        Cx = np.einsum("cij,rj->cri", ad.chol[k], rule.nodes)
        if k == K - 1:
            u = (ad.mode[k][:, None, :] + Cx)[:, :, None, :]
            up = None
        else:
            up = U[k + 1][h.parent[k]]
            centre = ad.mode[k][:, None, :] + np.einsum("cqd,csd->csq", ad.shift[k], up - ad.anc_mode[k][:, None, :])
            u = centre[:, None, :, :] + Cx[:, :, None, :]
        q = h.dims[k]
        logphi = -0.5 * np.sum(u * u, axis=-1) - 0.5 * q * LOG_2PI
        n_k, R, S = u.shape[:3]
        lw[k] = (rule.log_ratio[None, :, None] + logdet[k][:, None, None] + logphi).reshape(n_k, R * S)
        if up is not None:
            u = np.concatenate([u, np.broadcast_to(up[:, None], (n_k, R) + up.shape[1:])], axis=-1)
        U[k] = u.reshape(n_k, R * S, -1)
    return U, lw


def _unit_ranges(h: Hierarchy, width: int, chunk: int) -> list[tuple[int, int]]:
    """Consecutive lowest-level units grouped so that rows x width stays near `chunk` elements."""
    n0 = h.n_units[0]
    if h.n_rows * width <= chunk:
        return [(0, n0)]
    bucket = h.row_start[:-1] // max(1, chunk // width)
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(bucket)) + 1, [n0]])
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True))


@dataclass(frozen=True)
class Lowest:
    """Parameter- and placement-dependent arrays of the lowest level, shared by every pass over its blocks."""

    U: list
    """Node chains of the levels above (`_upper_nodes`)."""
    lw: list
    """Their log weights."""
    n_cfg: int
    """S_1: configurations of the levels above the lowest."""
    centre: np.ndarray
    """(n_0, S_1, q_0): centre of each lowest unit's nodes given a configuration above."""
    base: np.ndarray
    """(n, S_1): linear predictor of each row at its unit's centre."""
    AC: np.ndarray
    """(n, q_0): A_i C_c, the predictor's change per standard node coordinate."""
    Cx0: np.ndarray
    """(n_0, R_0, q_0): scaled nodes C_c x_r."""
    const0: np.ndarray
    """(n_0, R_0, 1): node log weights without the centre's terms."""
    cc: np.ndarray
    """(n_0, S_1): squared length of the centres."""
    per_block: int
    """Configurations per block."""


def lowest(h: Hierarchy, pred: Predictor, ad: Adaptation, chunk: int = CHUNK_ELEMENTS) -> Lowest:
    """Node placement of the lowest level for every configuration of the levels above."""
    K, n = h.depth, h.n_rows
    q0, rule0 = h.dims[0], ad.rules[0]
    R0, x0 = rule0.size, rule0.nodes
    U, lw = _upper_nodes(h, ad)
    n_cfg = U[1].shape[1] if K > 1 else 1
    unit0 = h.unit_of_row[0]
    A0, C0 = pred.A[:, :q0], ad.chol[0]
    if K > 1:
        centre = ad.mode[0][:, None, :] + np.einsum(
            "cqd,csd->csq", ad.shift[0], U[1][h.parent[0]] - ad.anc_mode[0][:, None, :])
        base = pred.fixed[:, None] + np.einsum("id,isd->is", pred.A[:, q0:], U[1][h.unit_of_row[1]])
    else:
        centre = ad.mode[0][:, None, :]
        base = pred.fixed[:, None].copy()
    base += np.einsum("iq,isq->is", A0, centre[unit0])
    AC = np.einsum("iq,iqj->ij", A0, C0[unit0])
    Cx0 = x0 @ np.swapaxes(C0, 1, 2)
    cx2 = (np.swapaxes(C0, 1, 2) @ C0).reshape(len(C0), -1) @ (x0[:, :, None] * x0[:, None, :]).reshape(len(x0), -1).T
    const0 = (rule0.log_ratio[None, :] + ad.logdet[0][:, None] - 0.5 * q0 * LOG_2PI - 0.5 * cx2)[:, :, None]
    cc = np.sum(centre * centre, axis=-1)
    return Lowest(U, lw, n_cfg, centre, base, AC, Cx0, const0, cc, max(1, chunk // max(1, n * R0)))


@dataclass
class Block:
    """One evaluation block: consecutive lowest units' rows at a range of configurations above."""

    u0: int
    u1: int
    rows: slice
    cfg: slice
    local: np.ndarray
    """Unit of each row, counted from u0."""
    counts: np.ndarray
    """Rows of each unit."""
    base: np.ndarray
    """(rows, configurations): the predictor at the unit's centre."""
    dev: np.ndarray
    """(rows, R_0): its change at every node, shared by the blocks of the same rows."""

    @cached_property
    def nu(self) -> np.ndarray:
        """(rows, R_0, configurations) linear predictor at the nodes."""
        return self.base[:, None, :] + self.dev[:, :, None]


def blocks(h: Hierarchy, low: Lowest, x0: np.ndarray, chunk: int = CHUNK_ELEMENTS) -> Iterator[Block]:
    """The blocks of `evaluate`, each about `chunk` elements; the predictor separates as base + dev."""
    starts, unit0 = h.row_start, h.unit_of_row[0]
    R0, sc = len(x0), low.per_block
    for u0, u1 in _unit_ranges(h, R0 * min(sc, low.n_cfg), chunk):
        r0, r1 = int(starts[u0]), int(starts[u1])
        rows = slice(r0, r1)
        dev = low.AC[rows] @ x0.T
        local = unit0[rows] - u0
        counts = np.diff(starts[u0:u1 + 1])
        for s0 in range(0, low.n_cfg, sc):
            cfg = slice(s0, min(low.n_cfg, s0 + sc))
            yield Block(u0, u1, rows, cfg, local, counts, low.base[rows, cfg], dev)


def block_log_weights(h: Hierarchy, low: Lowest, b: Block, ll: np.ndarray) -> np.ndarray:
    """(units, R_0, configurations): log of prior weight times the units' row densities at every node."""
    return node_log_weights(low, b, np.add.reduceat(ll, h.row_start[b.u0:b.u1] - h.row_start[b.u0], axis=0))


def node_log_weights(low: Lowest, b: Block, a: np.ndarray) -> np.ndarray:
    """`a` (units, R_0, configurations), the units' summed row log densities, plus the nodes' log prior weights."""
    u0, u1, cfg = b.u0, b.u1, b.cfg
    a += low.const0[u0:u1]
    a -= 0.5 * low.cc[u0:u1, None, cfg]
    a -= low.Cx0[u0:u1] @ np.swapaxes(low.centre[u0:u1, cfg], 1, 2)
    return a


def log_integral(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log sum_r exp(a) over axis 1 of (units, R, configurations), and the normalised weights exp(a - that)."""
    top = np.max(a, axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    post = np.subtract(a, top)
    np.exp(post, out=post)
    total = post.sum(axis=1)
    post /= total[:, None, :]
    return np.log(total) + top[:, 0, :], post


@dataclass(frozen=True)
class Upward:
    """The levels above the lowest after the upward recursion."""

    top: np.ndarray
    """Per top-level unit log likelihood (weighted)."""
    post_up: list
    """post_up[k] (n_k, R_k, S_{>k}) for k >= 1: posterior of level k's node given the configuration above."""
    weight_ge: list
    """weight_ge[k] (n_k, S_k) for k >= 1: posterior of the configurations of levels k and above."""
    above0: np.ndarray
    """(n_0, S_1): posterior of the configurations above each lowest unit."""


def upward(h: Hierarchy, ad: Adaptation, lw: list, log_i0: np.ndarray, weights: bool) -> Upward:
    """Sum lowest-unit log integrals up the levels; with `weights`, posterior weights of configurations top-down."""
    K, n0 = h.depth, h.n_units[0]
    post_up: list = [None] * K
    log_prev = log_i0
    for k in range(1, K):
        a = (lw[k] + h.child_sum[k] @ log_prev).reshape(h.n_units[k], ad.rules[k].size, -1)
        log_prev = logsumexp(a, axis=1)
        post_up[k] = np.exp(a - log_prev[:, None, :])
    top = log_prev[:, 0] if h.unit_weight is None else log_prev[:, 0] * h.unit_weight[-1]
    weight_ge: list = [None] * K
    if not weights:
        return Upward(top, post_up, weight_ge, np.ones((n0, 1)))
    for k in range(K - 1, 0, -1):
        w = post_up[k] if k == K - 1 else post_up[k] * weight_ge[k + 1][h.parent[k]][:, None, :]
        weight_ge[k] = w.reshape(h.n_units[k], -1)
    above0 = weight_ge[1][h.parent[0]] if K > 1 else np.ones((n0, 1))
    return Upward(top, post_up, weight_ge, above0)


def block_moments(b: Block, cen: np.ndarray, post: np.ndarray, C0: np.ndarray, x0: np.ndarray,
                  mom_c: tuple[np.ndarray, np.ndarray]) -> None:
    """Posterior first and second moments of each lowest unit's u given the configuration above, into `mom_c`.

    cen (units, S, q0): the block's centres; post (units, R_0, S): posterior weights of the nodes.
    """
    u0, u1, cfg = b.u0, b.u1, b.cfg
    Cpx = np.einsum("uqj,usj->usq", C0[u0:u1], np.tensordot(post, x0, axes=([1], [0])))
    pxx = np.tensordot(post, x0[:, :, None] * x0[:, None, :], axes=([1], [0]))
    mom_c[0][u0:u1, cfg] = cen + Cpx
    mom_c[1][u0:u1, cfg] = (cen[..., :, None] * cen[..., None, :] + cen[..., :, None] * Cpx[..., None, :]
                            + Cpx[..., :, None] * cen[..., None, :]
                            + np.einsum("uqj,usjk,upk->usqp", C0[u0:u1], pxx, C0[u0:u1]))


def evaluate(h: Hierarchy, pred: Predictor, fam: RowFamily, ad: Adaptation, *, gradient: bool = False,
             moments: bool = False, chunk: int = CHUNK_ELEMENTS) -> Evaluation:
    """Nested adaptive quadrature: log likelihood, and optionally score expectations and posterior moments.

    The lowest level is evaluated in blocks of (consecutive units' rows) x
    (its R_0 nodes) x (a range of configurations of the levels above), each
    about `chunk` elements, so memory is bounded and passes stay in cache.
    """
    K, n = h.depth, h.n_rows
    q0, x0 = h.dims[0], ad.rules[0].nodes
    low = lowest(h, pred, ad, chunk)
    n_cfg, U = low.n_cfg, low.U
    n0, unit0 = h.n_units[0], h.unit_of_row[0]
    C0 = ad.chol[0]
    log_i0 = np.empty((n0, n_cfg))
    es_c = np.empty((n, n_cfg)) if gradient else None
    esu_c = np.empty((n, n_cfg, q0)) if gradient else None
    fam_c: list | None = None
    mom_c = (np.empty((n0, n_cfg, q0)), np.empty((n0, n_cfg, q0, q0))) if moments else None
    sep = separable_logit(fam, h.row_start, low.base, low.AC, x0)
    exp_dev = RowExponentials()
    for b in blocks(h, low, x0, chunk if sep is None else max(chunk, SEPARABLE_CHUNK)):
        u0, u1, rows, cfg = b.u0, b.u1, b.rows, b.cfg
        if sep is not None:
            ll_u, rho = sep.unit_loglik(h.row_start, u0, u1, rows, cfg, exp_dev(b.dev), gradient)
            a = node_log_weights(low, b, ll_u)
        else:
            ll, d1, _ = fam.derivs(b.nu, 1 if gradient else 0, rows)
            a = block_log_weights(h, low, b, ll)
        li, post = log_integral(a)
        log_i0[u0:u1, cfg] = li
        if not (gradient or moments):
            continue
        cen = low.centre[u0:u1, cfg]
        if gradient:
            pr = np.repeat(post, b.counts, axis=0)
            if sep is not None:
                pr *= rho
                e, wx = sep.score_sums(rows, b.local, pr, post, x0)
            else:
                if fam.param_rows:
                    fp = fam.param_expect(b.nu, pr, rows)
                    if fam_c is None:
                        fam_c = [np.zeros((n, n_cfg) + f.shape[2:]) for f in fp]
                    for store, f in zip(fam_c, fp, strict=True):
                        store[rows, cfg] = f
                d1 *= pr
                e = d1.sum(axis=1)
                wx = node_sums(d1, x0)
            es_c[rows, cfg] = e
            esu = cen[b.local] * e[..., None]
            C0_rows = C0[unit0[rows]]
            for j in range(q0):
                esu += C0_rows[:, None, :, j] * wx[:, :, None, j]
            esu_c[rows, cfg] = esu
        if moments:
            block_moments(b, cen, post, C0, x0, mom_c)
    # upward recursion over the higher levels, then posterior weights of configurations top-down
    up = upward(h, ad, low.lw, log_i0, gradient or moments)
    out = Evaluation(loglik=float(up.top.sum()), top=up.top, upward=up if gradient or moments else None)
    if not (gradient or moments):
        return out
    above0 = up.above0
    if gradient:
        wrow = above0[unit0]
        out.es = np.einsum("is,is->i", wrow, es_c)
        parts = [np.einsum("is,isq->iq", wrow, esu_c)]
        if K > 1:
            parts.append(np.einsum("is,isd->id", wrow * es_c, U[1][h.unit_of_row[1]]))
        out.esu = np.concatenate(parts, axis=1)
        out.family = [np.einsum("is,is...->i...", wrow, f) for f in (fam_c or [])]
        if h.unit_weight is not None:
            scale = h.row_scale()
            out.es, out.esu = out.es * scale, out.esu * scale[:, None]
            out.family = [f * scale.reshape((-1,) + (1,) * (f.ndim - 1)) for f in out.family]
    if moments:
        out.moments = unit_moments(h, U, up.weight_ge, above0, mom_c)
    return out


def unit_moments(h: Hierarchy, U: list, weight_ge: list, above0: np.ndarray, mom_c: tuple) -> list:
    """Posterior first and second moments of each unit's chain (u_c, ancestors' u), level by level."""
    K = h.depth
    e0 = np.einsum("cs,csq->cq", above0, mom_c[0])
    ee0 = np.einsum("cs,csqp->cqp", above0, mom_c[1])
    if K == 1:
        return [(e0, ee0)]
    Up = U[1][h.parent[0]]
    e_anc = np.einsum("cs,csd->cd", above0, Up)
    cross = np.einsum("cs,csq,csd->cqd", above0, mom_c[0], Up)
    ee_anc = np.einsum("cs,csd,cse->cde", above0, Up, Up)
    first = np.concatenate([e0, e_anc], axis=1)
    second = np.block([[ee0, cross], [np.swapaxes(cross, 1, 2), ee_anc]])
    out = [(first, second)]
    for k in range(1, K):
        out.append((np.einsum("cs,csd->cd", weight_ge[k], U[k]),
                    np.einsum("cs,csd,cse->cde", weight_ge[k], U[k], U[k])))
    return out
