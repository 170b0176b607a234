"""fit_quadrature end to end: settings checked, results fields, point check, starts, predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlmrun.errors import DataError, SpecError
from mlmrun.estimate import estimate
from mlmrun.estimate.quadrature_fit import fit_quadrature
from mlmrun.likelihood.gaussian.deviance import exact_loglik
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare
from tests.conftest import write_spec
from tests.likelihood.test_adaptive_gradient import STRUCTURES, make_model, synthetic_frame

CBPP = """
name: cbpp_test
data: {path: data/cbpp.csv}
levels:
  - {name: herd, id: herd}
responses:
  - {name: incidence, family: binomial, link: logit, trials: size}
fixed: "incidence ~ C(period)"
random:
  - {level: herd, terms: [1]}
"""


def fit_text(folder: Path, text: str, name: str = "m.yaml"):
    return fit_quadrature(prepare(write_spec(folder, text, name)).model)


@pytest.mark.parametrize("integration,message", [
    ("{method: adaptive, points: 0}", "at least 1 point"),
    ("{method: adaptive, points: {herd: 8, period: 4}}", "'period' is not a level"),
    ("{method: laplace, points: 7}", "laplace uses one adaptive point"),
])
def test_integration_settings_that_make_no_sense_are_spec_errors(spec_dir, integration, message) -> None:
    with pytest.raises(SpecError, match=message):
        fit_text(spec_dir, CBPP + f"estimation: {{integration: {integration}}}\n")


def test_laplace_with_check_points_and_points_for_a_level_without_latent_variables(spec_dir) -> None:
    with pytest.raises(SpecError, match="no points to vary"):
        fit_text(spec_dir, CBPP + "estimation: {integration: {method: laplace}, check_points: [8]}\n")
    text = CBPP.replace("  - {name: herd, id: herd}\n", "  - {name: herd, id: herd}\n  - {name: per, id: period, crossed: true}\n")
    with pytest.raises(SpecError, match="'per' has no latent variables"):
        fit_text(spec_dir, text + "estimation: {integration: {points: {herd: 8, per: 3}}}\n")


def test_crossed_latent_levels_are_refused(spec_dir) -> None:
    text = CBPP.replace("  - {name: herd, id: herd}\n", "  - {name: herd, id: herd}\n  - {name: per, id: period, crossed: true}\n")
    text = text.replace("  - {level: herd, terms: [1]}\n", "  - {level: herd, terms: [1]}\n  - {level: per, terms: [1]}\n")
    with pytest.raises(SpecError, match="crossed"):
        fit_text(spec_dir, text)


@pytest.mark.parametrize("column,value,message", [
    ("ysucc", 99, "must not exceed its trials"), ("ycount", -1, "non-negative integers"), ("yord", 2, "never occur"),
])
def test_impossible_responses_are_data_errors(tmp_path: Path, column, value, message) -> None:
    frame = synthetic_frame()
    frame.loc[3, column] = value
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "synthetic.csv", index=False)
    family = {"ysucc": "binomial, trials: ntr", "ycount": "poisson",
              "yord": "ordinal, categories: [0, 1, 2, 3, 4]"}[column]  # category 4 never occurs
    text = (f"name: bad\ndata: {{path: data/synthetic.csv}}\nlevels: [{{name: unit, id: id2}}]\n"
            f"responses: [{{name: {column}, family: {family}}}]\nfixed: \"{column} ~ x\"\n"
            f"random: [{{level: unit, terms: [1]}}]\n")
    with pytest.raises(DataError, match=message):
        prepare(write_spec(tmp_path, text))


def test_fit_result_fields_point_check_predictions_and_lr_test(spec_dir) -> None:
    fit = fit_text(spec_dir, CBPP + "estimation: {integration: {points: 8}, check_points: [12, 16]}\n")
    assert fit.method == "ML" and fit.integration == {"method": "adaptive", "points": 8}
    assert fit.converged and fit.iterations > 0 and fit.n_evaluations > fit.iterations and fit.fit_seconds > 0
    assert fit.cov_free.shape == (5, 5) and np.all(np.isfinite(fit.se()[fit.model.partable.frame["free"] > 0]))
    check = fit.extras["point_check"]
    assert set(check["loglik"]) == {"8", "12", "16"} and check["loglik"]["8"] == fit.loglik
    assert abs(check["loglik_change"]) < 1e-3 and check["max_rel_estimate_change"] < 1e-2
    eb = fit.extras["empirical_bayes"]["herd"]
    assert len(eb["units"]) == 15 and len(eb["_cons"]["mean"]) == 15 and min(eb["_cons"]["sd"]) > 0
    lr = fit.extras["lr_test"]
    assert lr["distribution"] == "chibar2(01)" and lr["statistic"] == pytest.approx(2 * (fit.loglik - lr["null_loglik"]))
    assert 0 < lr["p_value"] < 1e-3
    json.dumps(fit.extras)


def test_point_check_warns_when_the_loglik_moves(spec_dir) -> None:
    fit = fit_text(spec_dir, CBPP + "estimation: {integration: {method: ghq, points: 2}, check_points: [30]}\n")
    assert abs(fit.extras["point_check"]["loglik_change"]) > 0.01
    assert any("point check" in w for w in fit.warnings)


def test_start_from_a_previous_results_file(spec_dir) -> None:
    first = fit_text(spec_dir, CBPP, "first.yaml")
    params = [{"name": str(n), "estimate": float(v)} for n, v in zip(first.model.partable.names, first.values, strict=True)]
    (spec_dir / "prev.json").write_text(json.dumps({"parameters": params + [{"name": "var(_cons)@herd", "estimate": 0.4}]}))
    model = prepare(write_spec(spec_dir, CBPP + "estimation: {start_from: prev.json}\n", "second.yaml")).model
    np.testing.assert_allclose(model.partable.start_values, first.values)
    second = fit_quadrature(model)
    assert second.loglik == pytest.approx(first.loglik, abs=1e-7) and second.iterations <= 2
    with pytest.raises(SpecError, match="no file"):
        prepare(write_spec(spec_dir, CBPP + "estimation: {start_from: missing.json}\n", "third.yaml"))


def test_spec_start_values_are_kept(spec_dir) -> None:
    model = prepare(write_spec(spec_dir, CBPP + "estimation: {start: {sd(_cons)@herd: 0.3, Intercept: -1}}\n")).model
    assert fit_quadrature(model).converged


def test_variance_on_the_boundary_is_reported(tmp_path: Path) -> None:
    frame = synthetic_frame(seed=3)
    frame["ybin"] = (np.random.default_rng(0).uniform(size=len(frame)) < 0.4).astype(int)
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "synthetic.csv", index=False)
    fit = fit_quadrature(make_model(tmp_path, "responses: [{name: ybin, family: binomial}]\nfixed: \"ybin ~ 1\"\n"
                                    "levels: [{name: unit, id: id2}]\nrandom: [{level: unit, terms: [1]}]\n", "zero"))
    sd = fit.values[fit.model.partable.index("sd(_cons)@unit")]
    if sd < 1e-4:
        assert any("boundary" in w for w in fit.warnings)
    assert fit.extras["lr_test"]["statistic"] < 3.0


def test_model_without_latent_variables_fits_the_glm(tmp_path: Path) -> None:
    fit = fit_quadrature(make_model(tmp_path, "responses: [{name: ycount, family: poisson}]\nfixed: \"ycount ~ x\"\n", "glm"))
    assert fit.converged and fit.integration["points"] is None and "lr_test" not in fit.extras


def test_gaussian_through_quadrature_reproduces_the_exact_likelihood(tmp_path: Path) -> None:
    body = STRUCTURES["correlated_slope"].replace(
        "{name: ysucc, family: binomial, link: logit, trials: ntr}", "{name: yg, family: gaussian}").replace(
        "ysucc ~ x", "yg ~ x").replace("unstructured", "independent")  # the correlation would sit at -1 here
    model = make_model(tmp_path, body, "gauss", points=3)
    fit = fit_quadrature(model)
    assert fit.loglik == pytest.approx(exact_loglik(model, fit.values), abs=1e-8)
    exact_fit = estimate(prepare(write_spec(tmp_path, "name: exact\ndata: {path: data/synthetic.csv}\n" + body)).model)
    assert fit.loglik == pytest.approx(exact_fit.loglik, abs=1e-6)


def test_mean_adaptation_converges_to_the_same_likelihood(spec_dir) -> None:
    mode = fit_text(spec_dir, CBPP + "estimation: {integration: {points: 25}}\n", "mode.yaml")
    mean = fit_text(spec_dir, CBPP + "estimation: {integration: {points: 12, adapt: mean}}\n", "mean.yaml")
    assert mean.converged and mean.loglik == pytest.approx(mode.loglik, abs=1e-5)
    np.testing.assert_allclose(mean.values, mode.values, rtol=1e-3)
    with pytest.raises(SpecError, match="adapt: mode"):
        fit_text(spec_dir, CBPP + "estimation: {integration: {method: laplace, adapt: mean}}\n", "bad.yaml")


def test_check_points_per_level(tmp_path: Path) -> None:
    """A check entry may give points per level name (others keep their fitted points): one evaluation each."""
    make_model(tmp_path, STRUCTURES["three_level"], "data_only")  # writes data/synthetic.csv
    text = (f"name: per_level\ndata: {{path: data/synthetic.csv}}\n{STRUCTURES['three_level']}\n"
            "estimation: {integration: {points: 6}, check_points: [{unit: 9}, 8]}\n")
    model = prepare(write_spec(tmp_path, text, "per_level.yaml")).model
    plan = integration_plan(model)
    assert plan.with_points({"unit": 9}).points == (9, 6) and plan.with_points(8).points == (8, 8)
    assert plan.with_points({"unit": 9}).points_key() == "unit: 9, top: 6" and plan.points_key() == "6"
    check = fit_quadrature(model).extras["point_check"]
    assert list(check["loglik"]) == ["6", "unit: 9, top: 6", "8"] and abs(check["loglik_change"]) < 0.05
    with pytest.raises(SpecError, match="'herd'"):
        prepare(write_spec(tmp_path, text.replace("[{unit: 9}, 8]", "[{herd: 9}]"), "bad.yaml"))
