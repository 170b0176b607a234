"""What each command imports at start-up (issue 16: lazy imports). Tests of imports, not of timings.

`--help`, `--version` and `schema` start without the numerical stack (tests/first_hour/test_startup_and_version.py);
`validate` loads what building and checking a model needs (numpy, pandas, formulaic, pydantic) but nothing that
only fitting, reporting or post-estimation uses. The shortcuts that keep it so (the schema shipped as package
data, spec models built on first use with their field docstrings read in one parse, scipy.special on first use)
must give the same results as the slow way.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest
from pydantic._internal._docs_extraction import extract_docstrings_from_cls

from mlmrun.spec import model as spec_model
from mlmrun.spec.base import SpecNode
from tests.report.fakes import ROOT

FIT_ONLY = ("matplotlib", "jinja2", "scipy.optimize", "scipy.stats", "scipy.integrate", "dask", "distributed",
            "mlmrun.estimate", "mlmrun.report", "mlmrun.postest", "mlmrun.results", "mlmrun.likelihood.gaussian",
            "mlmrun.likelihood.sparse")
"""Modules (and their submodules) only fitting, reporting or post-estimation need."""


def _loaded_after(args: list[str], prefixes: tuple[str, ...]) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `mlmrun ARGS` in a fresh interpreter; the loaded modules named by or under `prefixes`."""
    code = ("import json, sys\nsys.argv = ['mlmrun', *sys.argv[1:]]\nfrom mlmrun.cli import main\n"
            "try:\n    code = main()\nexcept SystemExit as e:\n    code = e.code\n"
            f"prefixes = {prefixes!r}\n"
            "print('LOADED', json.dumps(sorted(m for m in sys.modules\n"
            "                                  if m in prefixes or m.startswith(tuple(p + '.' for p in prefixes)))))\n"
            "sys.exit(code)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("LOADED ")]
    return proc, json.loads(lines[-1].removeprefix("LOADED ")) if lines else ["(no LOADED line)"]


@pytest.mark.parametrize("spec", ["pig_slope", "multinomial", "holzinger_swineford_sem", "epil_nbinom"])
def test_validate_imports_nothing_only_fitting_or_reporting_needs(spec):
    proc, loaded = _loaded_after(["validate", f"specs/{spec}.yaml"], FIT_ONLY)
    assert proc.returncode == 0, proc.stderr
    assert ": OK: " in proc.stdout
    assert loaded == []


def test_a_fit_with_its_report_imports_no_scipy_stats(tmp_path):
    """scipy.stats costs about 1 s of import; normal quantiles (ICC intervals, QQ plots) come from scipy.special."""
    proc, loaded = _loaded_after(["fit", "specs/pig_intercept.yaml", "--out", str(tmp_path / "out"), "--quiet"],
                                 ("scipy.stats",))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "report.html").is_file()
    assert loaded == []


def test_validate_still_loads_the_data_and_design_stack():
    """The checks validate makes need pandas (the data), formulaic (the design) and pydantic (the spec)."""
    needed = ("numpy", "pandas", "formulaic", "pydantic")
    proc, loaded = _loaded_after(["validate", "specs/pig_slope.yaml"], needed)
    assert proc.returncode == 0, proc.stderr
    assert set(needed) <= set(loaded)


def test_schema_command_prints_the_schema_the_models_generate():
    from mlmrun.spec.schema import spec_schema

    proc = subprocess.run([sys.executable, "-m", "mlmrun", "schema"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == spec_schema()


def test_families_import_scipy_special_on_first_use():
    code = ("import sys\nimport mlmrun.families as f\nbefore = 'scipy.special' in sys.modules\n"
            "import numpy as np\nvalue = f.get_link('logit').inverse(np.array([0.0]))[0]\n"
            "print(before, 'scipy.special' in sys.modules, value)")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.split() == ["False", "True", "0.5"]


def test_lazy_scipy_special_is_scipy_special():
    import scipy.special

    from mlmrun.families.special import sc

    assert sc.expit is scipy.special.expit
    assert sc.gammaln is scipy.special.gammaln
    with pytest.raises(AttributeError):
        sc.no_such_function  # noqa: B018


SPEC_NODES = [cls for _, cls in inspect.getmembers(spec_model, inspect.isclass)
              if issubclass(cls, SpecNode) and cls is not SpecNode and cls.__module__ == spec_model.__name__]


def test_there_are_spec_nodes():
    assert len(SPEC_NODES) >= 20


@pytest.mark.parametrize("cls", SPEC_NODES, ids=lambda c: c.__name__)
def test_field_descriptions_are_the_docstrings_pydantic_would_read(cls):
    """Our one-parse reading of attribute docstrings gives what pydantic's `use_attribute_docstrings` gives."""
    expected = extract_docstrings_from_cls(cls, use_inspect=True)
    described = {name: f.description for name, f in cls.model_fields.items() if f.description is not None}
    assert described == {name: doc for name, doc in expected.items() if name in cls.model_fields}
