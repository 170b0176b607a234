"""Fixtures of the data-safety tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory for the spec and its data (so shown paths are relative)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
