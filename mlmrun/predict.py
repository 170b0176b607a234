"""Empirical Bayes predictions: posterior means (or modes) and SDs of every latent variable, per unit.

They come from the same nested quadrature as the likelihood (Rabe-Hesketh,
Skrondal & Pickles 2004, section 6): `evaluate(..., moments=True)` gives, per
unit, the posterior mean and second moment of its chain of standardised
disturbances (its own u and its ancestors'). The latent variables are
eta = T Gamma w + T L u, and eta at level k depends only on u at levels >= k
(B is upper triangular by level), so each unit's eta has posterior mean
G_k E[chain] + T Gamma w and covariance G_k Cov[chain] G_k'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.likelihood.quadrature.adaptive import Adaptation
from mlmrun.likelihood.quadrature.modes import adapt
from mlmrun.likelihood.quadrature.objective import QuadratureObjective


@dataclass(frozen=True)
class LevelPrediction:
    """Posterior means and SDs of the latent variables of one level, one row per unit."""

    level: str
    units: list[str]
    names: list[str]
    mean: np.ndarray
    """(n_units, q)."""
    sd: np.ndarray
    """(n_units, q)."""

    def as_dict(self) -> dict:
        """Compact JSON-ready form: unit labels once, then mean and sd lists per latent variable."""
        out: dict = {"units": self.units}
        for j, name in enumerate(self.names):
            out[name] = {"mean": [float(x) for x in self.mean[:, j]], "sd": [float(x) for x in self.sd[:, j]]}
        return out


def empirical_bayes(obj: QuadratureObjective, free: np.ndarray, ad: Adaptation) -> list[LevelPrediction]:
    """Posterior means/SDs of eta for every unit of every latent level, at `free` with adaptation `ad`."""
    if obj.lay.hierarchy is None:
        return []
    ev = obj.evaluation(free, ad, moments=True)
    chains = [(first, second - first[:, :, None] * first[:, None, :]) for first, second in ev.moments]
    return level_predictions(obj, free, chains)


def posterior_modes(obj: QuadratureObjective, free: np.ndarray) -> list[LevelPrediction]:
    """Joint posterior modes of eta per unit, with SDs from the curvature there (lme4's ranef with condVar).

    The modes and the block elimination of the negated Hessian come from
    likelihood/quadrature/modes.py: given its ancestors, a unit's u is approximately
    N(m_c + S (u_a - m_a), C C'), so its chain (u_c, u_a) has covariance
    [[C C' + S V_a S', S V_a], [V_a S', V_a]], built top-down; that is the
    inverse of the joint negated Hessian, restricted to the chain.
    """
    h = obj.lay.hierarchy
    if h is None:
        return []
    pc = obj.pieces(free)
    ad, _ = adapt(h, pc.pred, pc.fam, obj.plan.rules)
    chains: list = [None] * h.depth
    for k in range(h.depth - 1, -1, -1):
        own = np.einsum("cij,ckj->cik", ad.chol[k], ad.chol[k])
        if k == h.depth - 1:
            chains[k] = (ad.mode[k], own)
            continue
        up_mean, up_cov = chains[k + 1]
        par = h.parent[k]
        Va = up_cov[par]
        S = ad.shift[k]
        SV = np.einsum("cqa,cab->cqb", S, Va)
        top = np.concatenate([own + np.einsum("cqb,cpb->cqp", SV, S), SV], axis=2)
        bottom = np.concatenate([np.swapaxes(SV, 1, 2), Va], axis=2)
        chains[k] = (np.concatenate([ad.mode[k], up_mean[par]], axis=1), np.concatenate([top, bottom], axis=1))
    return level_predictions(obj, free, chains)


def level_predictions(obj: QuadratureObjective, free: np.ndarray, chains: list[tuple[np.ndarray, np.ndarray]]
                      ) -> list[LevelPrediction]:
    """Means and SDs of eta per unit from each level's chain location and covariance, (n_k, D_k) and (n_k, D_k, D_k)."""
    model, lay = obj.model, obj.lay
    h = lay.hierarchy
    pc = obj.pieces(free)
    G = pc.T @ pc.Lfull
    base_rows = pc.WG @ pc.T.T
    out = []
    for k, lvl in enumerate(lay.levels):
        first, cov = chains[k]
        members = model.latent_at(lvl)
        Gk = G[np.ix_(members, lay.order[h.offset(k):])]
        codes = h.unit_of_row[k]
        n_k = h.n_units[k]
        counts = np.bincount(codes, minlength=n_k)
        base = np.stack([np.bincount(codes, weights=base_rows[:, m], minlength=n_k) for m in members], axis=1)
        mean = first @ Gk.T + base / np.maximum(counts, 1)[:, None]
        var = np.einsum("qd,cde,qe->cq", Gk, cov, Gk)
        level = model.levels[lvl]
        out.append(LevelPrediction(level.name, [str(x) for x in level.labels], [model.latent[m].name for m in members],
                                   mean, np.sqrt(np.clip(var, 0.0, None))))
    return out
