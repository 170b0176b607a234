"""The package layout is the pipeline: a stage may import earlier stages, never later ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlmrun"
ORDER = ["errors", "display", "progress", "spec", "data", "families", "compile", "likelihood", "pipeline", "predict", "results",
         "estimate", "report", "io", "postest", "distributed", "api", "check", "cli"]


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "mlmrun" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_stage_imports_a_later_stage():
    rank = {name: i for i, name in enumerate(ORDER)}
    problems = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        own = rel.parts[0].removesuffix(".py")
        if own in ("__init__", "__main__"):
            continue
        assert own in rank, f"{rel}: add its stage to ORDER in this test"
        for module in _imports(path):
            stage = _stage(module)
            if stage is not None and stage in rank and rank[stage] > rank[own]:
                problems.append(f"{rel} imports {module} (stage '{stage}' comes after '{own}')")
    assert not problems, "\n".join(problems)


def test_layering_check_detects_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from mlmrun.report import render\n")
    assert "mlmrun.report" in _imports(bad)
    assert ORDER.index(_stage("mlmrun.report")) > ORDER.index("spec")


ROOMS = ("gaussian", "quadrature", "moments", "laplace")


def test_engine_rooms_do_not_import_each_other():
    """Each engine lives in its own room under likelihood/ (DESIGN.md section 5); rooms share only compile/ and families/."""
    problems = []
    for room in ROOMS:
        folder = PACKAGE / "likelihood" / room
        if not folder.is_dir():
            continue
        for path in folder.rglob("*.py"):
            for module in _imports(path):
                parts = module.split(".")
                if parts[:2] == ["mlmrun", "likelihood"] and len(parts) > 2 and parts[2] in ROOMS and parts[2] != room:
                    problems.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not problems, "\n".join(problems)


def test_likelihood_top_level_holds_only_shared_doors():
    """Engine code lives in rooms; likelihood/ itself keeps only what routes between them."""
    loose = sorted(p.name for p in (PACKAGE / "likelihood").glob("*.py") if p.name != "__init__.py")
    assert set(loose) <= {"preflight.py", "engine.py"}, loose
    assert (PACKAGE / "likelihood" / "sparse").is_dir()
