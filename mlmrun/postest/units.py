"""Empirical Bayes predictions per unit from a fitted model, the same on every engine.

What is computed depends on the model and its estimates only, never on the
engine that fitted it:

- linear Gaussian models (every response gaussian/identity, nested or
  crossed levels): the posterior of the latent variables is exactly Gaussian,
  so means, modes and SDs are the closed-form BLUPs and conditional SDs
  (estimate/gaussian_eb.py), whatever method estimated the parameters; weighted ones go by
  quadrature like the others (the closed form has no weights; their fit is by quadrature too), so that a
  frequency-weighted row counts as its replicates;
- other models: posterior means and SDs by nested adaptive quadrature
  (mlmrun.predict.empirical_bayes) with the fit's own rule when it was
  fitted by quadrature, else (a Laplace fit, one point) with EB_POINTS per
  dimension (fewer when the memory budget requires, see eb_plan); posterior modes with the curvature SDs at the mode
  (mlmrun.predict.posterior_modes, lme4's `ranef(condVar = TRUE)`);
- residual covariances between items (`residual_covariances:`): the factor scores conditioned on the
  full Sigma (postest/moments.py); residual structures (`residuals:`) are whitened by the exact path itself;
- discrete latent variables: posterior point probabilities by Bayes' rule (postest/discrete.py);
- crossed levels of a non-Gaussian model (fitted by the joint Laplace engine, likelihood/laplace): the joint
  posterior modes and conditional SDs from the engine; exact posterior means would need an integral over
  the crossed factors that nested quadrature cannot do, so `--eb mean` gives the means of the Laplace
  approximation of the posterior (Gaussian at the mode): the modes again.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mlmrun.compile.matrices import model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.gaussian_eb import empirical_bayes as gaussian_empirical_bayes
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import (
    GIB,
    LAPLACE_START_POINTS,
    IntegrationPlan,
    integration_plan,
    plan_memory,
    plan_sizes,
)
from mlmrun.predict import LevelPrediction, empirical_bayes, posterior_modes
from mlmrun.results import FitResult

EbKind = Literal["mean", "mode"]

EB_POINTS = {1: 30, 2: 15, 3: 7}
"""Points per dimension for posterior means after a Laplace fit, by dimensions at a level (4 or more: 4)."""


def eb_plan(model: CompiledModel, plan: IntegrationPlan) -> IntegrationPlan:
    """The rule posterior means are integrated with: the fit's own, or adaptive EB_POINTS after a Laplace fit.

    After a Laplace fit the points are lowered, while the estimated memory exceeds the spec's budget, towards
    the LAPLACE_START_POINTS the fit itself started with (which the pre-flight check found within it).
    """
    if plan.method != "laplace":
        return plan
    points = [EB_POINTS.get(q, 4) for q in plan.dims]
    budget = model.spec.estimation.memory_budget_gib * GIB
    sizes = plan_sizes(model)
    while True:
        candidate = IntegrationPlan("adaptive", "mode", plan.level_names, plan.dims, tuple(points), plan.prune)
        if plan_memory(candidate, sizes) <= budget or max(points) <= LAPLACE_START_POINTS:
            return candidate
        points = [max(LAPLACE_START_POINTS, p - 1) if p > LAPLACE_START_POINTS else p for p in points]


def unit_predictions(fit: FitResult, kind: EbKind = "mean") -> list[LevelPrediction]:
    """Posterior means (`kind='mean'`) or modes ('mode') and SDs of every latent variable, per unit and level."""
    model = fit.model
    if model.discrete:
        from mlmrun.postest.discrete import discrete_unit_predictions

        return discrete_unit_predictions(fit, kind)
    if not model.latent:
        return []
    if model.rescov:
        from mlmrun.postest.moments import moments_unit_predictions

        return moments_unit_predictions(fit)
    weighted = model.weighting is not None and (model.weighting.row is not None or bool(model.weighting.unit))
    if model.is_linear_gaussian and not weighted:
        predictions, _ = gaussian_empirical_bayes(GaussianDesign(model), model_matrices(model, fit.values))
        return predictions
    free = np.asarray(fit.free, dtype=float)
    if any(model.levels[lat.level].crossed for lat in model.latent):
        return crossed_modes(fit, kind)
    if kind == "mode":
        return posterior_modes(QuadratureObjective(model, integration_plan(model)), free)
    obj = QuadratureObjective(model, eb_plan(model, integration_plan(model)))
    return empirical_bayes(obj, free, obj.adapt(free))


def crossed_modes(fit: FitResult, kind: EbKind) -> list[LevelPrediction]:
    """Posterior modes and conditional SDs of every level of a model with crossed levels (the Laplace engine).

    Exact posterior means would need an integral over the crossed factors jointly, which nested quadrature
    cannot do; the Laplace approximation takes the posterior as Gaussian at the joint mode with covariance
    (I + A'WA)^-1, whose mean is the mode, so `kind='mean'` gives the same numbers (the fit was Laplace too).
    """
    from mlmrun.estimate.laplace_fit import level_predictions
    from mlmrun.likelihood.laplace.objective import LaplaceEngine

    return level_predictions(fit.model, LaplaceEngine(fit.model).posterior(np.asarray(fit.free, dtype=float)))
