"""`mlmrun --version`, and the light commands start without the numerical stack (lazy imports)."""

from __future__ import annotations

import os
import subprocess
import sys

from mlmrun import __version__
from tests.report.fakes import ROOT

HEAVY = ("numpy", "scipy", "pandas", "formulaic", "pydantic")


def _modules_after(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    code = ("import sys\nsys.argv = ['mlmrun', *sys.argv[1:]]\n"
            "from mlmrun.cli import main\ntry:\n    code = main()\nexcept SystemExit as e:\n    code = e.code\n"
            f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\nsys.exit(code)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    loaded = [line for line in proc.stdout.splitlines() if line.startswith("LOADED")]
    return proc, loaded


def test_version_prints_the_package_version_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "mlmrun", "--version"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0
    assert proc.stdout == f"mlmrun {__version__}\n"


def test_help_and_version_import_none_of_the_numerical_stack():
    for args in (("--help",), ("--version",), ("fit", "--help")):
        proc, loaded = _modules_after(*args)
        assert proc.returncode == 0, proc.stderr
        assert loaded == ["LOADED []"], args


def test_schema_imports_none_of_the_numerical_stack():
    """`mlmrun schema` prints the schema shipped with the package: not even pydantic is imported."""
    proc, loaded = _modules_after("schema")
    assert proc.returncode == 0 and proc.stdout.startswith("{")
    assert loaded == ["LOADED []"]
