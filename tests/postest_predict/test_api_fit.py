"""The notebook API: mlmrun.fit(spec path or dict, data=DataFrame) -> Fit, under the CLI's security rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import mlmrun
from mlmrun.errors import DataError, SpecError
from tests.conftest import SPECS
from tests.postest_predict.helpers import run

PIG = {"name": "pig_api", "data": {"path": "data/pig.csv"}, "levels": [{"name": "pig", "id": "id"}],
       "responses": [{"name": "weight", "family": "gaussian"}], "fixed": "weight ~ week",
       "random": [{"level": "pig", "terms": [1, "week"]}]}


@pytest.fixture(scope="module")
def pig_fit() -> mlmrun.Fit:
    return mlmrun.fit(SPECS / "pig_slope.yaml")


def test_fit_gives_the_report_parameter_table_predictions_and_results_json(pig_fit: mlmrun.Fit, tmp_path: Path) -> None:
    assert run("fit", SPECS / "pig_slope.yaml", "--out", tmp_path, "--quiet") == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    ours = json.loads(pig_fit.to_json())
    assert ours["loglik"] == pytest.approx(doc["loglik"], abs=1e-8)
    assert ours["spec"] == doc["spec"] and ours["data"] == doc["data"]
    params = pig_fit.params.set_index("name")
    for row in doc["parameters"]:
        assert params.loc[row["name"], "estimate"] == pytest.approx(row["estimate"], rel=1e-6, abs=1e-8)
    beta = params.loc["week"]
    assert beta["ci_lower"] == pytest.approx(beta["estimate"] - 1.959963984540054 * beta["se"], rel=1e-9)
    assert beta["z"] == pytest.approx(beta["estimate"] / beta["se"]) and beta["p"] < 1e-12
    assert np.isnan(params.loc["sd(_cons)@pig", "z"])  # no Wald test of an SD against 0 (a boundary)
    sd = params.loc["sd(_cons)@pig"]  # SDs: interval on the log scale, as the report
    assert sd["ci_lower"] * sd["ci_upper"] == pytest.approx(sd["estimate"] ** 2, rel=1e-9)
    assert "Fixed effects" in pig_fit.summary() and "<html" in pig_fit._repr_html_().lower()
    assert run("predict", SPECS / "pig_slope.yaml", "--results", tmp_path / "results.json", "--out",
               tmp_path / "p.csv", "--by-unit", tmp_path / "u.csv", "--quiet") == 0
    np.testing.assert_allclose(pig_fit.predict()["eta"], pd.read_csv(tmp_path / "p.csv")["eta"], rtol=1e-7)
    np.testing.assert_allclose(pig_fit.ranef()["eb_mean(week)@pig"], pd.read_csv(tmp_path / "u.csv")["eb_mean(week)@pig"],
                               rtol=1e-6, atol=1e-9)


def test_a_dict_spec_with_a_dataframe_fits_the_frame_and_predicts_new_rows(pig_fit: mlmrun.Fit) -> None:
    frame = pd.read_csv(SPECS / "data" / "pig.csv")
    fit = mlmrun.fit(dict(PIG, data={"path": "unused.csv"}), data=frame)
    assert fit.result.loglik == pytest.approx(pig_fit.result.loglik, abs=1e-8)
    new = pd.DataFrame({"id": [1, 1000], "week": [3, 3]})
    got = fit.predict(new)
    assert got["unseen@pig"].tolist() == [False, True]
    assert got.loc[1, "eta"] == pytest.approx(got.loc[1, "xb"]) and np.isnan(got.loc[1, "resid"])
    first = fit.ranef().iloc[0]
    assert got.loc[0, "eta"] == pytest.approx(got.loc[0, "xb"] + first["eb_mean(_cons)@pig"] + 3 * first["eb_mean(week)@pig"])


def test_a_dict_spec_reads_only_inside_the_working_directory_and_parses_formulas_by_the_allow_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pig.csv").write_bytes((SPECS / "data" / "pig.csv").read_bytes())
    assert mlmrun.fit(PIG).result.converged  # a dict's files are relative to the working directory
    outside = dict(PIG, data={"path": str(SPECS / "data" / "pig.csv")})
    with pytest.raises(DataError, match="outside"):
        mlmrun.fit(outside)
    with pytest.raises(SpecError, match="fixed"):
        mlmrun.fit(dict(PIG, fixed="weight ~ week + __import__('os').system('true')"))
    spec = yaml.safe_load((SPECS / "pig_slope.yaml").read_text())
    with pytest.raises(SpecError, match="unknown key"):
        mlmrun.fit(dict(spec, estimation={"metod": "ML"}))
