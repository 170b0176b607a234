"""LR tests against the model without latent variables, on both engines.

p-values are recomputed here with scipy.stats from the reported statistic: one variance on
its boundary gives the chi-bar-square(01) p = 0.5 P(chi2_1 > stat) and p = 1 at a statistic
of 0; several parameters give P(chi2_df > stat) with Stata's note that the test is
conservative. Statistics are recomputed from the fitted log likelihood and a null log
likelihood written here in closed form (OLS, or the per-period binomial proportions), and
compared with Stata's printed statistic where a reference file has one (pig: 472.65 ML,
hsb12: 986.12 REML; 2 decimals, so within 0.005).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln
from scipy.stats import chi2

from mlmrun import estimate, prepare
from mlmrun.estimate.inference import lr_p_value
from mlmrun.report.summarize import summarize
from mlmrun.results import FitResult, lr_test
from tests.conftest import SPECS
from tests.pins.fixed import write_case
from tests.pins.test_points_used import RANDOM_1D, RANDOM_2D, counts
from tests.reference.compare import assert_close, load_reference
from tests.reference.test_glmm_reference import fitted as fitted_quadrature
from tests.reference.test_lmm_reference import fitted as fitted_exact

CONSERVATIVE = "Note: LR test is conservative and provided only for reference."


PIG_LR = load_reference("pig__ri_ml", "other", "LR test vs linear regression chibar2(01)")
"""Stata's printed LR statistic for pig: a large statistic of the size real fits give."""


@pytest.mark.parametrize("stat", [1e-3, 0.5, 2.7055, 3.84, 10.0, PIG_LR])
@pytest.mark.parametrize("df", [1, 2, 3, 6])
def test_p_value_rule_is_scipys_chi2_or_its_halved_mixture(stat: float, df: int) -> None:
    assert lr_p_value(stat, df, False) == pytest.approx(chi2.sf(stat, df), rel=1e-12)
    assert lr_p_value(stat, 1, True) == pytest.approx(0.5 * chi2.sf(stat, 1), rel=1e-12)


@pytest.mark.parametrize("single", [True, False])
def test_p_value_is_one_at_a_zero_statistic(single: bool) -> None:
    assert lr_p_value(0.0, 1, single) == 1.0
    assert lr_p_value(7e-15, 1, single) == 1.0  # a boundary fit's rounding noise, as on the Poisson fit below


def report_lines(fit: FitResult, spec: Path) -> list[str]:
    report = summarize(fit, prepare(spec))
    return [text for section in report.sections for text in section.lines + section.notes]


def check_single(fit: FitResult, spec: Path, versus: str) -> dict:
    lr = lr_test(fit)
    assert lr["kind"] == "chibar2" and lr["df"] == 1 and lr["note"] == ""
    assert lr["p"] == pytest.approx(0.5 * chi2.sf(lr["chi2"], 1), rel=1e-10, abs=1e-300)
    lines = report_lines(fit, spec)
    assert f"LR test vs. {versus}: chibar2(01) = {lr['chi2']:.2f}   Prob >= chibar2 = {lr['p']:.4f}" in lines
    assert CONSERVATIVE not in lines
    return lr


def check_several(fit: FitResult, spec: Path, versus: str, df: int) -> dict:
    lr = lr_test(fit)
    assert lr["kind"] == "chi2" and lr["df"] == df and lr["note"] == CONSERVATIVE
    assert lr["p"] == pytest.approx(chi2.sf(lr["chi2"], df), rel=1e-10, abs=1e-300)
    lines = report_lines(fit, spec)
    assert f"LR test vs. {versus}: chi2({df}) = {lr['chi2']:.2f}   Prob > chi2 = {lr['p']:.4f}" in lines
    assert CONSERVATIVE in lines
    return lr


def ols_loglik(y: np.ndarray, X: np.ndarray, reml: bool) -> float:
    """(Restricted) log likelihood of the linear regression, closed form (lme4's REML definition)."""
    n, p = X.shape
    rss = float(np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2))
    if not reml:
        return -0.5 * n * (np.log(2 * np.pi * rss / n) + 1.0)
    return -0.5 * ((n - p) * (np.log(2 * np.pi * rss / (n - p)) + 1.0) + np.linalg.slogdet(X.T @ X)[1])


@pytest.mark.reference
def test_exact_engine_one_variance_pig_matches_stata_chibar2() -> None:
    fit = fitted_exact("pig_intercept")
    lr = check_single(fit, SPECS / "pig_intercept.yaml", "linear regression")
    pig = pd.read_csv(SPECS / "data" / "pig.csv")
    null = ols_loglik(pig["weight"].to_numpy(float), np.column_stack([np.ones(len(pig)), pig["week"]]), False)
    assert lr["loglik_null"] == pytest.approx(null, rel=1e-12)
    assert lr["chi2"] == pytest.approx(2 * (fit.loglik - null), rel=1e-12)
    assert_close("pig LR chibar2 (Stata, 2 decimals)", lr["chi2"],
                 load_reference("pig__ri_ml", "other", "LR test vs linear regression chibar2(01)"), abs_tol=0.005)


@pytest.mark.reference
def test_exact_engine_two_variances_pig_slope_is_conservative_chi2() -> None:
    check_several(fitted_exact("pig_slope"), SPECS / "pig_slope.yaml", "linear regression", 2)


@pytest.mark.reference
def test_exact_engine_reml_hsb12_matches_stata_chibar2(spec_dir: Path) -> None:
    """Stata's REML LR statistic compares restricted likelihoods (Singer's HS&B null model, hsb12 = hsb82)."""
    path = write_case_spec(spec_dir, """
name: hsb_null_reml
data: {path: data/hsb82.csv}
levels:
  - {name: school, id: school}
responses:
  - {name: mAch, family: gaussian}
fixed: "mAch ~ 1"
random:
  - {level: school, terms: [1]}
estimation: {method: REML}
""")
    fit = estimate(prepare(path).model)
    assert fit.method == "REML"
    lr = check_single(fit, path, "linear regression")
    y = pd.read_csv(spec_dir / "data" / "hsb82.csv")["mAch"].to_numpy(float)
    assert lr["loglik_null"] == pytest.approx(ols_loglik(y, np.ones((len(y), 1)), True), rel=1e-12)
    ref = "hsb12__null_reml"
    assert_close("hsb12 LR chibar2 (Stata, 2 decimals)", lr["chi2"],
                 load_reference(ref, "other", "LR test vs linear regression chibar2(01)"), abs_tol=0.005)


def write_case_spec(folder: Path, text: str) -> Path:
    path = folder / "model.yaml"
    path.write_text(text.strip() + "\n")
    return path


@pytest.mark.reference
def test_quadrature_engine_one_variance_cbpp_is_halved() -> None:
    fit = fitted_quadrature("cbpp")
    lr = check_single(fit, SPECS / "cbpp.yaml", "the model without latent variables")
    cbpp = pd.read_csv(SPECS / "data" / "cbpp.csv")
    k, n = cbpp["incidence"].to_numpy(float), cbpp["size"].to_numpy(float)
    p = cbpp.groupby("period")["incidence"].transform("sum") / cbpp.groupby("period")["size"].transform("sum")
    null = float(np.sum(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + k * np.log(p) + (n - k) * np.log1p(-p)))
    assert lr["loglik_null"] == pytest.approx(null, rel=1e-9)
    assert lr["chi2"] == pytest.approx(2 * (fit.loglik - null), rel=1e-9)


def test_quadrature_engine_three_parameters_is_conservative_chi2(tmp_path: Path) -> None:
    path = write_case(tmp_path, counts(), RANDOM_2D + "estimation: {integration: {method: adaptive, points: 8}}", {})
    fit = estimate(prepare(path).model)
    check_several(fit, path, "the model without latent variables", 3)


@pytest.mark.parametrize("family", ["poisson", "gaussian"])
def test_variance_at_zero_gives_statistic_zero_and_p_one_on_both_engines(tmp_path: Path, family: str) -> None:
    """Identical subjects: the random-intercept variance is estimated at 0 and the LR statistic is 0."""
    frame = pd.DataFrame([{"subject": s, "t": t, "y": y} for s in range(8) for t, y in ((-1, 1), (0, 2), (1, 4))])
    body = RANDOM_1D if family == "poisson" else RANDOM_1D.replace("family: poisson, link: log", "family: gaussian")
    path = write_case(tmp_path, frame, body + "estimation: {integration: {method: adaptive, points: 8}}", {})
    fit = estimate(prepare(path).model)
    assert fit.integration["method"] == ("adaptive" if family == "poisson" else "exact")
    lr = lr_test(fit)
    assert lr["kind"] == "chibar2" and lr["chi2"] == pytest.approx(0.0, abs=1e-6)
    assert lr["p"] == 1.0
    versus = "linear regression" if family == "gaussian" else "the model without latent variables"
    assert f"LR test vs. {versus}: chibar2(01) = 0.00   Prob >= chibar2 = 1.0000" in report_lines(fit, path)
