"""Shared fixtures: paths and a helper to write small specs next to copied data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
HEADER = "# yaml-language-server: $schema=../schemas/mlmrun.schema.json\n"


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    """A temporary folder with data/ holding copies of the shipped datasets."""
    shutil.copytree(SPECS / "data", tmp_path / "data")
    return tmp_path


def write_spec(folder: Path, text: str, name: str = "model.yaml") -> Path:
    """Write a spec file (header comment added) and return its path."""
    path = folder / name
    path.write_text(HEADER + text)
    return path
