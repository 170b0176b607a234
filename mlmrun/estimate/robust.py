"""Robust (sandwich) standard errors from per-cluster score contributions, as Stata and gllamm compute them.

With H the observed information (negated Hessian of the log (pseudo)likelihood
on the free vector) and s_g the score of cluster g (the analytic gradient of
the part of the objective that cluster's rows and units make up; clusters
contain whole top-level units, so the objective is the sum of these parts),

    V = G / (G - 1) * H^-1 (sum_g s_g s_g') H^-1,

the small-sample factor G/(G-1) being the one Stata's mixed and gllamm apply
with vce(robust) / vce(cluster) and sampling weights. H is `bread`: for linear
Gaussian models Stata mixed's block form (fixed effects apart from the variance
parameters' profile information; it reproduces Stata's pisa2000 output to 6
digits, tests/test_pisa_weights.py), else the whole information (gllamm).
Scores come from the Fisher identity with the adaptation frozen at the optimum:
the same per-row posterior expectations the optimiser's gradient uses
(likelihood/quadrature/objective.py), summed per cluster through the gradient's adjoint
(`cluster_scores`; `cluster_scores_by_subsets`, one gradient per cluster, is
its slower twin, kept to check it). Laplace fits,
whose objective re-places its single node at every parameter value, difference
each cluster's re-adapted contribution instead (`laplace_cluster_scores`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mlmrun.compile.matrices import MatrixGradient, ModelMatrices, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.inference import hessian_from_gradient
from mlmrun.likelihood.quadrature.adaptive import Adaptation, evaluate, indicator
from mlmrun.likelihood.quadrature.objective import Layout, Pieces, QuadratureObjective, free_gradient
from mlmrun.likelihood.quadrature.rows import RowSet


def _row_scores(obj: QuadratureObjective, free: np.ndarray,
                ad: Adaptation | None) -> tuple[Pieces, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per row: E[s_i], E[s_i u] and family-parameter score expectations, weights included."""
    pc = obj.pieces(free)
    h = obj.lay.hierarchy
    if h is None or ad is None:
        nu = pc.pred.fixed
        _, d1, _ = pc.fam.derivs(nu, 1)
        fam = pc.fam.param_expect(nu[:, None], np.ones((len(nu), 1)))
        return pc, d1, np.zeros((len(nu), len(obj.lay.order))), fam
    ev = obj.scores(free, ad)  # the optimum's evaluation when the fit just made it
    return pc, ev.es, ev.esu, ev.family or []


def _subset(lay: Layout, pc: Pieces, idx: np.ndarray, eq_of: np.ndarray) -> tuple[Layout, Pieces]:
    """The layout and pieces restricted to rows `idx` (what free_gradient reads); eq_of: equation of each row."""
    rows = lay.rows
    sub_eq = eq_of[idx]
    sub: RowSet = replace(rows, X=rows.X[idx], offset=rows.offset[idx], Z=tuple(z[idx] for z in rows.Z),
                          W=rows.W[idx], codes={k: c[idx] for k, c in rows.codes.items()}, y=rows.y[idx],
                          trials=None if rows.trials is None else rows.trials[idx], constant=None,
                          eq_rows=tuple(np.flatnonzero(sub_eq == e) for e in range(len(rows.eq_rows))),
                          original=rows.original[idx])
    return replace(lay, rows=sub, hierarchy=None), replace(pc, Z=pc.Z[idx], WG=pc.WG[idx])


def cluster_scores_by_subsets(obj: QuadratureObjective, free: np.ndarray, ad: Adaptation | None,
                              cluster_of_row: np.ndarray) -> np.ndarray:
    """(G, n_free) cluster scores by one `free_gradient` call per cluster on its rows (simple, O(G) calls)."""
    pc, es, esu, fam = _row_scores(obj, free, ad)
    order = np.argsort(cluster_of_row, kind="stable")
    cuts = np.flatnonzero(np.diff(cluster_of_row[order])) + 1
    eq_of = np.empty(obj.lay.rows.n, dtype=np.intp)
    for e, r in enumerate(obj.lay.rows.eq_rows):
        eq_of[r] = e
    out = []
    for idx in np.split(order, cuts):
        lay, sub = _subset(obj.lay, pc, idx, eq_of)
        out.append(free_gradient(obj.model, lay, sub, es[idx], esu[idx], [f[idx] for f in fam]))
    return np.array(out)


def _probe(model: CompiledModel, values: np.ndarray, mm: ModelMatrices, field: str, key: int | None = None) -> np.ndarray:
    """The matrix of `values_gradient` restricted to one field of MatrixGradient: (field size, n_values)."""
    template = MatrixGradient.zeros(mm)
    target = getattr(template, field)
    part = target if key is None else target[key]
    rows = []
    for j in range(part.size):
        grad = MatrixGradient.zeros(mm)
        holder = getattr(grad, field)
        unit = np.zeros(part.size)
        unit[j] = 1.0
        if key is None:
            setattr(grad, field, unit.reshape(part.shape))
        else:
            holder[key] = unit.reshape(part.shape)
        rows.append(values_gradient(model, values, grad))
    return np.array(rows).reshape(part.size, len(values))


def cluster_scores(obj: QuadratureObjective, free: np.ndarray, ad: Adaptation | None,
                   cluster_of_row: np.ndarray) -> np.ndarray:
    """(G, n_free): the analytic score of every cluster (rows in quadrature order carry `cluster_of_row`).

    The same adjoint as likelihood/objective.free_gradient, with every sum over rows replaced by a
    sum per cluster (a sparse indicator product), then the linear map onto the partable values
    (`values_gradient`, probed once per matrix coordinate) and the free vector.
    """
    model, lay = obj.model, obj.lay
    pc, es, esu_chain, fam = _row_scores(obj, free, ad)
    rows, mm = lay.rows, pc.mm
    codes = np.unique(cluster_of_row, return_inverse=True)[1].reshape(-1)
    G = int(codes.max(initial=-1)) + 1
    C = indicator(codes, G)

    def per_cluster(per_row: np.ndarray) -> np.ndarray:
        flat = per_row.reshape(len(per_row), -1)
        return np.asarray(C @ flat).reshape((G,) + per_row.shape[1:])

    g = per_cluster(rows.X * es[:, None]) @ _probe(model, pc.values, mm, "beta")
    M = len(model.latent)
    if M:
        esu = np.zeros((rows.n, M))
        esu[:, lay.order] = esu_chain
        v_s = es[:, None] * pc.WG + esu @ pc.Lfull.T
        eta_s = v_s @ pc.T.T
        ZT = pc.Z @ pc.T
        for m, Zm in enumerate(rows.Z):
            if Zm.shape[1]:
                g += per_cluster(Zm * eta_s[:, m:m + 1]) @ _probe(model, pc.values, mm, "lambdas", m)
        for lvl in mm.L:
            idx = model.latent_at(lvl)
            outer = ZT[:, idx, None] * esu[:, None, idx]
            g += per_cluster(outer).reshape(G, -1) @ _probe(model, pc.values, mm, "L", lvl)
        if rows.W.shape[1]:
            outer = ZT[:, :, None] * (es[:, None] * rows.W)[:, None, :]
            g += per_cluster(outer).reshape(G, -1) @ _probe(model, pc.values, mm, "Gamma")
        if model.B_entries:
            zv = per_cluster(pc.Z[:, :, None] * v_s[:, None, :])
            gB = np.einsum("ab,gbc,cd->gad", pc.T.T, zv, pc.T.T)
            g += gB.reshape(G, -1) @ _probe(model, pc.values, mm, "B")
    for e, f in zip(pc.fam.param_eqs, fam, strict=True):
        eq = model.equations[e]
        if eq.threshold_rows is not None:
            g += per_cluster(f) @ _probe(model, pc.values, mm, "thresholds", e)
            continue
        r = rows.eq_rows[e]
        position = np.empty(model.n, dtype=np.intp)
        position[eq.rows] = np.arange(len(eq.rows))
        j = position[rows.original[r]]
        gs = f[r, 0]
        contrib = np.zeros((len(r), len(pc.values)))
        if eq.hetero is not None:
            mult = np.exp(eq.hetero[j] @ pc.values[eq.hetero_rows])
            contrib[:, eq.hetero_rows] += eq.hetero[j] * (gs * pc.values[eq.scale_rows[j]] * mult)[:, None]
            gs = gs * mult
        np.add.at(contrib, (np.arange(len(r)), eq.scale_rows[j]), gs)
        g += np.asarray(indicator(codes[r], G) @ contrib)
    return g @ model.partable.jacobian(free)


LAPLACE_STEP = 1e-5
"""Relative step of the central differences of the Laplace clusters' log likelihoods."""


def laplace_cluster_scores(obj: QuadratureObjective, free: np.ndarray, ad: Adaptation,
                           cluster_of_row: np.ndarray) -> np.ndarray:
    """(G, n_free): scores of the re-adapted Laplace objective per cluster, by central differences.

    The Laplace fit maximises (and its information differentiates) the log likelihood with the node
    re-placed at every parameter value; one frozen node would miss the posterior spread that the
    variance parameters' scores depend on, so each cluster's re-adapted contribution is differenced.
    """
    h = obj.lay.hierarchy
    top_row = h.unit_of_row[-1]
    codes = np.unique(cluster_of_row, return_inverse=True)[1].reshape(-1)
    cluster_of_top = np.zeros(h.n_units[-1], dtype=np.intp)
    cluster_of_top[top_row] = codes
    G = int(codes.max()) + 1
    out = np.zeros((G, len(free)))
    for j in range(len(free)):
        step = np.zeros(len(free))
        step[j] = LAPLACE_STEP * max(1.0, abs(float(free[j])))
        tops = []
        for x in (free + step, free - step):
            pc = obj.pieces(x)
            tops.append(evaluate(h, pc.pred, pc.fam, obj.adapt(x, ad)).top)
        out[:, j] = np.bincount(cluster_of_top, weights=(tops[0] - tops[1]) / (2 * step[j]), minlength=G)
    return out


def fixed_free(model: CompiledModel) -> np.ndarray:
    """Free-vector coordinates of the fixed effects."""
    free = model.partable.frame["free"].to_numpy()[model.beta_rows]
    return np.unique(free[free > 0] - 1)


def bread(model: CompiledModel, information: np.ndarray) -> np.ndarray:
    """The information matrix the sandwich (and a weighted linear model's oim covariance) inverts.

    Linear Gaussian models follow Stata's mixed: the fixed effects and the variance parameters are
    taken as orthogonal, the fixed part by its own block (X'V^-1X) and the variance parameters by their
    profile information (the Schur complement of the fixed block), so the fixed-effect SEs are those
    of the GLS step, as on the exact path; other families use the whole information, as gllamm does.
    """
    if not model.is_linear_gaussian:
        return information
    b = fixed_free(model)
    t = np.setdiff1d(np.arange(len(information)), b)
    H = np.asarray(information, dtype=float)
    out = np.zeros_like(H)
    out[np.ix_(b, b)] = H[np.ix_(b, b)]
    if len(t):
        Htb = H[np.ix_(t, b)]
        out[np.ix_(t, t)] = H[np.ix_(t, t)] - Htb @ np.linalg.solve(H[np.ix_(b, b)], Htb.T)
    return out


def robust_covariance(obj: QuadratureObjective, free: np.ndarray, ad: Adaptation | None,
                      bread_inverse: np.ndarray) -> tuple[np.ndarray, int]:
    """The sandwich covariance of the free vector, G/(G-1) B^-1 (sum_g s_g s_g') B^-1, and the number of clusters G."""
    wt = obj.model.weighting
    original = obj.lay.rows.original
    codes = wt.cluster_codes if wt is not None and wt.cluster_codes is not None else np.arange(obj.model.n)
    if obj.plan.method == "laplace" and ad is not None:
        S = laplace_cluster_scores(obj, free, ad, codes[original])
    elif any(eq.family_params is not None or eq.ordinal is not None for eq in obj.model.equations):
        S = cluster_scores_by_subsets(obj, free, ad, codes[original])  # per-row parameter columns: the general adjoint
    else:
        S = cluster_scores(obj, free, ad, codes[original])
    G = len(S)
    factor = G / (G - 1) if G > 1 else 1.0
    V = factor * bread_inverse @ (S.T @ S) @ bread_inverse
    return 0.5 * (V + V.T), G


def weight_scale(obj: QuadratureObjective) -> float:
    """Mean total weight of a row (1 when unweighted): the factor by which weights scale the objective."""
    if obj.model.weighting is None:
        return 1.0
    total = np.ones(obj.lay.rows.n) if obj.lay.row_weight is None else obj.lay.row_weight.copy()
    if obj.lay.hierarchy is not None:
        total *= obj.lay.hierarchy.row_scale()
    mean = float(np.mean(total))
    return mean if mean > 0 else 1.0


def least_squares_start(obj: QuadratureObjective, free: np.ndarray) -> np.ndarray:
    """A weighted linear model's GLM optimum in closed form (weighted least squares), else `free` unchanged.

    The GLM fit that starts quadrature then converges at once instead of creeping along the badly scaled
    valleys that survey weights (ratios of 60 and more) make.
    """
    model = obj.model
    if model.weighting is None or not model.is_linear_gaussian or len(model.equations) != 1:
        return free
    eq = model.equations[0]
    if eq.hetero is not None or eq.scale_rows is None or len(np.unique(eq.scale_rows)) != 1 or not model.X.shape[1]:
        return free
    rows = obj.lay.rows
    w = np.ones(rows.n) if obj.lay.row_weight is None else obj.lay.row_weight.copy()
    if obj.lay.hierarchy is not None:
        w *= obj.lay.hierarchy.row_scale()
    if not np.sum(w) > 0:
        return free
    y = rows.y - rows.offset
    sw = np.sqrt(w)
    beta = np.linalg.lstsq(rows.X * sw[:, None], y * sw, rcond=None)[0]
    sigma = float(np.sqrt(np.sum(w * (y - rows.X @ beta) ** 2) / np.sum(w)))
    if not sigma > 0:
        return free
    values = model.partable.unpack(free).copy()
    values[model.beta_rows] = beta
    values[int(eq.scale_rows[0])] = sigma
    return model.partable.pack(values)


def glm_information(obj: QuadratureObjective, free: np.ndarray) -> np.ndarray:
    """Observed information of a model without latent variables (central differences of its gradient)."""
    return -hessian_from_gradient(lambda x: obj.glm(x)[1], free)
