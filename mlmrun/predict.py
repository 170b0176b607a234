"""Empirical Bayes predictions: posterior means and SDs of every latent variable, per unit.

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

from mlmrun.likelihood.adaptive import Adaptation
from mlmrun.likelihood.objective import QuadratureObjective


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
    model, lay = obj.model, obj.lay
    h = lay.hierarchy
    if h is None:
        return []
    ev = obj.evaluation(free, ad, moments=True)
    pc = obj.pieces(free)
    G = pc.T @ pc.Lfull
    base_rows = pc.WG @ pc.T.T
    out = []
    for k, lvl in enumerate(lay.levels):
        first, second = ev.moments[k]
        cov = second - first[:, :, None] * first[:, None, :]
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
