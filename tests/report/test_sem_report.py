"""Issue 9: results.json and the report of a moments-engine fit carry lavaan's fit measures, the
standardized solution, R-squared and the residual covariances, with BIC over the independent units."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SPECS


def test_results_json_and_report_of_a_sem_fit(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "mlmrun", "fit", str(SPECS / "holzinger_swineford_rescov.yaml"),
                           "--out", str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "results.json").read_text())
    measures = doc["fit_measures"]
    assert measures["ntotal"] == 301 and measures["df"] == 22 and measures["npar"] == doc["n_params"] == 32
    assert 0 < measures["rmsea.ci.lower"] < measures["rmsea"] < measures["rmsea.ci.upper"]
    assert math.isclose(doc["bic"], -2 * doc["loglik"] + 32 * math.log(301), rel_tol=1e-12)
    assert doc["integration"]["method"] == "moments"
    std = {r["name"]: r for r in doc["standardized"]["parameters"]}
    assert std["cov(Residual:x7,x8)"]["op"] == "~~" and set(doc["standardized"]["r_squared"]) >= {f"x{j}" for j in range(1, 10)}
    rescov = next(p for p in doc["parameters"] if p["name"] == "cov(Residual:x7,x8)")
    assert rescov["block"] == "rescov" and rescov["free"] and rescov["se"] > 0
    assert len(doc["empirical_bayes"]["child"]["visual"]["mean"]) == 301
    report = (out / "report.md").read_text()
    for text in ("Fit measures", "| CFI | 0.966 |", "Standardized solution", "R-squared", "cov(Residual:x7,x8)",
                 "Heywood"):
        assert text in report, text
