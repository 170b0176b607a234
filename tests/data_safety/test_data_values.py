"""Values the model cannot use: named by column and key, counted; missing values dropped and counted right."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from mlmrun.pipeline import prepare
from tests.data_safety.cli_run import ROWS, run, spec_for


def _write(folder, text: str) -> None:
    (folder / "d.csv").write_text(text)


def test_missing_values_are_dropped_and_counted(folder, capsys):
    rows = ROWS.splitlines()
    rows[2] = "2.5,,1"      # x missing
    rows[4] = ",5,2"        # y missing
    rows[6] = "0.7,4,"      # g missing (row 7)
    rows[7] = "2.2,2,4"
    _write(folder, "\n".join(rows + ["NA,NA,NA", "1.5,3,4"]) + "\n")
    outcome = run(folder, capsys, spec_for("d.csv"))
    assert outcome.code == 0, outcome.err
    assert "6 rows used (4 dropped for missing values) of 10 read" in outcome.out
    model = prepare("model.yaml").model
    assert model.n == 6 and model.n_dropped_missing == 4 and model.levels[0].n_units == 4


def test_all_missing_data_names_each_column_and_its_count(folder, capsys):
    _write(folder, "y,x,g,unused\n,1,1,\n,,1,\n,3,,\n")
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert "data: no rows left after dropping rows with a missing value" in problem
    assert "(of 3 rows): 'y' (responses.0.name) 3 missing, 'x' (fixed) 1 missing, 'g' (levels.0.id) 1 missing" in problem
    assert "unused" not in problem


@pytest.mark.parametrize(("cell", "count"), [("inf", 1), ("-inf", 1), ("Infinity", 1)])
def test_infinite_covariate_values_are_named_not_called_rank_deficient(folder, capsys, cell, count):
    _write(folder, ROWS.replace("3.1,1,2", f"3.1,{cell},2"))
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert problem.startswith("model.yaml:7:8: fixed: column 'x' has 1 infinite value (inf or -inf) of 8")
    assert "rank deficient" not in problem


def test_infinite_values_are_counted_per_column(folder, capsys):
    _write(folder, ROWS.replace("3.1,1,2", "inf,-inf,2").replace("4.2,5,2", "4.2,inf,2"))
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert "fixed: column 'x' has 2 infinite values" in problem
    assert "responses.0.name: column 'y' has 1 infinite value" in problem


@pytest.mark.parametrize(("key", "family"), [("trials", "binomial"), ("offset", "poisson"), ("exposure", "poisson")])
@pytest.mark.parametrize("command", ["validate", "fit"])
def test_non_numeric_trials_offset_exposure(folder, capsys, key, family, command):
    rows = ["y,x,g,n"] + [f"{j % 2},{j % 3},{j // 2},{'many' if j == 3 else 2}" for j in range(8)]
    _write(folder, "\n".join(rows) + "\n")
    spec = spec_for("d.csv").replace("family: gaussian", f"family: {family}, {key}: n")
    problem = run(folder, capsys, spec, command).problem()
    assert f"responses.0.{key}: column 'n' must be numeric; 1 of its values is not a number, e.g. 'many'" in problem
    assert not (folder / "out").exists()


def test_infinite_offset_is_named(folder, capsys):
    rows = ["y,x,g,n"] + [f"{j % 2},{j % 3},{j // 2},{'-inf' if j == 3 else 0.5}" for j in range(8)]
    _write(folder, "\n".join(rows) + "\n")
    spec = spec_for("d.csv").replace("family: gaussian", "family: poisson, offset: n")
    assert "column 'n' has 1 infinite value" in run(folder, capsys, spec).problem()


def _ids_frame(ids: list[object]) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(ROWS))
    frame["g"] = ids
    return frame


@pytest.mark.parametrize(("ids", "units"), [
    (["1", "1.0", "01", "2", " 2", "2.00", "3", "3"], {"1": 3, "2": 3, "3": 2}),
    ([1, 1, 1, 2, 2, 2, 3, 3], {"1": 3, "2": 3, "3": 2}),
    ([1.0, 1.0, 1.0, 10.0, 10.0, 10.0, 2.0, 2.0], {"1": 3, "2": 2, "10": 3}),
    (["a", "a", "a", "b", "b", "b", "01", "1"], {"a": 3, "b": 3, "01": 1, "1": 1}),
])
def test_ids_equal_as_numbers_are_one_unit(folder, capsys, ids, units):
    _ids_frame(ids).to_parquet(folder / "d.parquet")
    outcome = run(folder, capsys, spec_for("d.parquet"))
    assert outcome.code == 0, outcome.err
    level = prepare("model.yaml").model.levels[0]
    assert dict(zip(level.labels, level.sizes().tolist(), strict=True)) == units
    expected_codes = [sorted(units, key=list(level.labels).index).index(str(k)) if str(k) in units else None
                      for k in ids]
    if all(c is not None for c in expected_codes):
        np.testing.assert_array_equal(level.codes, expected_codes)


def test_text_ids_that_are_numbers_fit_like_numeric_ids(folder, capsys):
    numeric = [1, 1, 2, 2, 3, 3, 4, 4]
    _ids_frame(numeric).to_parquet(folder / "a.parquet")
    _ids_frame(["1", "1.0", "02", "2", "3", "3", "04", "4"]).to_parquet(folder / "b.parquet")
    (folder / "model.yaml").write_text(spec_for("a.parquet"))
    first = prepare("model.yaml").model
    (folder / "model.yaml").write_text(spec_for("b.parquet"))
    second = prepare("model.yaml").model
    np.testing.assert_array_equal(first.levels[0].codes, second.levels[0].codes)
    assert first.levels[0].n_units == second.levels[0].n_units == 4


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_a_single_unit_at_a_level_with_a_variance_is_refused(folder, capsys, command):
    _write(folder, ROWS.replace(",2\n", ",1\n").replace(",3\n", ",1\n").replace(",4\n", ",1\n"))
    problem = run(folder, capsys, spec_for("d.csv"), command).problem()
    assert problem.startswith("model.yaml:4:19: levels.0.id: level 'g' (column 'g') has a single unit")
    assert "(g = '1')" in problem


def test_a_single_unit_after_dropping_missing_rows_is_refused(folder, capsys):
    _write(folder, ROWS.replace("3.1,1,2", "3.1,,2").replace("4.2,5,2", ",5,2")
           .replace("5.0,2,3", "5.0,2,").replace("1.3,1,3", "1.3,1,").replace(",4\n", ",\n"))
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert "levels.0.id: level 'g' (column 'g') has a single unit in the rows used" in problem


def test_text_ids_in_a_stata_file_are_one_unit_when_equal_as_numbers(folder, capsys):
    _ids_frame(["1", "1.0", "01", "2", "02", "2", "3", "3"]).to_stata(folder / "d.dta", write_index=False)
    outcome = run(folder, capsys, spec_for("d.dta"))
    assert outcome.code == 0, outcome.err
    assert "g (3 units)" in outcome.out
