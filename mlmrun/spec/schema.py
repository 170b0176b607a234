"""JSON Schema export of the spec language (schemas/mlmrun.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from mlmrun.spec.model import Spec

SCHEMA_ID = "https://mlmrun.dev/schemas/mlmrun.schema.json"


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a spec, with a title and id so editors can use it."""
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "mlmrun spec"
    return schema


def schema_text() -> str:
    """The schema as stable, pretty-printed JSON text."""
    return json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"
