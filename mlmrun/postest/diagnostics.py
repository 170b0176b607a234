"""Residuals for the report's diagnostic plots: fitted values and standardized residuals of gaussian responses.

Conditional on the empirical Bayes predictions the fit carries (extras['empirical_bayes']):
mu = x'b + z'eta^, residual (y - mu) / residual SD (Stata's `predict, rstandard`). The report
(an earlier stage) draws them; the CLI hands them over (report/outputs.py).
"""

from __future__ import annotations

import numpy as np

from mlmrun.postest.predict import per_row_latent
from mlmrun.postest.rows import row_predictions
from mlmrun.predict import LevelPrediction
from mlmrun.results import FitResult


def level_predictions(fit: FitResult) -> list[LevelPrediction]:
    """extras['empirical_bayes'] back as the LevelPrediction objects the per-row predictions take."""
    out = []
    for level, block in (fit.extras.get("empirical_bayes") or {}).items():
        names = [k for k in block if k != "units"]
        out.append(LevelPrediction(level, list(block["units"]), names,
                                   np.column_stack([np.asarray(block[n]["mean"], dtype=float) for n in names]),
                                   np.column_stack([np.asarray(block[n]["sd"], dtype=float) for n in names])))
    return out


def gaussian_residuals(fit: FitResult) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(equation, fitted values, standardized residuals) of each gaussian response; empty without EB predictions."""
    model = fit.model
    gaussian = [eq for eq in model.equations if eq.family.name == "gaussian"]
    if not gaussian or (model.latent and not fit.extras.get("empirical_bayes")):
        return []
    units = {model.levels[lvl].name: model.levels[lvl].codes for lvl in {lat.level for lat in model.latent}}
    eb_mean, _ = per_row_latent(model, fit.values, level_predictions(fit), units)
    rp = row_predictions(model, fit.values, eb_mean)
    return [(eq.name, rp.mu[np.asarray(eq.rows)], rp.resid_standardized[np.asarray(eq.rows)]) for eq in gaussian]
