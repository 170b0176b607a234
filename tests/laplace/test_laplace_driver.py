"""The Laplace driver (estimate/laplace_fit.py) against independent computations written here.

The dense Laplace approximation of tests/laplace/dense_laplace.py (all random
effects in one dense Newton problem) gives the log likelihood, the modes and
conditional SDs, and per-cluster contributions; scipy fits the GLM null model.
Nothing compares the driver with numbers of our own engines.
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import gammaln

from mlmrun.estimate import estimate
from mlmrun.estimate.inference import numeric_hessian
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult
from tests.conftest import SPECS
from tests.laplace.dense_laplace import DenseLaplace
from tests.postest_predict.helpers import run


@cache
def fitted(spec: str) -> FitResult:
    return estimate(prepare(SPECS / f"{spec}.yaml").model)


@cache
def fitted_text(text: str) -> FitResult:
    path = Path(tempfile.mkdtemp(prefix="mlmrun-laplace-driver-")) / "model.yaml"
    path.write_text(text.replace("DATA/", f"{SPECS / 'data'}/"))
    return estimate(prepare(path, allow_outside_data=True).model)


def shipped(spec: str, *pairs: tuple[str, str]) -> str:
    text = (SPECS / f"{spec}.yaml").read_text().replace("data/", "DATA/")
    for old, new in pairs:
        assert old in text
        text = text.replace(old, new)
    return text


def test_crossed_fit_is_the_dense_laplace_optimum() -> None:
    """crossed_counts: the fitted log likelihood is the dense Laplace value at the estimates (1e-8), and the
    dense function's gradient there (central differences) is ~0: the driver reached its maximum."""
    fit = fitted("crossed_counts")
    dense = DenseLaplace(fit.model)
    pt = fit.model.partable
    assert fit.loglik == pytest.approx(dense.loglik(fit.values)[0], abs=1e-8)
    g = np.array([(dense.loglik(pt.unpack(fit.free + e))[0] - dense.loglik(pt.unpack(fit.free - e))[0]) / (2 * e.sum())
                  for e in np.eye(len(fit.free)) * 1e-5])
    assert np.max(np.abs(g)) < 1e-3, g


def test_crossed_fit_standard_errors_invert_the_dense_information() -> None:
    """SEs: the inverse of central second differences of the dense Laplace log likelihood, to 1e-3."""
    fit = fitted("crossed_counts")
    dense = DenseLaplace(fit.model)
    pt = fit.model.partable
    H = numeric_hessian(lambda x: dense.loglik(pt.unpack(x))[0], fit.free, 1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov_free)), np.sqrt(np.diag(np.linalg.inv(-H))), rtol=1e-3)


def test_crossed_empirical_bayes_are_the_dense_modes_and_conditional_sds() -> None:
    """extras['empirical_bayes'] of a crossed fit: per level, the joint posterior modes and the conditional
    SDs (diagonal of (I + A'WA)^-1 on the latent scale) of the dense computation, to 1e-6."""
    fit = fitted("crossed_counts")
    dense = DenseLaplace(fit.model).modes(fit.values)
    eb = fit.extras["empirical_bayes"]
    assert set(eb) == {"site", "year"}
    for level, (mode, sd) in dense.items():
        assert eb[level]["units"] == [str(x) for x in fit.model.levels[[lv.name for lv in fit.model.levels].index(level)].labels]
        np.testing.assert_allclose(eb[level]["_cons"]["mean"], mode[:, 0], atol=1e-6)
        np.testing.assert_allclose(eb[level]["_cons"]["sd"], sd[:, 0], atol=1e-6)


def test_gaussian_crossed_modes_through_laplace_are_the_exact_blups() -> None:
    """For a Gaussian model the posterior is Gaussian: the Laplace engine's modes and conditional SDs are
    the closed-form BLUPs and conditional SDs of the exact path (estimate/gaussian_eb.py), to 1e-5."""
    fit = fitted_text(shipped("scotssec", ("estimation: {method: ML}",
                                           "estimation: {method: ML, exact: false, integration: {method: laplace}}")))
    exact = fitted("scotssec")
    for level in ("primary", "second"):
        ours, blup = fit.extras["empirical_bayes"][level], exact.extras["empirical_bayes"][level]
        assert ours["units"] == blup["units"]
        np.testing.assert_allclose(ours["_cons"]["mean"], blup["_cons"]["mean"], atol=1e-5)
        np.testing.assert_allclose(ours["_cons"]["sd"], blup["_cons"]["sd"], atol=1e-5)


def test_predict_on_a_crossed_laplace_fit_gives_the_joint_modes(tmp_path) -> None:
    """A crossed Laplace fit's results.json and report name the method and both crossed levels; `mlmrun predict
    --eb mode` writes the dense modes/SDs per unit; `--eb mean` the means of the Laplace approximation of the
    posterior (Gaussian at the mode): the same numbers."""
    spec = SPECS / "crossed_counts.yaml"
    assert run("fit", spec, "--out", tmp_path / "fit", "--quiet") == 0
    results = tmp_path / "fit" / "results.json"
    doc = json.loads(results.read_text())
    assert doc["integration"]["method"] == "laplace"
    assert [(lv["name"], lv["n_units"]) for lv in doc["levels"]] == [("site", 60), ("year", 12)]
    assert set(doc["empirical_bayes"]) == {"site", "year"}
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "| Integration | Laplace" in report and "| site | site | 60 |" in report and "crossed" in report
    units = tmp_path / "units.csv"
    assert run("predict", spec, "--results", results, "--out", tmp_path / "rows.csv", "--by-unit", units,
               "--eb", "mode", "--quiet") == 0
    table = pd.read_csv(units)
    fit = fitted("crossed_counts")
    dense = DenseLaplace(fit.model).modes(fit.values)
    for level in ("site", "year"):
        part = table[table["level"] == level].sort_values("unit")
        np.testing.assert_allclose(part[f"eb_mode(_cons)@{level}"], dense[level][0][:, 0], atol=1e-5)
        np.testing.assert_allclose(part[f"eb_sd(_cons)@{level}"], dense[level][1][:, 0], atol=1e-5)
    means = tmp_path / "means.csv"
    assert run("predict", spec, "--results", results, "--out", tmp_path / "rows2.csv", "--by-unit", means,
               "--quiet") == 0
    by_mean = pd.read_csv(means)
    for level in ("site", "year"):
        np.testing.assert_array_equal(by_mean[f"eb_mean(_cons)@{level}"], table[f"eb_mode(_cons)@{level}"])


def binomial_glm_loglik(y: np.ndarray, n: np.ndarray, X: np.ndarray) -> float:
    """Maximum binomial log likelihood (with the binomial coefficient) of a logistic regression, by BFGS."""
    const = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)

    def neg(b: np.ndarray) -> float:
        eta = X @ b
        return -float(np.sum(y * eta - n * np.logaddexp(0, eta) + const))

    return -minimize(neg, np.zeros(X.shape[1]), method="BFGS", options={"gtol": 1e-10}).fun


def test_nested_laplace_lr_test_is_chibar2_against_an_independent_glm() -> None:
    """cbpp_laplace (now on the sparse engine): the LR statistic is 2 (loglik - GLM loglik), the GLM fitted
    here by scipy, and its p-value is chi-bar-square(01)'s half of the chi2(1) tail."""
    fit = fitted("cbpp_laplace")
    data = pd.read_csv(SPECS / "data" / "cbpp.csv")
    X = np.column_stack([np.ones(len(data))] + [(data["period"] == p).to_numpy(float) for p in (2, 3, 4)])
    null = binomial_glm_loglik(data["incidence"].to_numpy(float), data["size"].to_numpy(float), X)
    test = fit.extras["lr_test"]
    assert test["null_loglik"] == pytest.approx(null, abs=1e-6)
    assert test["statistic"] == pytest.approx(2 * (fit.loglik - null), abs=1e-5)
    from scipy.stats import chi2

    assert test["p_value"] == pytest.approx(0.5 * chi2.sf(test["statistic"], 1), rel=1e-6)
    assert test["distribution"] == "chibar2(01)"


def test_robust_standard_errors_are_the_sandwich_of_dense_cluster_scores() -> None:
    """`vce: robust` on a nested Laplace fit: G/(G-1) B^-1 (sum_g s_g s_g') B^-1 with the herds' scores and
    B from central differences of the dense per-herd Laplace contributions, to 1e-3 in the SEs."""
    fit = fitted_text(shipped("cbpp_laplace", ("integration: {method: laplace}}",
                                               "integration: {method: laplace}, vce: robust}")))
    assert fit.extras["vce"]["type"] == "robust" and fit.extras["vce"]["n_clusters"] == 15
    assert "lr_test" not in fit.extras
    dense = DenseLaplace(fit.model)
    pt = fit.model.partable
    x = fit.free
    h = 1e-5 * np.maximum(1.0, np.abs(x))
    S = np.column_stack([(dense.unit_loglik(pt.unpack(x + e)) - dense.unit_loglik(pt.unpack(x - e))) / (2 * hj)
                         for e, hj in zip(np.diag(h), h, strict=True)])
    B = -numeric_hessian(lambda z: dense.loglik(pt.unpack(z))[0], x, 1e-4)
    Binv = np.linalg.inv(B)
    G = S.shape[0]
    V = G / (G - 1) * Binv @ (S.T @ S) @ Binv
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov_free)), np.sqrt(np.diag(V)), rtol=1e-3)


def test_an_iteration_cap_is_reported_as_not_converged() -> None:
    """max_iter: 1 stops L-BFGS-B and the polish after one step each: converged is false, with a warning."""
    fit = fitted_text(shipped("crossed_counts", ("estimation: {method: ML,", "estimation: {method: ML, max_iter: 1,")))
    assert not fit.converged
    assert any("did not converge" in w for w in fit.warnings)


def test_an_sd_started_at_zero_leaves_the_boundary() -> None:
    """The Laplace log likelihood is even in an SD, so its gradient at 0 is 0: a start at sd = 1e-12 must still
    reach the optimum of the dense function (the driver probes the SD off the boundary)."""
    fit = fitted_text(shipped("crossed_counts", ("estimation: {method: ML,",
                                                 "estimation: {method: ML, start: {\"sd(_cons)@year\": 1.0e-12},")))
    ref = fitted("crossed_counts")
    assert fit.loglik == pytest.approx(ref.loglik, abs=1e-7)
    assert fit.converged and not any("boundary" in w for w in fit.warnings)


def test_the_dense_helper_at_vanishing_sds_is_the_poisson_glm() -> None:
    """Sanity of the dense helper itself: with both SDs ~0 its Laplace value is the Poisson GLM log
    likelihood with the log(effort) offset, written out here."""
    fit = fitted("crossed_counts")
    values = fit.values.copy()
    pt = fit.model.partable
    for name in ("sd(_cons)@site", "sd(_cons)@year"):
        values[pt.index(name)] = 1e-9
    data = pd.read_csv(SPECS / "data" / "crossed_counts.csv")
    eta = values[pt.index("Intercept")] + values[pt.index("temp")] * data["temp"] + np.log(data["effort"])
    y = data["count"]
    glm = float(np.sum(y * eta - np.exp(eta) - gammaln(y + 1)))
    assert DenseLaplace(fit.model).loglik(values)[0] == pytest.approx(glm, abs=1e-6)


BOUNDARY = """\
name: boundary
data: {path: cc.csv}
levels:
  - {name: site, id: site, crossed: true}
  - {name: year, id: year, crossed: true}
  - {name: obs, id: obs, crossed: true}
responses:
  - {name: count, family: poisson, link: log, exposure: effort}
fixed: "count ~ temp"
random:
  - {level: site, terms: [1]}
  - {level: year, terms: [1]}
  - {level: obs, terms: [1]}
estimation: {method: ML, integration: {method: laplace}}
"""


@pytest.mark.slow
def test_sds_whose_maximum_is_zero_are_reported_on_the_boundary(tmp_path) -> None:
    """Counts without year effects and less dispersed than Poisson (rounded means, site effects only): the
    year and observation-level SDs have their maximum at 0. The fit converges there with boundary warnings
    and no SEs for them; the dense Laplace log likelihood is lower 0.05 inside either SD, and the other SEs
    invert the dense information of the interior parameters (to 1e-3)."""
    rng = np.random.default_rng(1)
    data = pd.read_csv(SPECS / "data" / "crossed_counts.csv")
    data["obs"] = np.arange(1, len(data) + 1)
    site = rng.normal(0, 0.7, data["site"].max() + 1)
    data["count"] = np.round(data["effort"] * np.exp(0.5 + 0.35 * data["temp"] + site[data["site"]])).astype(int)
    data.to_csv(tmp_path / "cc.csv", index=False)
    (tmp_path / "model.yaml").write_text(BOUNDARY)
    fit = estimate(prepare(tmp_path / "model.yaml").model)
    assert fit.converged, fit.warnings
    pt = fit.model.partable
    zero = ["sd(_cons)@year", "sd(_cons)@obs"]
    for name in zero:
        assert fit.values[pt.index(name)] == pytest.approx(0.0, abs=1e-6)
        assert any(w.startswith(f"{name} is on the boundary") for w in fit.warnings)
        assert np.isnan(fit.se()[pt.index(name)])
    dense = DenseLaplace(fit.model)
    assert fit.loglik == pytest.approx(dense.loglik(fit.values)[0], abs=1e-8)
    for name in zero:
        inside = fit.values.copy()
        inside[pt.index(name)] = 0.05
        assert dense.loglik(inside)[0] < fit.loglik
    names = pt.free_names()
    interior = [k for k, name in enumerate(names) if name not in zero]

    def restricted(z: np.ndarray) -> float:
        x = fit.free.copy()
        x[interior] = z
        return dense.loglik(pt.unpack(x))[0]

    H = numeric_hessian(restricted, fit.free[interior], 1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov_free)[interior]), np.sqrt(np.diag(np.linalg.inv(-H))),
                               rtol=1e-3)
