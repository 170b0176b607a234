"""`mlmrun predict` end to end: rows as in the data file, ids as read, by-unit order, new data, formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.postest.fitted import load_fitted
from tests.conftest import SPECS, write_spec
from tests.postest_predict.helpers import run

PIG_TEXT = """\
name: pig_text
data: {path: pigs.csv, filter: [{column: week, op: "<=", value: 8}]}
levels:
  - {name: pig, id: pig}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1, week]}
"""


@pytest.fixture
def pig_text(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """pig.csv with text ids ('p07'), pigs in a shuffled order, week 9 rows (filtered out) and a missing weight."""
    data = pd.read_csv(SPECS / "data" / "pig.csv")
    order = np.random.default_rng(1).permutation(data["id"].unique())
    data = pd.concat([data[data["id"] == i] for i in order], ignore_index=True)
    data["pig"] = [f"p{i:02d}" for i in data["id"]]
    data.loc[5, "weight"] = np.nan
    data = data[["pig", "week", "weight"]]
    data.to_csv(tmp_path / "pigs.csv", index=False)
    return write_spec(tmp_path, PIG_TEXT), data


def test_rows_are_numbered_as_in_the_file_with_ids_as_read_and_units_in_data_order(pig_text, tmp_path: Path) -> None:
    spec, data = pig_text
    out, units_out = tmp_path / "p.csv", tmp_path / "u.parquet"
    assert run("predict", spec, "--out", out, "--by-unit", units_out, "--quiet") == 0
    rows = pd.read_csv(out, dtype={"pig": str})
    used = data[(data["week"] <= 8) & data["weight"].notna()]
    assert rows["row"].tolist() == (used.index + 1).tolist()
    assert rows["pig"].tolist() == used["pig"].tolist()
    units = pd.read_parquet(units_out)
    assert units["unit"].tolist() == list(dict.fromkeys(used["pig"]))
    assert units["n_rows"].tolist() == used.groupby("pig", sort=False).size().tolist()
    merged = rows.merge(units, left_on="pig", right_on="unit", suffixes=("", "_unit"))
    for col in ("eb_mean(_cons)@pig", "eb_sd(week)@pig"):
        np.testing.assert_array_equal(merged[col], merged[f"{col}_unit"])
    week = used["week"].to_numpy()
    np.testing.assert_allclose(rows["eta"], rows["xb"] + rows["eb_mean(_cons)@pig"] + week * rows["eb_mean(week)@pig"],
                               rtol=1e-12)
    np.testing.assert_allclose(rows["resid"], used["weight"].to_numpy() - rows["mu"], rtol=1e-9, atol=1e-9)


def test_predicting_without_results_fits_first_and_equals_predicting_from_results(tmp_path: Path) -> None:
    spec = SPECS / "pig_slope.yaml"
    assert run("fit", spec, "--out", tmp_path / "fit", "--quiet") == 0
    assert run("predict", spec, "--results", tmp_path / "fit" / "results.json", "--out", tmp_path / "a.csv", "--quiet") == 0
    assert run("predict", spec, "--out", tmp_path / "b.parquet", "--quiet") == 0
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_parquet(tmp_path / "b.parquet")
    assert list(a.columns) == list(b.columns)
    np.testing.assert_allclose(a.drop(columns=["id"]).to_numpy(float), b.drop(columns=["id"]).to_numpy(float),
                               rtol=1e-9, atol=1e-9)


def test_gaussian_modes_are_the_means(tmp_path: Path) -> None:
    spec = SPECS / "pig_slope.yaml"
    assert run("predict", spec, "--out", tmp_path / "mean.csv", "--quiet") == 0
    assert run("predict", spec, "--out", tmp_path / "mode.csv", "--eb", "mode", "--quiet") == 0
    mean, mode = pd.read_csv(tmp_path / "mean.csv"), pd.read_csv(tmp_path / "mode.csv")
    np.testing.assert_allclose(mode["eb_mode(week)@pig"], mean["eb_mean(week)@pig"], rtol=1e-9)
    np.testing.assert_allclose(mode["eb_sd(week)@pig"], mean["eb_sd(week)@pig"], rtol=1e-9)


def test_new_data_known_units_keep_their_eb_and_unseen_units_get_zero_and_a_flag(tmp_path: Path) -> None:
    spec = SPECS / "cbpp.yaml"
    assert run("fit", spec, "--out", tmp_path / "fit", "--quiet") == 0
    fitted = tmp_path / "fitted.csv"
    assert run("predict", spec, "--results", tmp_path / "fit" / "results.json", "--out", fitted, "--quiet") == 0
    old = pd.read_csv(fitted)
    new = pd.DataFrame({"herd": [3, 99, 3], "period": [2, 1, 4], "size": [10, 8, 6], "incidence": [1, 2, None]})
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "new_pred.csv"
    assert run("predict", spec, "--results", tmp_path / "fit" / "results.json", "--data", tmp_path / "new.csv",
               "--out", out, "--quiet") == 0
    got = pd.read_csv(out)
    assert got["row"].tolist() == [1, 2, 3] and got["herd"].tolist() == [3, 99, 3]
    assert got["unseen@herd"].tolist() == [False, True, False]
    herd3 = old[old["herd"] == 3].iloc[0]
    assert got.loc[0, "eb_mean(_cons)@herd"] == pytest.approx(herd3["eb_mean(_cons)@herd"], rel=1e-10)
    assert got.loc[0, "eta"] - got.loc[0, "xb"] == pytest.approx(herd3["eb_mean(_cons)@herd"], rel=1e-9)
    period2 = old[old["herd"] == 3].iloc[1]  # herd 3's second row is period 2: same linear predictor
    assert got.loc[0, "eta"] == pytest.approx(period2["eta"], rel=1e-10)
    assert got.loc[1, "eb_mean(_cons)@herd"] == 0 and got.loc[1, "eta"] == got.loc[1, "xb"]
    fit = load_fitted(spec, tmp_path / "fit" / "results.json")
    assert got.loc[1, "eb_sd(_cons)@herd"] == pytest.approx(fit.values[fit.model.partable.index("sd(_cons)@herd")])
    assert np.isnan(got.loc[2, "resid"]) and np.isfinite(got.loc[2, "mu_marginal"])
    assert np.isfinite(got.loc[0, "resid"])


def test_load_fitted_puts_the_estimates_back_on_the_parameter_vector(tmp_path: Path) -> None:
    spec = SPECS / "cbpp.yaml"
    assert run("fit", spec, "--out", tmp_path, "--quiet") == 0
    fit = load_fitted(spec, tmp_path / "results.json")
    doc = json.loads((tmp_path / "results.json").read_text())
    estimates = {p["name"]: p["estimate"] for p in doc["parameters"]}
    for name, value in zip(fit.model.partable.names, fit.values, strict=True):
        assert value == pytest.approx(estimates[name], rel=1e-13, abs=1e-15)
    assert fit.loglik == doc["loglik"] and fit.cov_free is None


def _fitted_copy(tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(SPECS / "data", tmp_path / "data")
    spec = tmp_path / "cbpp.yaml"
    shutil.copy(SPECS / "cbpp.yaml", spec)
    assert run("fit", spec, "--out", tmp_path / "fit", "--quiet") == 0
    return spec, tmp_path / "fit" / "results.json"


def _refused(capsys, *argv) -> str:
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    return err


def test_results_of_other_data_or_another_model_are_refused(tmp_path: Path, capsys) -> None:
    spec, results = _fitted_copy(tmp_path)
    out = tmp_path / "p.csv"
    other = tmp_path / "other.yaml"
    other.write_text(spec.read_text().replace('"incidence ~ C(period)"', '"incidence ~ 1"'))
    err = _refused(capsys, "predict", other, "--results", results, "--out", out)
    assert "does not belong to this spec" in err and "C(period)[T.2]" in err and "refit" in err
    original = json.loads(results.read_text())
    doc = json.loads(results.read_text())
    doc["data"]["sha256"] = "0" * 64
    results.write_text(json.dumps(doc))
    err = _refused(capsys, "predict", spec, "--results", results, "--out", out)
    assert "was fitted to data with SHA-256 000000000000" in err and "refit" in err
    del doc["data"]["sha256"]
    results.write_text(json.dumps(doc))
    assert "records no data hash" in _refused(capsys, "predict", spec, "--results", results, "--out", out)
    for name, value, message in (("loading(_cons@herd)", 2.0, "the spec fixes it"),
                                 ("sd(_cons)@herd", None, "has no finite estimate")):
        doc = json.loads(json.dumps(original))
        next(r for r in doc["parameters"] if r["name"] == name)["estimate"] = value
        results.write_text(json.dumps(doc))
        err = _refused(capsys, "predict", spec, "--results", results, "--out", out)
        assert message in err and name in err
    results.write_text("{not json")
    assert "is not a JSON file" in _refused(capsys, "predict", spec, "--results", results, "--out", out)
    assert "no file" in _refused(capsys, "predict", spec, "--results", tmp_path / "none.json", "--out", out)
    assert not out.exists()


def test_bad_outputs_and_new_data_the_fit_cannot_predict_are_refused(tmp_path: Path, capsys) -> None:
    spec, results = _fitted_copy(tmp_path)
    out = tmp_path / "p.csv"
    out.write_text("kept\n")
    err = _refused(capsys, "predict", spec, "--results", results, "--out", tmp_path / "p.txt")
    assert "must end in .csv or .parquet" in err
    new = tmp_path / "new.csv"
    pd.DataFrame({"herd": [1], "period": [5], "size": [4], "incidence": [1]}).to_csv(new, index=False)
    err = _refused(capsys, "predict", spec, "--results", results, "--data", new, "--out", out)
    assert "C(period)[T.5]" in err and "drop those rows or refit" in err
    pd.DataFrame({"herd": [1], "incidence": [1]}).to_csv(new, index=False)
    err = _refused(capsys, "predict", spec, "--results", results, "--data", new, "--out", out)
    assert "lacks the columns" in err and "'period'" in err
    centred = tmp_path / "centred.yaml"
    centred.write_text(spec.read_text().replace('"incidence ~ C(period)"', '"incidence ~ center(size)"'))
    pd.DataFrame({"herd": [1], "period": [1], "size": [4], "incidence": [1]}).to_csv(new, index=False)
    err = _refused(capsys, "predict", centred, "--data", new, "--out", out)
    assert "center(), scale() or poly()" in err
    assert out.read_text() == "kept\n"


def test_new_data_go_through_the_spec_filter_and_keep_their_own_row_numbers(pig_text, tmp_path: Path) -> None:
    spec, data = pig_text
    fitted = tmp_path / "fitted.csv"
    assert run("predict", spec, "--out", fitted, "--quiet") == 0
    new = pd.DataFrame({"pig": ["p30", "p99", "p30"], "week": [9, 4, 4], "weight": [None, 30.0, None]})
    new.to_csv(tmp_path / "new.csv", index=False)
    assert run("predict", spec, "--data", tmp_path / "new.csv", "--out", tmp_path / "new_pred.csv", "--quiet") == 0
    got = pd.read_csv(tmp_path / "new_pred.csv", dtype={"pig": str})
    assert got["row"].tolist() == [2, 3] and got["pig"].tolist() == ["p99", "p30"]  # week 9 is filtered out
    assert got["unseen@pig"].tolist() == [True, False]
    old = pd.read_csv(fitted, dtype={"pig": str})
    week4 = old[(old["pig"] == "p30")].iloc[3]
    assert got.loc[1, "eta"] == pytest.approx(week4["eta"], rel=1e-12)
    assert got.loc[0, "resid"] == pytest.approx(30.0 - got.loc[0, "xb"], rel=1e-12)
