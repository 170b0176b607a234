"""results.json: the DESIGN.md section 3 contract, derived var/cov rows with delta-method SEs, strict JSON."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from mlmrun.pipeline import prepare
from mlmrun.results import derived_rows, parameter_rows, results_dict, results_json
from tests.report.fakes import SPECS, fake_fit

CONTRACT = {
    "mlmrun_version": str, "spec": dict, "data": dict, "method": str, "integration": dict, "converged": bool,
    "loglik": float, "n_params": int, "aic": float, "bic": float, "parameters": list, "levels": list,
    "iterations": int, "warnings": list,
}


@pytest.fixture(scope="module")
def pig():
    return prepare(SPECS / "pig_slope_unstructured.yaml")


def _doc(prepared, fit, total=2.5):
    return json.loads(results_json(results_dict(fit, prepared.path, prepared, total)))


def test_contract_keys_and_types(pig):
    doc = _doc(pig, fake_fit(pig, warnings=("a warning",)))
    for key, kind in CONTRACT.items():
        assert isinstance(doc[key], kind), key
    assert doc["spec"] == {"name": "pig_slope_unstructured",
                           "sha256": hashlib.sha256(pig.path.read_bytes()).hexdigest()}
    assert doc["data"] == {"sha256": pig.model.data_sha256, "n_rows": 432, "n_used": 432}
    assert doc["integration"] == {"method": "exact", "points": None}
    assert doc["n_params"] == 6 and doc["iterations"] == 7 and doc["warnings"] == ["a warning"]
    assert doc["aic"] == pytest.approx(-2 * -1014.9268 + 2 * 6)
    assert doc["bic"] == pytest.approx(-2 * -1014.9268 + math.log(432) * 6)
    assert "timing" not in doc  # wall-clock times go to run.json, so reruns write identical bytes
    assert doc["levels"] == [{"name": "pig", "n_units": 48, "min": 9, "avg": 9.0, "max": 9}]
    for row in doc["parameters"]:
        assert set(row) == {"name", "block", "estimate", "se", "free"}
    assert doc["n_dropped_missing"] == 0


def test_fixed_rows_have_null_se_and_free_false(pig):
    doc = _doc(pig, fake_fit(pig))
    rows = {r["name"]: r for r in doc["parameters"]}
    assert rows["loading(_cons@pig)"] == {"name": "loading(_cons@pig)", "block": "loading", "estimate": 1.0,
                                          "se": None, "free": False}
    assert rows["week"]["free"] is True and rows["week"]["se"] == pytest.approx(0.1)


def test_every_sd_has_a_variance_and_every_corr_a_covariance(pig):
    doc = _doc(pig, fake_fit(pig))
    names = [r["name"] for r in doc["parameters"]]
    for expected in ("var(_cons)@pig", "var(week)@pig", "cov(week,_cons)@pig", "var(Residual)"):
        assert expected in names
        assert expected in doc["derived"]
    assert len(doc["derived"]) == 4


def test_delta_method_standard_errors(pig):
    """var = sd^2: se = 2 sd se(sd); cov = r s_a s_b: gradient (s_a s_b, r s_b, r s_a) through cov_free."""
    fit = fake_fit(pig)
    pt = pig.model.partable
    rows = {r.name: r for r in parameter_rows(fit)}
    sd = rows["sd(_cons)@pig"]
    assert rows["var(_cons)@pig"].estimate == pytest.approx(sd.estimate**2)
    assert rows["var(_cons)@pig"].se == pytest.approx(2 * sd.estimate * sd.se, rel=1e-6)
    # the residual SD is optimised on the log scale: d var / d log sd = 2 sd^2
    res = rows["sd(Residual)"]
    assert rows["var(Residual)"].se == pytest.approx(2 * res.estimate**2 * 0.1, rel=1e-6)
    r, sa, sb = (fit.values[pt.index(n)] for n in ("corr(week,_cons)@pig", "sd(week)@pig", "sd(_cons)@pig"))
    grad = np.array([sb * sa, r * sb, r * sa])  # d cov / d (corr, sd_week, sd_cons)
    expected = math.sqrt(grad @ (np.eye(3) * 0.01) @ grad)
    assert rows["cov(week,_cons)@pig"].estimate == pytest.approx(r * sa * sb)
    assert rows["cov(week,_cons)@pig"].se == pytest.approx(expected, rel=1e-6)


def test_fixed_sd_gives_fixed_variance(tmp_path):
    (tmp_path / "pig.csv").write_text((SPECS / "data" / "pig.csv").read_text())
    (tmp_path / "m.yaml").write_text(
        "name: m\ndata: {path: pig.csv}\nlevels: [{name: pig, id: id}]\n"
        "responses: [{name: weight}]\nfixed: 'weight ~ week'\n"
        "latent: [{name: u, level: pig, loadings: {on: [week], fix: {week: 1}}, variance: 4}]\n")
    prepared = prepare(tmp_path / "m.yaml")
    row = next(r for r in derived_rows(fake_fit(prepared)) if r.name == "var(u)@pig")
    assert row.estimate == pytest.approx(4.0) and not row.free and math.isnan(row.se)
    doc = _doc(prepared, fake_fit(prepared))
    assert next(p for p in doc["parameters"] if p["name"] == "var(u)@pig")["se"] is None


def test_fixed_vcov_supplies_fixed_effect_ses(pig):
    fit = fake_fit(pig, extras={"fixed_vcov": np.diag([4.0, 0.25])})
    rows = {r["name"]: r for r in _doc(pig, fit)["parameters"]}
    assert rows["Intercept"]["se"] == pytest.approx(2.0) and rows["week"]["se"] == pytest.approx(0.5)


def test_no_nan_in_json(pig):
    fit = fake_fit(pig, cov=False, loglik=float("nan"), converged=False,
                   extras={"lr_test": {"chi2": float("nan"), "df": 3, "p": np.float64("nan"), "kind": "chi2",
                                       "note": "n"}, "point_check": {"loglik": np.array([1.0, np.inf])},
                           "empirical_bayes": np.zeros((48, 2))})
    text = results_json(results_dict(fit, pig.path, pig, 1.0))
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["loglik"] is None and doc["aic"] is None and doc["converged"] is False
    assert all(r["se"] is None for r in doc["parameters"])
    assert doc["lr_test"]["chi2"] is None and doc["point_check"] == {"loglik": [1.0, None]}
    assert "empirical_bayes" not in doc and "fixed_vcov" not in doc


def test_results_json_writes_null_for_nan():
    assert json.loads(results_json({"x": float("nan"), "y": [np.float32(1.5), np.int64(2)]})) == {"x": None, "y": [1.5, 2]}


def test_lr_test_is_written_in_one_layout(pig):
    quadrature = {"statistic": 39.5, "df": 2, "p_value": 1e-9, "null_loglik": -900.0, "distribution": "chi2"}
    doc = _doc(pig, fake_fit(pig, extras={"lr_test": quadrature}))
    assert doc["lr_test"] == {"chi2": 39.5, "df": 2, "p": 1e-9, "kind": "chi2", "loglik_null": -900.0,
                              "note": "Note: LR test is conservative and provided only for reference."}


def test_empirical_bayes_predictions_are_written_compactly(pig, monkeypatch):
    eb = {"pig": {"units": [1, 2], "_cons": {"mean": [0.123456789, -1.0], "sd": [0.5, float("nan")]},
                  "week": {"mean": [2.0, 3.0], "sd": [0.25, 0.125]}}}
    doc = _doc(pig, fake_fit(pig, extras={"empirical_bayes": eb}))
    assert doc["empirical_bayes"] == {"pig": {"units": ["1", "2"], "_cons": {"mean": [0.123457, -1.0], "sd": [0.5, None]},
                                              "week": {"mean": [2.0, 3.0], "sd": [0.25, 0.125]}}}
    monkeypatch.setattr("mlmrun.results.EB_MAX_VALUES", 7)  # 2 units x 2 latent x (mean, sd) = 8 numbers
    assert "empirical_bayes" not in _doc(pig, fake_fit(pig, extras={"empirical_bayes": eb}))
