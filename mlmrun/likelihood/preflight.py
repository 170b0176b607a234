"""Every check `fit` makes before optimising, as one pure function `mlmrun validate` runs too.

A spec that validates must not exit 2 in `fit`. Estimation (mlmrun/estimate)
chooses the exact Gaussian likelihood or quadrature and, for quadrature,
builds the integration plan; each refusal on that path is here, located at
the spec key to change: REML outside linear Gaussian models, latent variables
at crossed levels, integration settings (likelihood/quadrature/plan.py), and the memory
the quadrature would need against `estimation.memory_budget_gib`.
"""

from __future__ import annotations

from mlmrun.compile.model import CompiledModel
from mlmrun.errors import SpecError
from mlmrun.likelihood.laplace.scope import unsupported
from mlmrun.likelihood.moments.checks import needs_moments, plan_moments
from mlmrun.likelihood.quadrature.plan import IntegrationPlan, check_memory, integration_plan


def uses_exact_likelihood(model: CompiledModel) -> bool:
    """True when estimate() fits by the exact Gaussian likelihood (no quadrature)."""
    return model.is_linear_gaussian and model.spec.estimation.exact and model.weighting is None


def uses_laplace_engine(model: CompiledModel) -> bool:
    """True when estimate() fits by the joint sparse Laplace engine (likelihood/laplace): `integration: {method:
    laplace}` on a model with normal latent variables that the exact, moments and discrete paths do not take."""
    if model.discrete or not model.latent or uses_exact_likelihood(model):
        return False
    if model.residual is None and needs_moments(model):
        return False
    if model.spec.estimation.integration.method != "laplace":
        return False
    return unsupported(model) is None


def _laplace_crossed(model: CompiledModel) -> None:
    """Crossed levels under `method: laplace` need the joint Laplace engine; refuse models it cannot take."""
    if model.spec.estimation.integration.method != "laplace" or uses_exact_likelihood(model):
        return
    crossed = [lat.level for lat in model.latent if model.levels[lat.level].crossed]
    why = unsupported(model) if crossed else None
    if why is not None:
        raise SpecError.at(("estimation", "integration", "method"),
                           f"level '{model.levels[crossed[0]].name}' is crossed, and crossed levels are integrated "
                           f"by the joint Laplace engine only, which cannot fit this model ({why}); make the "
                           "design nested (drop `crossed: true`) or simplify the model")


def preflight(model: CompiledModel) -> IntegrationPlan | None:
    """Run fit's pre-optimisation checks (SpecError at the key); the integration plan, None for exact fits."""
    if model.residual is None and (uses_exact_likelihood(model) or needs_moments(model)):  # as estimate() routes
        plan_moments(model)  # the moments engine's checks: residual covariances, meanstructure, identification
    if uses_exact_likelihood(model):
        return None
    est = model.spec.estimation
    if est.method == "REML":
        why = ("`exact: false` asks for quadrature" if model.is_linear_gaussian
               else "not every response is gaussian with the identity link")
        raise SpecError.at(("estimation", "method"), f"REML is only defined for linear Gaussian models fitted "
                                                     f"exactly ({why}); write `method: ML`")
    _laplace_crossed(model)
    plan = integration_plan(model)
    if not uses_laplace_engine(model):  # the sparse Laplace engine holds no quadrature nodes
        check_memory(model, plan)
    return plan
