"""Empirical Bayes predictions of a model with residual covariances between items (the moments engine's models).

The exact engine's design (estimate/gaussian_eb.py) has independent residuals, so a model with
`residual_covariances:` (lavaan's `y1 ~~ y5`) would get the BLUPs of a model without them. Such a model is
a factor model over the items of one unit level (likelihood/moments/data.py): per unit observing items o,
the latent variables' posterior is Gaussian with

    E[eta | y_o] = Phi Lambda_o' Sigma_oo^-1 (y_o - mu_o),   Cov[eta | y_o] = Phi - Phi Lambda_o' Sigma_oo^-1 Lambda_o Phi,

Sigma = Lambda Phi Lambda' + Theta with Theta holding the residual variances and covariances, at the
fit's estimates (estimate/moments_eb.py, the factor scores results.json reports). Means, modes and SDs
are the same thing here (the posterior is Gaussian); a posterior variance that comes out negative (a
Heywood case: a negative residual variance) gives SD 0, as in results.json.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.compile.partable import ParTable
from mlmrun.estimate.moments_eb import factor_scores
from mlmrun.likelihood.moments.checks import plan_moments
from mlmrun.likelihood.moments.likelihood import MomentsModel
from mlmrun.postest.usage import UsageError
from mlmrun.predict import LevelPrediction
from mlmrun.results import FitResult


def moments_unit_predictions(fit: FitResult) -> list[LevelPrediction]:
    """Posterior means and SDs of every latent variable per unit, with the residual covariance matrix."""
    model = fit.model
    data = plan_moments(model, identify=False)
    if data is None:
        raise UsageError("predict: this model has residual covariances but its data do not have the layout of a "
                         "factor model over one unit level, so its predictions are not available; drop "
                         "`residual_covariances:` and refit")
    mm = MomentsModel(model, data)
    imp = mm.implied(mm.theta_of(np.asarray(fit.values, dtype=float)))
    scores = factor_scores(model, data, imp)
    out = []
    for level, entry in scores.items():
        names = [lat.name for lat in model.latent]
        mean = np.column_stack([np.asarray(entry[n]["mean"], dtype=float) for n in names])
        sd = np.column_stack([np.asarray(entry[n]["sd"], dtype=float) for n in names])
        out.append(LevelPrediction(level, list(entry["units"]), names, mean, sd))
    return out


def with_natural_partable(model: CompiledModel) -> CompiledModel:
    """The model with identity transforms and no bounds, as a moments fit reports it (estimate/moments_fit.py).

    The moments engine estimates variances on their own scale, so a residual variance may be negative (a
    Heywood case, reported as a negative signed SD); read back through the spec's log-SD transforms such
    an estimate could not be represented. Fixed rows and equality constraints are unchanged.
    """
    frame = model.partable.frame.assign(transform="identity", lower=-np.inf, upper=np.inf)
    return dataclasses.replace(model, partable=ParTable(frame))
