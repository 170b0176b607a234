"""The committed JSON Schema matches the spec models, and every shipped spec points at it and validates."""

from __future__ import annotations

import json

import pytest
import yaml

from mlmrun.spec import load_spec
from mlmrun.spec.schema import SHIPPED as SHIPPED_SCHEMA
from mlmrun.spec.schema import schema_text, shipped_schema_text
from tests.report.fakes import ROOT, SPECS

SCHEMA = ROOT / "schemas" / "mlmrun.schema.json"
HEADER = "# yaml-language-server: $schema=../schemas/mlmrun.schema.json"
SHIPPED = sorted(SPECS.glob("*.yaml"))
REGENERATE = ("run `make schema` (or `python -m mlmrun.spec.schema mlmrun/spec/mlmrun.schema.json "
              "schemas/mlmrun.schema.json`; `mlmrun schema` prints the shipped copy) and commit both files")


def test_committed_schema_has_not_drifted():
    assert SCHEMA.read_text(encoding="utf-8") == schema_text(), (
        f"schemas/mlmrun.schema.json is out of date with the spec models: {REGENERATE}"
    )


def test_shipped_schema_has_not_drifted():
    """`mlmrun schema` prints the copy shipped inside the package; it must be the schema the models generate."""
    assert shipped_schema_text() == schema_text(), (
        f"mlmrun/spec/{SHIPPED_SCHEMA} is out of date with the spec models: {REGENERATE}"
    )


def test_shipped_schema_is_package_data():
    """The shipped copy must go into the wheel, or an installed `mlmrun schema` has nothing to print."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["mlmrun"]
    assert f"spec/{SHIPPED_SCHEMA}" in patterns


def test_schema_is_a_json_schema_document():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["additionalProperties"] is False
    assert {"name", "data", "responses", "fixed"} <= set(schema["required"])
    assert schema["properties"]["fixed"]["description"]  # field docstrings become editor help


def test_there_are_shipped_specs():
    assert len(SHIPPED) >= 5


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.name)
def test_shipped_spec_names_the_schema_and_validates(spec):
    assert spec.read_text(encoding="utf-8").splitlines()[0] == HEADER
    loaded, _ = load_spec(spec)
    assert loaded.name == spec.stem  # the default report folder, reports/<name>, then matches the file


def test_shipped_specs_validate_against_the_json_schema():
    """Editors validate with the JSON Schema, not pydantic: both must accept the shipped specs."""
    import jsonschema
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    for spec in SHIPPED:
        jsonschema.validate(yaml.safe_load(spec.read_text(encoding="utf-8")), schema)
