"""The exact Gaussian likelihood with a residual structure, cluster by cluster, where the random effects are per cluster.

When the random effects (if any) sit at the residual structure's cluster level
and nowhere else, V is block diagonal by cluster, V_c = A_c A_c' + R_c (A_c =
Xi_c H the cluster's random-effects design, k columns; R_c = L_c L_c' its
residual covariance, likelihood/gaussian/residual_structures.py). The
whitened rows F*_c = L_c^-1 F_c, A*_c = L_c^-1 A_c (F = [X, y~], design.py)
give per cluster the k x k system of deviance.py,

    M_c = I + A*_c'A*_c,   R_c = A*_c'F*_c,   ff = sum_c F*_c'F*_c,   S = ff - sum_c R_c'M_c^-1 R_c,

log|V| = log|R| + sum_c log|M_c|, and the criterion follows from S
(`profile_schur`). This is the block path of likelihood/sparse on the whitened
design with one level, done as a few batched products over the clusters
instead of the block machinery, whose fixed Python cost per evaluation
dominates for short series (nlme's Ovary: 11 mares, up to 31 days).

The gradient (gradient.py's G_M = M^-1 + U P U', G_R = -2 U P, U = M^-1 R,
with P the Schur coefficients) reaches the whitened rows as

    dD/dA*_c = 2 A*_c G_M,c + F*_c G_R,c',   dD/dF*_c = 2 F*_c P + A*_c G_R,c,

then dD/dH = sum_c Xi*_c' dD/dA*_c, and Q_p = sum_c (dD/dF*_c F*_c' +
dD/dA*_c A*_c') over the clusters of each factorised residual pattern is
what ResidualPlan's Cholesky adjoint (`_bar_R`) and `covariance_gradient`
carry onto the structure's parameters, as on the whitened block path.
Clusters are batched as the residual plan batches them, padded with all-zero
rows, which are zeroed again after whitening (a shorter cluster sharing a
longer pattern's factor uses its leading block, and the factor's lower
triangle keeps those rows from mixing into the cluster's own).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mlmrun.compile.matrices import ModelMatrices
from mlmrun.likelihood.gaussian.design import GaussianDesign

CLUSTERED_MAX_GATHER = 2_000_000
"""Most entries of the per-cluster factors gathered (clusters x size^2) where a batch has several patterns."""
CLUSTERED_MAX_EFFECTS = 16
"""Most random effects per cluster (k) for this path."""
CLUSTERED_ENABLED = True
"""Switch for tests that pin the whitened block path on models this path would take."""


@dataclass(frozen=True)
class ClusterBatch:
    """Parameter-free arrays of one batch of the residual plan, cluster by cluster (padded rows all zero)."""

    pattern: np.ndarray
    """(C,): pattern of each cluster among the batch's factorised patterns (ResidualPlan.shared)."""
    members: sp.csr_matrix | None
    """(P, C) sparse 0/1: cluster c has pattern p (None with one pattern)."""
    valid: np.ndarray | None
    """(s, C, 1): 1 on the cluster's rows, 0 on padding (None when no cluster is padded)."""
    rows: np.ndarray
    """The rows of [F, Xi] of every cluster: with one pattern (`members` None) (s, C (c + K)), so that one
    product with L^-1 whitens every cluster, else (C, s, c + K)."""


@dataclass(frozen=True)
class ClusteredPlan:
    """The clusters of every batch (`ClusterBatch`), the columns of F (c) and of Xi (K)."""

    batches: tuple[ClusterBatch, ...]
    c: int
    K: int


@dataclass(frozen=True)
class ClusteredSystem:
    """One evaluation: S, log|M| and log|R|, and per batch what the gradient needs (arrays (s, C, .))."""

    S: np.ndarray
    logdet: float
    log_r: float
    H: np.ndarray | None
    factors: list[tuple[np.ndarray, np.ndarray]]
    """Per batch (L, L^-1) of the factorised patterns (ResidualPlan._factors)."""
    Fw: list[np.ndarray]
    """Per batch (s, C, c): whitened F."""
    Xw: list[np.ndarray]
    """Per batch (s, C, K): whitened Xi."""
    Aw: list[np.ndarray]
    """Per batch (s, C, k): whitened A = Xi H."""
    Z: list[np.ndarray]
    """Per batch (C, k, k): M_c^-1."""
    U: list[np.ndarray]
    """Per batch (C, k, c): M_c^-1 R_c."""


def _eligible(design: GaussianDesign) -> bool:
    """Random effects only at the residual structure's cluster level, one response, no Gamma or `variance:`."""
    model = design.model
    plan = design.residual
    if plan is None or design.is_whitened or design.gamma_cols or design.hetero:
        return False
    if len(model.equations) != 1 or len(design.levels) > 1:
        return False
    if design.levels and (design.levels[0].level != model.residual.level
                          or len(design.levels[0].members) > CLUSTERED_MAX_EFFECTS):
        return False
    return all(len(sb.counts) == 1 or sb.rows.shape[0] * sb.rows.shape[1] ** 2 <= CLUSTERED_MAX_GATHER
               for sb in plan.shared)


def _build(design: GaussianDesign) -> ClusteredPlan:
    plan = design.residual
    assert plan is not None
    n = design.n
    arrays = np.hstack([design.F] + [lv.xi for lv in design.levels])
    arrays = np.vstack([arrays, np.zeros((1, arrays.shape[1]))])
    out = []
    for sb in plan.shared:
        rows = sb.rows
        C, s = rows.shape
        present = rows.T < n
        valid = None if present.all() else present[:, :, None].astype(float)
        if len(sb.counts) == 1:
            members = None
            data = np.ascontiguousarray(arrays[rows.T].reshape(s, -1))
        else:
            members = sp.csr_matrix((np.ones(C), (sb.pattern, np.arange(C))), shape=(len(sb.counts), C))
            data = arrays[rows]
        out.append(ClusterBatch(sb.pattern, members, valid, data))
    K = design.levels[0].xi.shape[1] if design.levels else 0
    return ClusteredPlan(tuple(out), design.F.shape[1], K)


def clustered_plan(design: GaussianDesign) -> ClusteredPlan | None:
    """The design's ClusteredPlan (built on first use and kept on it), or None where the block path applies."""
    if not CLUSTERED_ENABLED:
        return None
    cached = design.__dict__.get("_clustered_plan", False)
    if cached is not False:
        return cached
    plan = _build(design) if _eligible(design) else None
    design._clustered_plan = plan
    return plan


def _whiten(cb: ClusterBatch, Linv: np.ndarray) -> np.ndarray:
    """L_c^-1 [F_c, Xi_c] for every cluster, (s, C, c + K), padded rows zero."""
    C = len(cb.pattern)
    if cb.members is None:
        out = (Linv[0] @ cb.rows).reshape(Linv.shape[1], C, -1)
    else:
        out = np.swapaxes(Linv[cb.pattern] @ cb.rows, 0, 1)
    return out if cb.valid is None else out * cb.valid


def clustered_system(cp: ClusteredPlan, design: GaussianDesign, mats: ModelMatrices) -> ClusteredSystem:
    """S = F'V^-1F, log|M| and log|R| at `mats` (raises LinAlgError where R is not positive definite)."""
    plan = design.residual
    assert plan is not None
    c = cp.c
    H = design.loading_maps(mats)[0] if design.levels else None
    log_r, factors = plan._factors(mats.values)
    S = np.zeros((c, c))
    logdet = 0.0
    Fws, Xws, Aws, Zs, Us = [], [], [], [], []
    for cb, (_, Linv) in zip(cp.batches, factors, strict=True):
        W = _whiten(cb, Linv)
        s, C = W.shape[:2]
        Fw = np.ascontiguousarray(W[:, :, :c])
        flat = Fw.reshape(-1, c)
        S += flat.T @ flat
        if H is not None:
            Xw = np.ascontiguousarray(W[:, :, c:])
            k = H.shape[1]
            Aw = (Xw.reshape(-1, Xw.shape[2]) @ H).reshape(s, C, k)
            if k == 1:  # one random effect per cluster: M_c is a number >= 1
                a = Aw[:, :, 0]
                M = np.einsum("sc,sc->c", a, a) + 1.0
                logdet += float(np.sum(np.log(M)))
                Z = (1.0 / M)[:, None, None]
                R = np.einsum("sc,scd->cd", a, Fw)[:, None, :]
            else:
                M = np.einsum("sck,scl->ckl", Aw, Aw)
                M[:, np.arange(k), np.arange(k)] += 1.0
                logdet += 2.0 * float(np.sum(np.log(np.diagonal(np.linalg.cholesky(M), axis1=1, axis2=2))))
                Z = np.linalg.inv(M)
                R = np.einsum("sck,scd->ckd", Aw, Fw)
            U = Z @ R
            S -= R.reshape(-1, c).T @ U.reshape(-1, c)
            Xws.append(Xw)
            Aws.append(Aw)
            Zs.append(Z)
            Us.append(U)
        Fws.append(Fw)
    return ClusteredSystem(0.5 * (S + S.T), logdet, log_r, H, factors, Fws, Xws, Aws, Zs, Us)


def clustered_adjoint(cp: ClusteredPlan, design: GaussianDesign, cs: ClusteredSystem, P: np.ndarray
                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """dD/dH of the level ([] without random effects) and dD/dR_p per batch of factorised patterns."""
    plan = design.residual
    assert plan is not None
    c = cp.c
    dH = np.zeros_like(cs.H) if cs.H is not None else None
    bars = []
    for i, (cb, (L, Linv), Fw) in enumerate(zip(cp.batches, cs.factors, cs.Fw, strict=True)):
        s, C = Fw.shape[:2]
        GF = 2.0 * (Fw.reshape(-1, c) @ P).reshape(s, C, c)
        pairs = [(GF, Fw)]
        if dH is not None:
            Aw, Z, U = cs.Aw[i], cs.Z[i], cs.U[i]
            UP = U @ P
            GM = Z + UP @ np.swapaxes(U, 1, 2)
            GR = -2.0 * UP
            if GM.shape[1] == 1:
                a = Aw[:, :, 0]
                GA = (2.0 * GM[:, 0, 0] * a + np.einsum("scd,cd->sc", Fw, GR[:, 0, :]))[:, :, None]
                GF += a[:, :, None] * GR[:, 0, :][None]
            else:
                GA = 2.0 * np.einsum("sck,ckl->scl", Aw, GM) + np.einsum("scd,ckd->sck", Fw, GR)
                GF += np.einsum("sck,ckd->scd", Aw, GR)
            Xw = cs.Xw[i]
            dH += Xw.reshape(-1, Xw.shape[2]).T @ GA.reshape(-1, GA.shape[2])
            pairs.append((GA, Aw))
        if cb.members is None:
            Q = sum(G.reshape(s, -1) @ X.reshape(s, -1).T for G, X in pairs)[None]
        else:
            per = sum(np.einsum("acj,bcj->cab", G, X) for G, X in pairs)
            Q = np.asarray(cb.members @ per.reshape(C, -1)).reshape(-1, s, s)
        bars.append(plan._bar_R(plan.shared[i], plan.row_weight[i], L, Linv, None, None, Q))
    return ([] if dH is None else [dH]), bars
