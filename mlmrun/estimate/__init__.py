"""Estimation: exact profiled ML/REML for linear Gaussian models, adaptive quadrature otherwise."""

from __future__ import annotations

from collections.abc import Callable

from mlmrun.compile.model import CompiledModel
from mlmrun.errors import SpecError
from mlmrun.results import FitResult

Progress = Callable[[int, float], None]
"""Called with (iteration, log likelihood) as the optimiser proceeds (the CLI's iteration log)."""


def estimate(model: CompiledModel, progress: Progress | None = None) -> FitResult:
    """Fit a compiled model by the method its spec asks for."""
    spec = model.spec
    if model.discrete:
        from mlmrun.estimate.discrete_fit import fit_discrete

        return fit_discrete(model, progress)
    if model.is_linear_gaussian and spec.estimation.exact:
        from mlmrun.estimate.gaussian_fit import fit_gaussian

        return fit_gaussian(model, progress)
    if spec.estimation.method == "REML":
        raise SpecError("estimation.method: REML is only defined for linear Gaussian models; write `method: ML`")
    from mlmrun.estimate.quadrature_fit import fit_quadrature

    return fit_quadrature(model, progress)
