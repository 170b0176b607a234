"""ICC (Stata's estat icc) against hand computations from the peers' variance components.

rho = psi / (psi + s2) with s2 the residual variance (Stata's pig table), pi^2/3 (logit) or 1
(probit) on the latent-response scale (lme4 cbpp, ordinal wine); for three levels (lme4
productivity: years in states in regions) region = psi_r / total and state|region =
(psi_r + psi_s) / total. The SE is checked against the analytic delta method written here.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from mlmrun import cli
from mlmrun.estimate import estimate
from mlmrun.estimate.icc import icc_table
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult
from tests.conftest import SPECS
from tests.reference.compare import load_reference

pytestmark = pytest.mark.reference


@cache
def fitted(spec: str) -> FitResult:
    return estimate(prepare(SPECS / f"{spec}.yaml").model)


def lme4_variance(file: str, group: str) -> float:
    blocks = load_reference(file, "results", "random_effects")
    return next(b["components"][0]["variance"] for b in blocks if b["group"] == group)


def test_pig_icc_is_stata_variance_ratio_with_delta_method_se() -> None:
    vc = load_reference("pig__ri_ml", "variance_components")
    u, e = vc["id: var(_cons)"]["estimate"], vc["var(Residual)"]["estimate"]
    fit = fitted("pig_intercept")
    (row,) = icc_table(fit)
    assert row["label"] == "pig"
    assert row["icc"] == pytest.approx(u / (u + e), rel=2e-5)
    names = list(fit.model.partable.names)
    i, j = names.index("sd(_cons)@pig"), names.index("sd(Residual)")
    J = fit.model.partable.jacobian(fit.free)
    C = J @ fit.cov_free @ J.T
    a, b = fit.values[i], fit.values[j]
    grad = np.array([2 * a * b**2, -2 * b * a**2]) / (a**2 + b**2) ** 2
    sub = C[np.ix_([i, j], [i, j])]
    assert row["se"] == pytest.approx(float(np.sqrt(grad @ sub @ grad)), rel=1e-4)
    r, s = row["icc"], row["se"]
    lo = 1 / (1 + np.exp(-(np.log(r / (1 - r)) - norm.ppf(0.975) * s / (r * (1 - r)))))
    assert row["ci"][0] == pytest.approx(lo, rel=1e-9) and row["ci"][0] < r < row["ci"][1] < 1


def test_three_level_iccs_follow_statas_definition() -> None:
    psi_s = lme4_variance("productivity__nested_ri_ml", "state:region")
    psi_r = lme4_variance("productivity__nested_ri_ml", "region")
    s2 = load_reference("productivity__nested_ri_ml", "results", "residual", "variance")
    total = psi_s + psi_r + s2
    rows = icc_table(fitted("productivity"))
    assert [r["label"] for r in rows] == ["region", "state|region"]
    assert rows[0]["icc"] == pytest.approx(psi_r / total, rel=2e-3)
    assert rows[1]["icc"] == pytest.approx((psi_r + psi_s) / total, rel=2e-3)


@pytest.mark.parametrize(("spec", "file", "group", "s2"), [
    ("cbpp", "cbpp__agq25", "herd", np.pi**2 / 3),
    ("wine_logit", "wine__clmm_logit_agq10", "judge", np.pi**2 / 3),
    ("wine_probit", "wine__clmm_probit_agq10", "judge", 1.0),
])
def test_latent_response_icc_of_binomial_and_ordinal_models(spec: str, file: str, group: str, s2: float) -> None:
    psi = lme4_variance(file, group)
    (row,) = icc_table(fitted(spec))
    assert row["icc"] == pytest.approx(psi / (psi + s2), rel=2e-3)
    assert row["se"] > 0 and row["ci"][0] < row["icc"] < row["ci"][1]
    assert "latent-response" in row["scale"]


def test_no_icc_for_random_slopes_or_poisson() -> None:
    assert icc_table(fitted("pig_slope")) is None
    assert icc_table(fitted("epil")) is None


def test_icc_goes_into_results_json_and_the_report(tmp_path: Path) -> None:
    assert cli.main(["fit", str(SPECS / "pig_intercept.yaml"), "--out", str(tmp_path), "--quiet"]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    (row,) = doc["icc"]
    assert row["label"] == "pig" and 0.77 < row["icc"] < 0.78
    md = (tmp_path / "report.md").read_text()
    assert "## Intraclass correlation" in md and "| pig | 0.7717 |" in md
    assert "Intraclass correlation" in (tmp_path / "report.html").read_text()
