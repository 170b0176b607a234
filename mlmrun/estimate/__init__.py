"""Estimation: the moments engine (sufficient statistics) for all-gaussian factor models, exact profiled
ML/REML for other linear Gaussian models, adaptive quadrature otherwise."""

from __future__ import annotations

from collections.abc import Callable

from mlmrun.compile.model import CompiledModel
from mlmrun.errors import SpecError
from mlmrun.likelihood.moments_checks import needs_moments, plan_moments
from mlmrun.results import FitResult

Progress = Callable[[int, float], None]
"""Called with (iteration, log likelihood) as the optimiser proceeds (the CLI's iteration log)."""


def estimate(model: CompiledModel, progress: Progress | None = None) -> FitResult:
    """Fit a compiled model by the method its spec asks for."""
    spec = model.spec
    exact = model.is_linear_gaussian and spec.estimation.exact
    if exact or needs_moments(model):
        data = plan_moments(model, identify=False)  # refuses residual covariances the moments engine cannot fit
        if data is not None:
            from mlmrun.estimate.moments_fit import fit_moments

            return fit_moments(model, data, progress)
    if exact:
        from mlmrun.estimate.gaussian_fit import fit_gaussian

        return fit_gaussian(model, progress)
    if spec.estimation.method == "REML":
        raise SpecError("estimation.method: REML is only defined for linear Gaussian models; write `method: ML`")
    from mlmrun.estimate.quadrature_fit import fit_quadrature

    return fit_quadrature(model, progress)
