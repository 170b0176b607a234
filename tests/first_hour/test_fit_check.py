"""`mlmrun fit SPEC --check`: refit, compare with the committed results.json, exit 0 / 4 with a readable diff."""

from __future__ import annotations

import json
import shutil

import pytest

from mlmrun import cli
from mlmrun.check import ESTIMATE, EXIT_DIFFERS, LOGLIK, SE, differences
from tests.conftest import SPECS


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """pig_slope fitted once into out/ (the committed report of an analysis kept in git)."""
    folder = tmp_path_factory.mktemp("check")
    shutil.copytree(SPECS / "data", folder / "data")
    shutil.copy(SPECS / "pig_slope.yaml", folder / "pig_slope.yaml")
    assert cli.main(["fit", str(folder / "pig_slope.yaml"), "--out", str(folder / "out"), "--quiet"]) == 0
    return folder


def _check(folder, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["fit", str(folder / "pig_slope.yaml"), "--out", str(folder / "out"), "--check", "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _edit(folder, change) -> None:
    path = folder / "out" / "results.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_check_of_an_unchanged_analysis_exits_0_and_writes_nothing(fitted, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (fitted / "out").iterdir()}
    code, out, _ = _check(fitted, capsys)
    assert code == 0 and "reproduces" in out
    assert {p.name: p.stat().st_mtime_ns for p in (fitted / "out").iterdir()} == before


def test_check_lists_each_difference_and_exits_4(fitted, capsys):
    original = (fitted / "out" / "results.json").read_text()
    week = None

    def change(doc):
        nonlocal week
        doc["loglik"] -= 0.5
        doc["data"]["sha256"] = "0" * 64
        row = next(p for p in doc["parameters"] if p["name"] == "week")
        week = row["estimate"]
        row["estimate"] += 0.01

    try:
        _edit(fitted, change)
        code, out, _ = _check(fitted, capsys)
    finally:
        (fitted / "out" / "results.json").write_text(original)
    assert code == EXIT_DIFFERS == 4
    lines = out.splitlines()
    assert "does NOT reproduce" in lines[0] and "3 differences" in lines[0]
    assert any(ln.strip().startswith("data.sha256: the data file changed") for ln in lines)
    assert any(ln.strip().startswith("loglik: committed") and "difference +0.5" in ln for ln in lines)
    assert any(ln.strip().startswith(f"parameter week estimate: committed {week + 0.01:.8g}, now {week:.8g}")
               for ln in lines)


def test_check_without_committed_results_exits_2(fitted, capsys):
    code = cli.main(["fit", str(fitted / "pig_slope.yaml"), "--out", str(fitted / "none"), "--check", "--quiet"])
    assert code == 2
    assert "no committed results at" in capsys.readouterr().err
    assert not (fitted / "none").exists()


def _doc(**changes):
    doc = {"data": {"sha256": "a"}, "spec": {"sha256": "b"}, "converged": True, "loglik": -1000.0,
           "parameters": [{"name": "x", "estimate": 2.0, "se": 0.5, "free": True},
                          {"name": "f", "estimate": 1.0, "se": None, "free": False}]}
    doc.update(changes)
    return doc


def test_tolerances_accept_what_they_state_and_refuse_just_beyond():
    base = _doc()
    ll_tol = LOGLIK.absolute + LOGLIK.relative * 1000.0
    assert differences(base, _doc(loglik=-1000.0 + 0.9 * ll_tol)) == []
    assert len(differences(base, _doc(loglik=-1000.0 + 1.1 * ll_tol))) == 1
    est_tol = ESTIMATE.absolute + ESTIMATE.relative * 2.0
    se_tol = SE.absolute + SE.relative * 0.5
    near = _doc(parameters=[{"name": "x", "estimate": 2.0 + 0.9 * est_tol, "se": 0.5 + 0.9 * se_tol, "free": True},
                            {"name": "f", "estimate": 1.0, "se": None, "free": False}])
    assert differences(base, near) == []
    far = _doc(parameters=[{"name": "x", "estimate": 2.0 + 1.1 * est_tol, "se": 0.5 + 1.1 * se_tol, "free": True},
                           {"name": "f", "estimate": 1.0, "se": None, "free": False}])
    assert [ln.split(":")[0] for ln in differences(base, far)] == ["parameter x estimate", "parameter x se"]


def test_added_removed_and_refixed_parameters_are_named():
    base = _doc()
    now = _doc(parameters=[{"name": "x", "estimate": 2.0, "se": None, "free": False},
                           {"name": "g", "estimate": 0.0, "se": 0.1, "free": True}], converged=False)
    found = differences(base, now)
    assert "converged: committed True, now False" in found
    assert "parameter f: in the committed results, not in the refit" in found
    assert "parameter g: in the refit, not in the committed results" in found
    assert "parameter x: committed free, now fixed" in found
    assert any(ln.startswith("parameter x se: committed 0.5, now none") for ln in found)
