"""Empirical Bayes predictions of the exact Gaussian path: posterior means and SDs of every latent variable.

In a linear Gaussian model the posterior of the standardised disturbances
given the data is exactly Gaussian, with mean u^ = M^-1 A'W r (r the
residual at the estimated beta) and covariance M^-1 (likelihood/gaussian/deviance.py,
gaussian_grad.py): no quadrature is needed. The latent variables are
eta = T Gamma w + T L u, and a latent variable at level l loads (through B)
only on the disturbances of its own unit and of the units above it that
contain it, so a unit's prediction is

    mean = (T Gamma w)_unit + sum_b G_lb u^_b(unit),   cov = sum_{b,b'} G_lb Z_{b(unit), b'(unit)} G_lb'',

with G = T blockdiag(L) and Z blocks from the selected inverse (a unit and
the units containing it share rows, so their blocks are there). The layout
is that of the quadrature path (mlmrun.predict.LevelPrediction).
"""

from __future__ import annotations

import numpy as np

from mlmrun.compile.matrices import ModelMatrices
from mlmrun.likelihood.gaussian.affine import AffineKernel
from mlmrun.likelihood.gaussian.design import GaussianDesign, LevelDesign
from mlmrun.likelihood.gaussian.deviance import factor_system, given_beta
from mlmrun.likelihood.sparse.selected_inverse import SelectedInverse, selected_inverse
from mlmrun.predict import LevelPrediction


def _containing(design: GaussianDesign, a: int, b: int) -> np.ndarray | None:
    """For each unit of design level a, the one unit of level b it shares rows with (None if some share several)."""
    if a == b:
        return np.arange(design.levels[a].n_units)
    lo, hi = min(a, b), max(a, b)
    ia, ib = design.pairs[(lo, hi)]
    mine, theirs = (ia, ib) if a == lo else (ib, ia)
    if len(np.unique(mine)) != len(mine) or len(mine) != design.levels[a].n_units:
        return None
    out = np.empty(design.levels[a].n_units, dtype=np.intp)
    out[mine] = theirs
    return out


def _z_block(design: GaussianDesign, inv: SelectedInverse, b: int, ub: np.ndarray, c: int, uc: np.ndarray
             ) -> np.ndarray:
    """Z blocks between units ub of level b and uc of level c (pairs that share rows), shape (N, k_b, k_c)."""
    if b == c:
        return inv.diag[b][ub]
    lo, hi = min(b, c), max(b, c)
    u_lo, u_hi = (ub, uc) if b == lo else (uc, ub)
    ia, ib = design.pairs[(lo, hi)]
    keys = ia.astype(np.int64) * design.levels[hi].n_units + ib
    idx = np.searchsorted(keys, u_lo.astype(np.int64) * design.levels[hi].n_units + u_hi)
    blocks = inv.pairs[(lo, hi)][idx]
    return blocks if b == lo else np.swapaxes(blocks, 1, 2)


def _base_rows(design: GaussianDesign, mats: ModelMatrices, T: np.ndarray) -> np.ndarray:
    """(T Gamma w) of every row: the latent variables' mean before the disturbances."""
    model = design.model
    return model.W @ (T @ mats.Gamma).T if model.W.shape[1] else np.zeros((model.n, len(model.latent)))


def _unit_means(lv: LevelDesign, rows: np.ndarray) -> np.ndarray:
    """Each unit's mean over its rows of the columns lv.members of `rows`."""
    counts = np.maximum(np.bincount(lv.codes, minlength=lv.n_units), 1)
    return np.stack([np.bincount(lv.codes, weights=rows[:, m], minlength=lv.n_units) for m in lv.members],
                    axis=1) / counts[:, None]


def kernel_empirical_bayes(design: GaussianDesign, mats: ModelMatrices, kernel: AffineKernel, phi: np.ndarray,
                           sigma: float) -> list[LevelPrediction] | None:
    """`empirical_bayes` from the affine kernel at the optimum phi (no B; one level or dense M), else None.

    Without B a latent variable loads only on its own unit's disturbances, so each unit's posterior is
    its own block: mean G M^-1 R e / sigma restricted to the unit, covariance G (M^-1)_unit G'
    (AffineKernel.level_posteriors), G the level's L. Levels are listed in model order, as
    `empirical_bayes` lists them.
    """
    model = design.model
    if len(model.B_entries):
        return None
    post = kernel.level_posteriors(np.asarray(phi, float))
    if post is None or len(post) != len(design.levels):
        return None
    base = _base_rows(design, mats, np.eye(len(model.latent)))
    out = []
    for lv, (u_rel, Minv) in sorted(zip(design.levels, post, strict=True), key=lambda item: item[0].level):
        members = list(lv.members)
        at = list(model.latent_at(lv.level))
        G = mats.L[lv.level][np.ix_([at.index(m) for m in members], [at.index(m) for m in members])]
        mean = _unit_means(lv, base) + (u_rel / sigma) @ G.T
        var = np.einsum("qk,nkj,qj->nq", G, Minv, G)
        level = model.levels[lv.level]
        out.append(LevelPrediction(level.name, [str(x) for x in level.labels], [model.latent[m].name for m in members],
                                   mean, np.sqrt(np.clip(var, 0.0, None))))
    return out


def empirical_bayes(design: GaussianDesign, mats: ModelMatrices) -> tuple[list[LevelPrediction], list[str]]:
    """Posterior means/SDs of eta for every unit of every latent level (natural-scale `mats`), and warnings."""
    model = design.model
    if not design.levels:
        return [], []
    _, _, _, system, factor = factor_system(design, mats, False, given_beta(design, mats))
    u_hat = [x[:, :, 0] for x in factor.solve(system.rhs)]
    inv = selected_inverse(factor, design.inverse_plan)
    warnings = [] if inv is not None else [
        "empirical Bayes SDs are not available: the crossed part of M is too large for its selected inverse"]
    M = len(model.latent)
    Lblk = np.zeros((M, M))
    for lvl, L in mats.L.items():
        members = model.latent_at(lvl)
        Lblk[np.ix_(members, members)] = L
    T = mats.T if len(model.B_entries) else np.eye(M)
    G = T @ Lblk
    base_rows = _base_rows(design, mats, T)
    out = []
    for a, lv in sorted(enumerate(design.levels), key=lambda item: item[1].level):
        members = list(lv.members)
        mean = _unit_means(lv, base_rows)
        chain = [(b, list(other.members)) for b, other in enumerate(design.levels)
                 if np.any(G[np.ix_(members, list(other.members))] != 0)]
        units = {b: _containing(design, a, b) for b, _ in chain}
        var = np.zeros_like(mean)
        if any(u is None for u in units.values()):
            name = model.levels[lv.level].name
            warnings.append(f"empirical Bayes predictions at level '{name}' are not available: its latent variables "
                            "depend (through B) on a level whose units it is not nested in")
            mean[:], var[:] = np.nan, np.nan
        else:
            for b, mb in chain:
                mean += u_hat[b][units[b]] @ G[np.ix_(members, mb)].T
            for b, mb in chain:
                for c, mc in chain:
                    if inv is None:
                        continue
                    Z = _z_block(design, inv, b, units[b], c, units[c])
                    var += np.einsum("qk,nkj,qj->nq", G[np.ix_(members, mb)], Z, G[np.ix_(members, mc)])
            if inv is None:
                var[:] = np.nan
        level = model.levels[lv.level]
        out.append(LevelPrediction(level.name, [str(x) for x in level.labels], [model.latent[m].name for m in members],
                                   mean, np.sqrt(np.clip(var, 0.0, None))))
    return out, warnings
