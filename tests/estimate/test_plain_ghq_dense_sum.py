"""Plain Gauss-Hermite fits (`method: ghq, points: k`) reproduce a dense k-point sum written in the test.

With non-adaptive quadrature the log likelihood at the reported estimates is
sum_herd log sum_r w_r prod_i f(y_i | x_i'beta + offset_i + sigma x_r) with
the k-point rule for N(0, 1) (numpy's hermegauss), so the test recomputes it
from the data and results.json alone. This pins that the rule used has the
points results.json reports, that trials enter the binomial density and that
offsets and exposures enter the linear predictor.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy import stats

from mlmrun import cli
from tests.conftest import SPECS, write_spec

SPEC = """name: cbpp_ghq
data: {{path: data/cbpp_x.csv}}
levels:
  - {{name: herd, id: herd}}
responses:
  - {{{response}}}
fixed: "incidence ~ C(period)"
random:
  - {{level: herd, terms: [1]}}
estimation: {{method: ML, integration: {{method: ghq, points: {points}}}}}
"""
RESPONSES = {
    "binomial": "name: incidence, family: binomial, link: logit, trials: size",
    "exposure": "name: incidence, family: poisson, exposure: size",
    "offset": "name: incidence, family: poisson, offset: logsize",
}


def cbpp_rows() -> list[dict[str, str]]:
    with (SPECS / "data" / "cbpp.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["logsize"] = repr(math.log(float(r["size"])))
    return rows


def dense_loglik(rows: list[dict[str, str]], est: dict[str, float], kind: str, points: int) -> float:
    x, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / w.sum()
    sigma = est["sd(_cons)@herd"]
    by_herd: dict[str, np.ndarray] = {}
    for r in rows:
        eta = est["Intercept"] + (est[f"C(period)[T.{r['period']}]"] if r["period"] != "1" else 0.0)
        nu = eta + sigma * x
        y, n = int(r["incidence"]), int(r["size"])
        if kind == "binomial":
            f = stats.binom.pmf(y, n, 1.0 / (1.0 + np.exp(-nu)))
        else:
            f = stats.poisson.pmf(y, n * np.exp(nu))
        by_herd[r["herd"]] = by_herd.get(r["herd"], np.ones(points)) * f
    return float(sum(np.log(lik @ w) for lik in by_herd.values()))


@pytest.mark.parametrize("points", [3, 6])
@pytest.mark.parametrize("kind", list(RESPONSES))
def test_ghq_loglik_is_the_dense_k_point_sum(spec_dir, tmp_path, kind, points):
    rows = cbpp_rows()
    with (spec_dir / "data" / "cbpp_x.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    spec = write_spec(spec_dir, SPEC.format(response=RESPONSES[kind], points=points))
    assert cli.main(["fit", str(spec), "--out", str(tmp_path), "--quiet"]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["integration"]["points"] == points
    est = {p["name"]: p["estimate"] for p in doc["parameters"]}
    assert est["sd(_cons)@herd"] > 0.1
    assert doc["loglik"] == pytest.approx(dense_loglik(rows, est, kind, points), abs=1e-8)
    assert doc["loglik"] != pytest.approx(dense_loglik(rows, est, kind, points - 1), abs=1e-4)
