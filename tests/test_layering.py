"""The package layout is the pipeline: a stage may import earlier stages, never later ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlmrun"
ORDER = ["errors", "display", "progress", "spec", "data", "families", "compile", "likelihood", "pipeline", "predict", "results",
         "estimate", "report", "io", "postest", "api", "check", "cli"]


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
