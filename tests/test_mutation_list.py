"""The curated mutant list of `make mutate` stays runnable: well-formed, enough mutants, tests that exist.

Whether each mutant still applies (its text occurs exactly once) and is
killed is `make mutate`'s job; this only guards the list itself, cheaply.
"""

from __future__ import annotations

import importlib.util
import sys

from tests.conftest import ROOT

_SPEC = importlib.util.spec_from_file_location("mlmrun_tools_mutate", ROOT / "tools" / "mutate.py")
assert _SPEC is not None and _SPEC.loader is not None
mutate = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = mutate  # dataclasses resolve their module through sys.modules
_SPEC.loader.exec_module(mutate)


def test_mutant_list_is_well_formed_and_names_existing_files():
    mutants = mutate.load_mutants()
    assert len(mutants) >= 30
    for m in mutants:
        assert (ROOT / m.file).is_file(), m.id
        assert m.file.startswith("mlmrun/"), m.id
        for test in m.tests:
            assert (ROOT / test.split("::")[0]).exists(), f"{m.id}: {test}"


def test_first_failure_reads_pytest_short_summary():
    out = "....F\n=== short test summary info ===\nFAILED tests/a.py::test_x[1] - AssertionError: no\n1 failed"
    assert mutate.first_failure(out) == "tests/a.py::test_x[1]"
