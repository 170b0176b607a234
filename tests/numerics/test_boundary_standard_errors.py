"""An SD estimated at its boundary (0): sd() and var() both without SE, with the reason in the warnings.

The Gaussian data are built so that the ML group variance is exactly 0 (residual group means are
removed), a closed-form fact: the between-group sum of squares of y - 1 - 0.5x is 0, so any
group SD > 0 lowers the likelihood. Before the fix sd(_cons) had an SE of ~1.5 and var(_cons) an SE
of 0 (2 sd SE with sd = 0). A binary model whose data carry no group signal does the same through
quadrature when its SD lands at ~0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun import estimate
from mlmrun.pipeline import prepare
from mlmrun.results import parameter_rows, results_dict, results_json
from tests.conftest import write_spec

FLAT = """
name: flat
data: {path: data/flat.csv}
levels: [{name: grp, id: g}]
responses: [{name: y, family: gaussian}]
fixed: "y ~ x"
random: [{level: grp, terms: [1]}]
"""


@pytest.fixture
def flat_spec(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    group = np.repeat(np.arange(30), 8)
    x = rng.normal(size=len(group))
    x -= (np.bincount(group, weights=x) / 8)[group]  # within-group x: the fixed part leaves group means alone
    e = rng.normal(size=len(group))
    e -= (np.bincount(group, weights=e) / 8)[group]
    (tmp_path / "data").mkdir()
    pd.DataFrame({"g": group, "x": x, "y": 1.0 + 0.5 * x + e}).to_csv(tmp_path / "data" / "flat.csv", index=False)
    return write_spec(tmp_path, FLAT)


def rows_by_name(fit) -> dict:
    return {r.name: r for r in parameter_rows(fit)}


def test_gaussian_sd_at_zero_has_no_se_and_neither_has_its_variance(flat_spec: Path) -> None:
    prepared = prepare(flat_spec)
    fit = estimate(prepared.model)
    rows = rows_by_name(fit)
    assert rows["sd(_cons)@grp"].estimate == pytest.approx(0.0, abs=1e-8)
    assert np.isnan(rows["sd(_cons)@grp"].se) and np.isnan(rows["var(_cons)@grp"].se)
    assert any("sd(_cons)@grp and var(_cons)@grp: no standard error at the boundary" in w for w in fit.warnings)
    # the residual SD keeps its SE: sigma^2 = RSS / n exactly here (ML), with SE sigma / sqrt(2n)
    resid = rows["sd(Residual)"]
    n = prepared.model.n
    assert np.isfinite(resid.se) and resid.se == pytest.approx(resid.estimate / np.sqrt(2 * n), rel=1e-3)
    doc = json.loads(results_json(results_dict(fit, flat_spec, prepared, total_seconds=0.0)))
    by_name = {p["name"]: p for p in doc["parameters"]}
    assert by_name["sd(_cons)@grp"]["se"] is None and by_name["var(_cons)@grp"]["se"] is None
    assert by_name["sd(Residual)"]["se"] is not None


def test_quadrature_sd_at_zero_has_no_se_and_neither_has_its_variance(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    group = np.repeat(np.arange(40), 6)
    y = np.tile([0, 1, 0, 1, 1, 0], 40)  # every group has the same 3 of 6: no between-group variation
    (tmp_path / "data").mkdir()
    pd.DataFrame({"g": group, "x": rng.normal(size=len(group)), "y": y}).to_csv(tmp_path / "data" / "b.csv",
                                                                                 index=False)
    spec = write_spec(tmp_path, """
name: flatbin
data: {path: data/b.csv}
levels: [{name: grp, id: g}]
responses: [{name: y, family: binomial}]
fixed: "y ~ 1"
random: [{level: grp, terms: [1]}]
estimation: {integration: {method: adaptive, points: 7}}
""")
    fit = estimate(prepare(spec).model)
    rows = rows_by_name(fit)
    assert abs(rows["sd(_cons)@grp"].estimate) < 1e-4
    assert np.isnan(rows["sd(_cons)@grp"].se) and np.isnan(rows["var(_cons)@grp"].se)
    assert any("no standard error at the boundary" in w for w in fit.warnings)
    # the intercept's SE is the binomial one of logit(p) with p = 1/2 from 240 responses: 1/sqrt(n p (1-p))
    assert rows["Intercept"].se == pytest.approx(1 / np.sqrt(240 * 0.25), rel=1e-3)
