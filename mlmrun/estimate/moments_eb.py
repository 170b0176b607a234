"""Factor scores of a moments fit: posterior means and SDs of the latent variables per unit (regression method).

For a unit observing items o: E[eta | y_o] = Phi Lambda_o' Sigma_oo^-1 (y_o - mu_o) and
Cov[eta | y_o] = Phi - Phi Lambda_o' Sigma_oo^-1 Lambda_o Phi, the Gaussian posterior, the same
empirical Bayes predictions the exact engine gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.moments.data import MomentsData
from mlmrun.likelihood.moments.likelihood import Implied


def factor_scores(model: CompiledModel, data: MomentsData, imp: Implied) -> dict[str, Any]:
    """{level: {"units": [...], LATENT: {"mean": [...], "sd": [...]}}} as the other engines give it."""
    Phi = imp.Phi
    M = Phi.shape[0]
    mean = np.zeros((data.Y.shape[0], M))
    sd = np.zeros((data.Y.shape[0], M))
    for pat in data.patterns:
        o = pat.items
        S_oo = imp.Sigma[np.ix_(o, o)]
        K = np.linalg.solve(S_oo, imp.Lambda[o] @ Phi).T
        dev = data.Y[np.ix_(pat.units, o)] - imp.mu[o]
        mean[pat.units] = dev @ K.T
        post = Phi - K @ imp.Lambda[o] @ Phi
        sd[pat.units] = np.sqrt(np.clip(np.diag(post), 0, None))
    level = model.levels[data.unit_level]
    out: dict[str, Any] = {"units": [str(x) for x in level.labels]}
    for m, lat in enumerate(model.latent):
        out[lat.name] = {"mean": mean[:, m], "sd": sd[:, m]}
    return {level.name: out}
