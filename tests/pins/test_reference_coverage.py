"""Every reference file in tests/reference is read by a test, or is reserved on a documented list.

A file counts as read when its stem appears as a string in the code of some test module (a
`load_reference("pig__ri_ml", ...)` argument, a parametrize value): docstrings, bare strings
and comments do not count, and neither does this module. Files that describe models mlmrun
cannot fit yet are listed in RESERVED with the capability they wait for; a reserved file that
a test starts reading must leave the list, and a listed file must exist.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from tests.reference.compare import REFERENCE_DIR, load_reference

TESTS = Path(__file__).resolve().parents[1]

RESERVED: dict[str, str] = {
    "judgesim__mtmr_ml": "54462-row crossed multi-trait multi-rater factor model (6 factors and a class intercept "
                         "over 3 crossed levels): judgesim.csv (3 MB) is not shipped and the fit has not been tried "
                         "within issue 15's test-time budget (under 3 minutes for all added tests)",
}
"""Reference files no test reads yet, and why: the capability or data they wait for."""


def stem_strings(path: Path) -> set[str]:
    """String constants in a module's code (docstrings and other bare expression strings excluded)."""
    tree = ast.parse(path.read_text())
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare}


def stem_pattern(stems: list[str]) -> re.Pattern[str]:
    """Whole stems only: pig__ri_ml is not read by a mention of pig__ri_ml_x (longest alternatives first)."""
    alternatives = "|".join(map(re.escape, sorted(stems, key=len, reverse=True)))
    return re.compile(r"(?<![A-Za-z0-9_])(" + alternatives + r")(?![A-Za-z0-9_])")


def read_stems() -> dict[str, list[str]]:
    """Reference stem -> test modules whose code names it."""
    stems = sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))
    pattern = stem_pattern(stems)
    readers: dict[str, list[str]] = {s: [] for s in stems}
    for module in sorted(TESTS.rglob("test_*.py")):
        if module.resolve() == Path(__file__).resolve():
            continue
        for text in stem_strings(module):
            for stem in pattern.findall(text):
                readers[stem].append(str(module.relative_to(TESTS)))
    return readers


def test_every_reference_file_is_read_by_a_test_or_reserved() -> None:
    readers = read_stems()
    unread = sorted(s for s, who in readers.items() if not who and s not in RESERVED and s != "index")
    assert not unread, f"reference files read by no test (read them, or reserve them with a reason): {unread}"


def test_reserved_files_exist_and_are_not_read() -> None:
    readers = read_stems()
    missing = sorted(s for s in RESERVED if s not in readers)
    assert not missing, f"RESERVED names files that do not exist: {missing}"
    read = {s: readers[s] for s in RESERVED if readers[s]}
    assert not read, f"reserved files are read by tests; take them off RESERVED: {read}"


def test_stem_scan_ignores_docstrings_and_prefixes(tmp_path: Path) -> None:
    module = tmp_path / "test_x.py"
    module.write_text('"""pig__ri_ml in a docstring."""\n\ndef f():\n    """sleepstudy__rs_ml"""\n'
                      '    return ["holzinger_swineford__cfa3_ml_meanstructure"]\n')
    assert stem_strings(module) == {"holzinger_swineford__cfa3_ml_meanstructure"}
    pattern = stem_pattern(["holzinger_swineford__cfa3_ml", "holzinger_swineford__cfa3_ml_meanstructure"])
    assert pattern.findall("holzinger_swineford__cfa3_ml_meanstructure") == ["holzinger_swineford__cfa3_ml_meanstructure"]
    assert pattern.findall("load_reference('holzinger_swineford__cfa3_ml')") == ["holzinger_swineford__cfa3_ml"]
    assert pattern.findall("holzinger_swineford__cfa3_ml_x") == []


def file_loglik(file: str, model: str) -> float | None:
    """The log likelihood a reference file holds, in any of its three layouts (README)."""
    doc = load_reference(file)
    if ":" in model:
        return doc["models"][model.split(":", 1)[1]]["loglik"]
    if isinstance(doc.get("results"), dict) and "loglik" in doc["results"]:
        return doc["results"]["loglik"]
    if isinstance(doc.get("results"), dict) and "log_pseudolikelihood" in doc["results"]:
        return doc["results"]["log_pseudolikelihood"]
    return doc.get("loglik")


def test_index_lists_every_file_with_its_own_loglik() -> None:
    index = json.loads((REFERENCE_DIR / "index.json").read_text())
    files = {p.name for p in REFERENCE_DIR.glob("*.json")} - {"index.json"}
    assert {entry["file"] for entry in index} == files
    for entry in index:
        assert file_loglik(entry["file"].removesuffix(".json"), entry["model"]) == entry["loglik"], entry
