"""The flagship: Table 1 of Rabe-Hesketh, Skrondal & Pickles (2004) on simulated data, through `mlmrun fit`.

specs/abortion.yaml fits a two-factor (general, extreme) person-level model
with a district factor under the general one to data simulated from the
published estimates (tests/reference/abortion_sim__truth.json). One run of the
command line: results.json must say converged, carry the quadrature point
check (change below 0.01), and every estimate must lie within 3 published SEs
of the truth used to simulate (intercepts, loadings and the three variances:
our sd rows squared, written as var(...) rows); report.md must show the
loadings like Table 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SPECS
from tests.reference.compare import load_reference

pytestmark = [pytest.mark.reference, pytest.mark.slow]

ITEMS = ["woman", "couple", "marriage", "financial", "defect", "risk", "rape"]
VARIANCES = {"var_general_person_disturbance": "var(general)@person", "var_extreme_person": "var(extreme)@person",
             "var_general_district": "var(general_district)@district"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, str]:
    """`mlmrun fit specs/abortion.yaml` once: exit code, results.json and report.md."""
    out = tmp_path_factory.mktemp("abortion")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "mlmrun", "fit", str(SPECS / "abortion.yaml"), "--out", str(out),
                           "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def recovery(doc: dict) -> list[tuple[str, float, float, float]]:
    """(parameter, estimate, truth, published SE) for every estimated parameter of Table 1."""
    est = {p["name"]: p["estimate"] for p in doc["parameters"]}
    truth, se = load_reference("abortion_sim__truth", "truth"), load_reference("abortion_sim__truth", "published_se")
    rows = [(f"C(item)[{i}]", est[f"C(item)[{i}]"], truth["intercepts"][i], se["intercepts"][i]) for i in ITEMS]
    for factor in ("general", "extreme"):
        for item, s in se[f"loadings_{factor}"].items():
            name = f"loading({factor}->{item})"
            rows.append((name, est[name], truth[f"loadings_{factor}"][item], s))
    rows += [(name, est[name], truth[key], se[key]) for key, name in VARIANCES.items()]
    return rows


def test_converged_and_every_estimate_within_3_published_ses(run) -> None:
    code, doc, _ = run
    assert code == 0 and doc["converged"], doc["warnings"]
    assert doc["integration"]["method"] == "adaptive"
    rows = recovery(doc)
    assert len(rows) == 7 + 6 + 2 + 3
    table = "\n".join(f"{n:34s} est {e:8.3f} truth {t:6.2f} se {s:5.2f} |z| {abs(e - t) / s:5.2f}"
                      for n, e, t, s in rows)
    assert all(abs(e - t) <= 3 * s for _, e, t, s in rows), "recovery of the simulation truth:\n" + table


def test_point_check_in_results_json(run) -> None:
    _, doc, _ = run
    check = doc["point_check"]
    assert len(check["loglik"]) >= 2 and next(iter(check["loglik"].values())) == doc["loglik"]
    assert abs(check["loglik_change"]) < 0.01, check
    assert not any("point check" in w for w in doc["warnings"])
    assert set(doc["empirical_bayes"]) == {"person", "district"}
    assert len(doc["empirical_bayes"]["person"]["general"]["mean"]) == 734


def test_report_reads_like_table_1(run) -> None:
    _, _, report = run
    assert "| Item | Intercept | (SE) | λ general | (SE) | λ extreme | (SE) |" in report
    lines = [line for line in report.splitlines() if line.split("|")[1:2] and line.split("|")[1].strip() in ITEMS]
    assert [line.split("|")[1].strip() for line in lines] == ITEMS
    assert "| woman | " in report and "| 1 | (fixed) | — |" in report
    assert "### Variances at level person" in report and "### Variances at level district" in report
    assert "general ← general\\_district" in report
