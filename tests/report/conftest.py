"""Fixtures for report and results tests: prepared models and hand-made FitResults (see fakes.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mlmrun.pipeline import Prepared, prepare
from mlmrun.results import FitResult
from tests.report.fakes import ABORTION_SPEC, SPECS, XSS, XSS_SPEC, fake_fit


@pytest.fixture
def make_fit() -> Callable[..., FitResult]:
    return fake_fit


@pytest.fixture(scope="session")
def pig_unstructured() -> Prepared:
    return prepare(SPECS / "pig_slope_unstructured.yaml")


@pytest.fixture(scope="session")
def abortion_prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    folder = tmp_path_factory.mktemp("abortion")
    shutil.copy(SPECS / "data" / "abortion_sim.csv", folder / "abortion_sim.csv")
    (folder / "abortion.yaml").write_text(ABORTION_SPEC, encoding="utf-8")
    return prepare(folder / "abortion.yaml")


@pytest.fixture
def xss_spec(tmp_path: Path) -> Path:
    """A spec whose description, level name and id column are `<script>alert(1)</script>`."""
    lines = (SPECS / "data" / "pig.csv").read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].replace("id", XSS, 1)
    (tmp_path / "xss.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = tmp_path / "xss.yaml"
    path.write_text(XSS_SPEC, encoding="utf-8")
    return path
