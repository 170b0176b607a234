"""Which models the joint Laplace engine takes: a light module, so `mlmrun validate` can ask without loading it."""

from __future__ import annotations

from mlmrun.compile.model import CompiledModel


def unsupported(model: CompiledModel) -> str | None:
    """Why the Laplace engine cannot take `model`, or None."""
    if not model.latent:
        return "the model has no latent variables (nothing to integrate)"
    if model.discrete:
        return "discrete latent variables (mass points or classes) are integrated exactly, not by Laplace"
    if any(eq.choice is not None for eq in model.equations):
        return "multinomial and ranking responses couple the rows of a choice set"
    if model.residual is not None or model.rescov:
        return "residual covariances couple rows"
    if model.weighting is not None and model.weighting.unit:
        return "level weights above the rows (levels[].pweight) weight whole integrals"
    return None
