"""Standardized solutions (lavaan's std.lv and std.all) and R-squared of a moments fit.

With Phi = T Psi T' the covariance of the latent variables and Sigma the implied
item covariance: std.lv scales latent variables to unit variance (loading * sd(eta),
B * sd(eta_predictor) / sd(eta_outcome), Psi_ab / (sd(eta_a) sd(eta_b)), item
parameters unchanged); std.all also scales items to unit variance (loading and
intercept divided by sd(y), residual variance by var(y), residual covariances by
the roots of the two residual variances, in absolute value as lavaan does).
R-squared: 1 - Theta_jj / Sigma_jj per item, 1 - Psi_aa / Phi_aa per latent
variable with a structural equation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.moments.data import MomentsData
from mlmrun.likelihood.moments.likelihood import Implied, MomentsModel
from mlmrun.results import covariance_name, variance_name


def _row(name: str, lhs: str, op: str, rhs: str, std_lv: float, std_all: float) -> dict[str, Any]:
    return {"name": name, "lhs": lhs, "op": op, "rhs": rhs, "std_lv": float(std_lv), "std_all": float(std_all)}


def standardized(model: CompiledModel, mm: MomentsModel, data: MomentsData, imp: Implied,
                 values: np.ndarray) -> dict[str, Any]:
    """{"parameters": [rows keyed by parameter-table names], "r_squared": {item or latent: value}}."""
    names = model.partable.names
    d = data.design
    Phi = imp.Phi
    sd_eta = np.sqrt(np.clip(np.diag(Phi), 0, None))
    sd_y = np.sqrt(np.clip(np.diag(imp.Sigma), 0, None))
    lat_names = [lat.name for lat in model.latent]
    rows: list[dict[str, Any]] = []
    for m, lat in enumerate(model.latent):
        for q, r in enumerate(lat.loading_rows):
            for j in np.flatnonzero(d.Z[m][:, q] != 0):
                lam = values[r] * d.Z[m][j, q]
                rows.append(_row(str(names[r]), lat.name, "=~", d.labels[j], lam * sd_eta[m],
                                 lam * sd_eta[m] / sd_y[j]))
    for i, j, r in model.B_entries:
        s = values[r] * sd_eta[j] / sd_eta[i]
        rows.append(_row(str(names[r]), lat_names[i], "~", lat_names[j], s, s))
    for block in model.blocks:
        for a, r in zip(block.members, block.sd_rows, strict=True):
            s = imp.Psi[a, a] / Phi[a, a]
            rows.append(_row(variance_name(str(names[r])), lat_names[a], "~~", lat_names[a], s, s))
        pairs = zip(*np.tril_indices(len(block.members), -1), strict=True)
        for r, (a, b) in zip(block.corr_rows, pairs, strict=True):
            ma, mb = block.members[a], block.members[b]
            s = imp.Psi[ma, mb] / (sd_eta[ma] * sd_eta[mb])
            rows.append(_row(covariance_name(str(names[r])), lat_names[ma], "~~", lat_names[mb], s, s))
    for r in np.flatnonzero(mm.residual):
        items = np.flatnonzero(d.scale_row == r)
        for j in items:
            name = variance_name(str(names[r])) + ("" if len(items) == 1 else f"[{d.labels[j]}]")
            rows.append(_row(name, d.labels[j], "~~", d.labels[j], imp.Theta[j, j], imp.Theta[j, j] / imp.Sigma[j, j]))
    for a, b, r in data.rescov:
        scale = np.sqrt(abs(imp.Theta[a, a]) * abs(imp.Theta[b, b]))
        rows.append(_row(str(names[r]), d.labels[a], "~~", d.labels[b], values[r], values[r] / scale))
    for c, r in enumerate(model.beta_rows):
        hit = np.flatnonzero(d.X[:, c] != 0)
        if len(hit) == 1 and np.count_nonzero(d.X[hit[0]]) == 1:
            j = hit[0]
            mean = values[r] * d.X[j, c]
            rows.append(_row(str(names[r]), d.labels[j], "~1", "", mean, mean / sd_y[j]))
    r2: dict[str, float] = {d.labels[j]: float(1.0 - imp.Theta[j, j] / imp.Sigma[j, j]) for j in range(data.p)}
    for i in sorted({i for i, _, _ in model.B_entries}):
        r2[lat_names[i]] = float(1.0 - imp.Psi[i, i] / Phi[i, i])
    return {"parameters": rows, "r_squared": r2}
