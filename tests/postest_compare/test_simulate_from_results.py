"""`simulate --results` draws from the estimates of an earlier fit, exactly as from a fit made in the same call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.report.fakes import ROOT

SPEC = ROOT / "specs" / "pig_intercept.yaml"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlmrun", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_simulate_from_results_matches_simulate_after_fitting(tmp_path: Path) -> None:
    fit = _run("fit", str(SPEC), "--out", str(tmp_path / "fit"), "--quiet", cwd=ROOT)
    assert fit.returncode == 0, fit.stderr
    results = tmp_path / "fit" / "results.json"
    assert json.loads(results.read_text())["converged"]
    a = _run("simulate", str(SPEC), "--results", str(results), "--seed", "7", "--replicates", "2",
             "--out", str(tmp_path / "a.csv"), "--quiet", cwd=ROOT)
    b = _run("simulate", str(SPEC), "--seed", "7", "--replicates", "2", "--out", str(tmp_path / "b.csv"), "--quiet",
             cwd=ROOT)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    da, db = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert list(da.columns) == list(db.columns) and len(da) == 2 * 432
    # results.json rounds nothing away that matters: the same draws up to the estimates' printed precision
    pd.testing.assert_frame_equal(da, db, rtol=1e-6)


def test_simulate_refuses_results_of_another_spec(tmp_path: Path) -> None:
    other = ROOT / "specs" / "pig_slope.yaml"
    fit = _run("fit", str(other), "--out", str(tmp_path / "fit"), "--quiet", cwd=ROOT)
    assert fit.returncode == 0, fit.stderr
    r = _run("simulate", str(SPEC), "--results", str(tmp_path / "fit" / "results.json"), "--seed", "1",
             "--out", str(tmp_path / "x.csv"), cwd=ROOT)
    assert r.returncode == 2
    assert "does not belong to this spec" in r.stderr
    assert not (tmp_path / "x.csv").exists()
