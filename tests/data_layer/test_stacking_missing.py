"""Stacking wide items into long rows when some items are missing.

A missing item becomes a long row with a missing response, which is then
dropped and counted like any other; a person with every item missing leaves
no unit behind. The fitted 2PL log likelihood is recomputed in the test by
dense Gauss-Hermite integration over the observed items only.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pandas as pd
import pytest

from mlmrun import cli
from mlmrun.data.reshape import stack_long
from mlmrun.spec.model import Stack
from tests.conftest import SPECS

ITEMS = ["i1", "i2", "i3", "i4", "i5"]
BLANKS = {0: ["i2"], 3: ITEMS, 10: ["i1", "i5"], 500: ["i3"], 999: ["i4", "i5"]}


def test_missing_items_stay_in_place_as_missing_values():
    wide = pd.DataFrame({"id": [1, 2], "a": [1.0, np.nan], "b": [np.nan, 0.0], "c": [1.0, 1.0]})
    long = stack_long(wide, Stack(columns=["a", "b", "c"], item="item", value="y"))
    assert long["id"].tolist() == [1, 1, 1, 2, 2, 2]
    assert long["item"].tolist() == ["a", "b", "c"] * 2
    assert long["y"].isna().tolist() == [False, True, False, True, False, False]
    assert long["y"].dropna().tolist() == [1.0, 1.0, 0.0, 1.0]


@pytest.fixture
def lsat_blanked(spec_dir):
    with (SPECS / "data" / "lsat.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, items in BLANKS.items():
        for item in items:
            rows[i][item] = ""
    with (spec_dir / "data" / "lsat.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id"] + ITEMS)
        w.writeheader()
        w.writerows(rows)
    spec = spec_dir / "lsat_2pl.yaml"
    spec.write_text((SPECS / "lsat_2pl.yaml").read_text())
    return spec, rows


def test_missing_items_are_dropped_and_counted(lsat_blanked, capsys):
    spec, rows = lsat_blanked
    assert cli.main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    n_blank = sum(len(v) for v in BLANKS.values())
    persons = sum(any(r[i] != "" for i in ITEMS) for r in rows)
    assert f" {5 * len(rows) - n_blank} rows used ({n_blank} dropped for missing values) of {5 * len(rows)} read" in out
    assert re.search(rf"person \({persons} units\)", out)


def dense_2pl_loglik(rows: list[dict[str, str]], intercept: dict[str, float], loading: dict[str, float]) -> float:
    """sum over persons of log int prod_(observed items) Bernoulli(y | expit(b_j + a_j t)) phi(t) dt (80 points)."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    total = 0.0
    for r in rows:
        lik = np.ones_like(x)
        for item in ITEMS:
            if r[item] == "":
                continue
            p = 1.0 / (1.0 + np.exp(-(intercept[item] + loading[item] * x)))
            lik *= p if r[item] == "1" else 1.0 - p
        total += np.log(lik @ w)
    return total


def test_fit_with_missing_items_is_the_likelihood_of_the_observed_items(lsat_blanked, tmp_path):
    spec, rows = lsat_blanked
    assert cli.main(["fit", str(spec), "--out", str(tmp_path), "--quiet"]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    est = {p["name"]: p["estimate"] for p in doc["parameters"]}
    intercept = {i: est[f"C(item)[{i}]"] for i in ITEMS}
    loading = {i: est[f"loading(ability->{i})"] for i in ITEMS}
    kept = [r for r in rows if any(r[i] != "" for i in ITEMS)]
    # 21 adaptive points against 80 plain ones: both far below 1e-6 of the exact integral for 5 binary items
    assert doc["loglik"] == pytest.approx(dense_2pl_loglik(kept, intercept, loading), abs=1e-6)
    assert doc["data"]["n_used"] == 5 * len(rows) - sum(len(v) for v in BLANKS.values())


def test_stack_labels_rename_items_and_unlabelled_items_keep_their_column_name():
    wide = pd.DataFrame({"id": [1], "q1": [1.0], "q2": [np.nan], "q3": [0.0]})
    long = stack_long(wide, Stack(columns=["q1", "q2", "q3"], item="item", value="y", labels={"q1": "first", "q3": "third"}))
    assert long["item"].tolist() == ["first", "q2", "third"]
    assert long["y"].isna().tolist() == [False, True, False]
