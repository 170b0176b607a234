"""Estimation: the moments engine (sufficient statistics) for all-gaussian factor models, exact profiled
ML/REML for other linear Gaussian models, the joint sparse Laplace engine for `integration: {method:
laplace}` (nested or crossed levels), adaptive quadrature otherwise."""

from __future__ import annotations

from collections.abc import Callable

from mlmrun.compile.model import CompiledModel
from mlmrun.errors import SpecError
from mlmrun.estimate.wald import wald_test
from mlmrun.likelihood.moments.checks import needs_moments, plan_moments
from mlmrun.likelihood.preflight import uses_laplace_engine
from mlmrun.progress import phase
from mlmrun.results import FitResult

Progress = Callable[[int, float], None]
"""Called with (iteration, log likelihood) as the optimiser proceeds (the CLI's iteration log)."""


def estimate(model: CompiledModel, progress: Progress | None = None) -> FitResult:
    """Fit a compiled model by the method its spec asks for; random-intercept models get their ICCs (extras['icc']).

    The log likelihood at every iteration is recorded (extras['history']) whether or not `progress` is given,
    so quiet and logged fits evaluate the same points."""
    from mlmrun.estimate.icc import icc_table

    history: list[tuple[int, float]] = []

    def record(iteration: int, loglik: float, *more: object) -> None:
        history.append((int(iteration), float(loglik)))
        if progress is not None:
            progress(iteration, loglik, *more)

    record.phase = lambda name: phase(progress, name)  # type: ignore[attr-defined]  # phases pass through
    fit = _fit(model, record)
    fit.extras["history"] = history  # the log likelihood by iteration, drawn in the report
    table = icc_table(fit)
    if table:
        fit.extras["icc"] = table
    return fit


def _fit(model: CompiledModel, progress: Progress | None) -> FitResult:
    """The engine's fit. Weighted or robust-SE linear Gaussian models go to adaptive quadrature, which
    integrates their (Gaussian) integrand exactly, so the exact engine stays unweighted."""
    spec = model.spec
    if model.discrete:
        from mlmrun.estimate.discrete_fit import fit_discrete

        return with_wald(fit_discrete(model, progress))
    exact = model.is_linear_gaussian and spec.estimation.exact and model.weighting is None
    if model.residual is None and (exact or needs_moments(model)):
        data = plan_moments(model, identify=False)  # refuses residual covariances the moments engine cannot fit
        if data is not None:
            from mlmrun.estimate.moments_fit import fit_moments

            return fit_moments(model, data, progress)
    if exact:
        from mlmrun.estimate.gaussian_fit import fit_gaussian

        return with_wald(fit_gaussian(model, progress))
    if spec.estimation.method == "REML":
        raise SpecError("estimation.method: REML is only defined for linear Gaussian models; write `method: ML`")
    if uses_laplace_engine(model):
        from mlmrun.estimate.laplace_fit import fit_laplace

        return with_wald(fit_laplace(model, progress))
    from mlmrun.estimate.quadrature_fit import fit_quadrature

    return with_wald(fit_quadrature(model, progress))


def with_wald(fit: FitResult) -> FitResult:
    """The fit with extras['wald']: the Wald chi2 of the fixed part (estimate/wald.py), for every engine."""
    fit.extras["wald"] = wald_test(fit)
    return fit
