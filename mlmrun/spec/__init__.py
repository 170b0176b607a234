"""The spec language: pydantic models, YAML loading with line maps, JSON Schema export."""

from mlmrun.spec.loader import load_spec, locate
from mlmrun.spec.model import Spec
from mlmrun.spec.schema import schema_text, spec_schema

__all__ = ["Spec", "load_spec", "locate", "schema_text", "spec_schema"]
