"""JSON Schema of the spec language: generated from the pydantic models, and shipped pre-generated.

`mlmrun schema` prints the shipped copy (mlmrun/spec/mlmrun.schema.json, package data), so
that it starts without building the models; `make schema` (`python -m mlmrun.spec.schema
FILE...`) regenerates it and the editors' copy schemas/mlmrun.schema.json, and
tests/test_schema.py fails when either differs from `schema_text()`.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_ID = "https://mlmrun.dev/schemas/mlmrun.schema.json"
SHIPPED = "mlmrun.schema.json"
"""The pre-generated schema's file name inside the package mlmrun.spec."""


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a spec, generated from the models, with a title and id so editors can use it."""
    from mlmrun.spec.model import Spec

    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "mlmrun spec"
    return schema


def schema_text() -> str:
    """The generated schema as stable, pretty-printed JSON text."""
    return json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"


def shipped_schema_text() -> str:
    """The schema text shipped with the package (equal to `schema_text()`; the drift test keeps it so)."""
    return resources.files(__package__).joinpath(SHIPPED).read_text(encoding="utf-8")


def write_schema(paths: list[str]) -> None:
    """Write the generated schema to every path (each replaced atomically)."""
    text = schema_text()
    for path in map(Path, paths):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


if __name__ == "__main__":
    write_schema(sys.argv[1:] or [str(Path(__file__).with_name(SHIPPED))])
