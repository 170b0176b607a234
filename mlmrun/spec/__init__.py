"""The spec language: pydantic models, YAML loading with line maps, JSON Schema export.

The names below are imported on first use, so that reading the shipped JSON Schema
(`mlmrun schema`, mlmrun/spec/schema.py) does not build the pydantic models.
"""

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Spec", "load_spec", "locate", "schema_text", "spec_schema"]

_EXPORTS = {"Spec": "mlmrun.spec.model", "load_spec": "mlmrun.spec.loader", "locate": "mlmrun.spec.loader",
            "schema_text": "mlmrun.spec.schema", "spec_schema": "mlmrun.spec.schema"}

if TYPE_CHECKING:
    from mlmrun.spec.loader import load_spec, locate
    from mlmrun.spec.model import Spec
    from mlmrun.spec.schema import schema_text, spec_schema


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlmrun.spec' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
