"""`mlmrun fit` on a discrete model writes what the contract promises: points, probabilities, posteriors, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlmrun import cli
from tests.conftest import SPECS


def test_fit_writes_masses_probabilities_posteriors_and_the_report_section(tmp_path: Path) -> None:
    code = cli.main(["fit", str(SPECS / "cbpp_npmle.yaml"), "--out", str(tmp_path), "--quiet"])
    assert code == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    rows = {p["name"]: p for p in doc["parameters"]}
    for name in ("mass1(_cons)@herd", "mass2(_cons)@herd", "prob1@herd", "prob2@herd", "var(_cons)@herd"):
        assert name in doc["derived"] and rows[name]["se"] is not None and rows[name]["se"] > 0
    assert abs(rows["prob1@herd"]["estimate"] + rows["prob2@herd"]["estimate"] - 1.0) < 1e-12
    masses = np.array([rows["mass1(_cons)@herd"]["estimate"], rows["mass2(_cons)@herd"]["estimate"]])
    probs = np.array([rows["prob1@herd"]["estimate"], rows["prob2@herd"]["estimate"]])
    assert abs(probs @ masses) < 1e-10  # the identification: mean of the discrete distribution is 0
    assert abs(rows["var(_cons)@herd"]["estimate"] - probs @ masses**2) < 1e-10
    assert doc["integration"]["method"] == "discrete" and doc["n_params"] == 6
    summary = doc["discrete"]
    assert summary["points"] == 2 and summary["requested"] == 2 and "mean of the discrete" in summary["identification"]
    posterior = np.array(doc["class_posterior"]["probabilities"])
    assert posterior.shape == (15, 2) and np.allclose(posterior.sum(axis=1), 1.0, atol=1e-5)
    assert len(doc["empirical_bayes"]["herd"]["_cons"]["mean"]) == 15
    report = (tmp_path / "report.md").read_text()
    assert "## Discrete latent distribution" in report and "Identification: mean of the discrete" in report
    assert "Gateaux derivative" in report and "starting values (seed 1)" in report
