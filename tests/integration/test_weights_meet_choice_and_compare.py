"""Weights and robust standard errors where they meet choice sets and model comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2

from mlmrun.errors import DataError
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.postest.compare import (
    CONSERVATIVE_NOTE,
    Candidate,
    ComparisonError,
    compare,
    from_fit,
    lr_test,
    render_text,
)
from tests.conftest import SPECS, write_spec

MULTINOMIAL = """\
name: mnl_robust
data: {path: multinomial_sim.csv}
responses:
  - name: choice
    family: multinomial
    choice: {layout: per_choice, alternatives: alt, base: A, case: "~ x + female"}
fixed: "choice ~ 0"
estimation: {method: ML, vce: robust}
"""


def test_robust_multinomial_clusters_on_choice_sets_as_the_sandwich_written_here(tmp_path: Path) -> None:
    data = pd.read_csv(SPECS / "data" / "multinomial_sim.csv")
    data.to_csv(tmp_path / "multinomial_sim.csv", index=False)
    prepared = prepare(write_spec(tmp_path, MULTINOMIAL))
    fit = estimate(prepared.model)
    names = list(prepared.model.partable.names)
    alts = ["B", "C"]
    beta = np.array([[fit.values[names.index(f"{a}:{c}")] for c in ("Intercept", "x", "female")] for a in alts])
    Z = np.column_stack([np.ones(len(data)), data["x"], data["female"]])
    util = np.column_stack([np.zeros(len(data)), Z @ beta.T])
    p = np.exp(util - util.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.column_stack([(data["choice"] == a).to_numpy(float) for a in ["A", *alts]])
    scores = np.hstack([(y[:, j + 1] - p[:, j + 1])[:, None] * Z for j in range(2)])  # one row per choice set
    H = np.zeros((6, 6))
    for j in range(2):
        for k in range(2):
            w = p[:, j + 1] * ((j == k) - p[:, k + 1])
            H[3 * j:3 * j + 3, 3 * k:3 * k + 3] = -(Z * w[:, None]).T @ Z
    G = len(data)
    Hinv = np.linalg.inv(H)
    se = np.sqrt(np.diag(Hinv @ (scores.T @ scores) @ Hinv) * G / (G - 1))
    ours = np.array([fit.se()[names.index(f"{a}:{c}")] for a in alts for c in ("Intercept", "x", "female")])
    np.testing.assert_allclose(ours, se, rtol=2e-3)


def test_choice_set_rows_with_different_weights_are_refused(tmp_path: Path) -> None:
    data = pd.read_csv(SPECS / "data" / "rankings_sim.csv")
    data["w"] = 1 + data["resp"] % 3
    data.loc[1, "w"] = 7
    data.to_csv(tmp_path / "r.csv", index=False)
    text = ("name: r\ndata: {path: r.csv}\nresponses:\n  - name: rank\n    family: ranking\n"
            "    choice: {layout: per_alternative, alternatives: alt, set: resp}\n"
            "fixed: \"rank ~ price + quality\"\nweights: {fweight: w}\n")
    with pytest.raises(DataError, match="a choice set is one observation"):
        prepare(write_spec(tmp_path, text))


PISA = """\
name: {name}
data: {{path: pisa2000.csv}}
levels:
  - {{name: school, id: id_school, pweight: wnrschbw}}
responses:
  - {{name: isei, family: gaussian}}
fixed: "{fixed}"
random:
  - {{level: school, terms: [1]}}
weights: {{pweight: w_fstuwt, pwscale: {pwscale}}}
"""
FULL = "isei ~ female + high_school + college + one_for + both_for + test_lang"


def candidate(folder: Path, name: str, fixed: str = FULL, pwscale: str = "size"):
    prepared = prepare(write_spec(folder, PISA.format(name=name, fixed=fixed, pwscale=pwscale), f"{name}.yaml"))
    return from_fit(name, estimate(prepared.model), prepared)


@pytest.fixture
def pisa_dir(tmp_path: Path) -> Path:
    (tmp_path / "pisa2000.csv").write_bytes((SPECS / "data" / "pisa2000.csv").read_bytes())
    return tmp_path


def test_compare_of_pseudolikelihoods_reports_no_lr_test_and_says_why(pisa_dir: Path) -> None:
    full = candidate(pisa_dir, "full")
    small = candidate(pisa_dir, "small", FULL.replace(" + test_lang", ""))
    doc = compare([small, full])
    assert doc["lr_tests"] == []
    assert any("pseudolikelihood" in n and "not valid" in n for n in doc["notes"])
    assert "not valid" in render_text(doc) and "LR chi2" not in render_text(doc)


def test_compare_refuses_fits_weighted_differently(pisa_dir: Path) -> None:
    with pytest.raises(ComparisonError, match="different weights"):
        compare([candidate(pisa_dir, "size"), candidate(pisa_dir, "effective", pwscale="effective")])


def results_doc(loglik: float, free: list[tuple[str, str]]) -> dict:
    return {"loglik": loglik, "n_params": len(free), "method": "ML", "data": {"sha256": "x", "n_used": 10},
            "parameters": [{"name": n, "block": b, "estimate": 1.0, "free": True} for n, b in free]}


BASE = [("Intercept", "fixed"), ("sd(_cons)@subject", "sd")]


def test_poisson_within_negative_binomial_is_tested_on_the_boundary_as_chibar2_01() -> None:
    test = lr_test(Candidate("poisson", results_doc(-100.0, BASE)),
                   Candidate("nbinom2", results_doc(-98.5, BASE + [("theta", "dispersion")])))
    assert test["kind"] == "chibar2"
    assert test["p"] == pytest.approx(0.5 * chi2.sf(3.0, 1), rel=1e-12)


def test_zero_inflation_terms_get_the_plain_chi2_with_the_conservative_note() -> None:
    test = lr_test(Candidate("poisson", results_doc(-100.0, BASE)),
                   Candidate("zip", results_doc(-98.0, BASE + [("zi(Intercept)", "zeroinfl")])))
    assert test["kind"] == "chi2" and test["note"] == CONSERVATIVE_NOTE
    assert test["p"] == pytest.approx(chi2.sf(4.0, 1), rel=1e-12)


def test_a_model_without_latent_variables_is_not_noted_as_integrated_differently() -> None:
    plain = results_doc(-100.0, [("Intercept", "fixed")]) | {"integration": {"method": "adaptive", "points": None}}
    mixed = results_doc(-90.0, BASE) | {"integration": {"method": "adaptive", "points": 12}}
    doc = compare([Candidate("plain", plain), Candidate("mixed", mixed)])
    assert doc["notes"] == [] and len(doc["lr_tests"]) == 1
