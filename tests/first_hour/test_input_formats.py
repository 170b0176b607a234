"""The first hour: Parquet and Stata files read out of the box; a text binomial response with `success:`."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.pipeline import prepare
from tests.conftest import SPECS, write_spec

HSB = """\
name: hsb_minority
data: {path: data/hsb.DATA}
levels:
  - {name: school, id: school}
responses:
  - {name: minrty, family: binomial SUCCESS}
fixed: "minrty ~ ses + sector"
random:
  - {level: school, terms: [1]}
estimation: {method: ML, integration: {method: laplace}}
"""


def _hsb() -> pd.DataFrame:
    return pd.read_csv(SPECS / "data" / "hsb82.csv")


def _spec(folder: Path, data_name: str, success: str = "", name: str = "model.yaml") -> Path:
    text = HSB.replace("hsb.DATA", data_name).replace(" SUCCESS", f", success: {success}" if success else "")
    return write_spec(folder, text, name)


def test_parquet_file_reads_as_the_same_table_as_its_csv(tmp_path):
    (tmp_path / "data").mkdir()
    frame = _hsb()
    frame.assign(minrty=(frame["minrty"] == "Yes").astype(int)).to_parquet(tmp_path / "data" / "hsb.parquet")
    frame.assign(minrty=(frame["minrty"] == "Yes").astype(int)).to_csv(tmp_path / "data" / "hsb.csv", index=False)
    from_parquet = prepare(_spec(tmp_path, "hsb.parquet")).model
    from_csv = prepare(_spec(tmp_path, "hsb.csv", name="csv.yaml")).model
    assert from_parquet.n == from_csv.n == len(frame)
    np.testing.assert_array_equal(from_parquet.y, from_csv.y)
    np.testing.assert_array_equal(from_parquet.X, from_csv.X)


def test_success_label_gives_the_zero_one_response_of_recoding_by_hand(tmp_path):
    (tmp_path / "data").mkdir()
    frame = _hsb()
    frame.to_csv(tmp_path / "data" / "hsb.csv", index=False)
    model = prepare(_spec(tmp_path, "hsb.csv", "Yes")).model
    np.testing.assert_array_equal(model.y, (frame["minrty"] == "Yes").to_numpy(dtype=float))
    flipped = prepare(_spec(tmp_path, "hsb.csv", "No", name="no.yaml")).model
    np.testing.assert_array_equal(flipped.y, (frame["minrty"] == "No").to_numpy(dtype=float))


def _write_dta(frame: pd.DataFrame, path: Path, labels: dict[str, dict[int, str]]) -> None:
    """A .dta with value labels as Stata writes them (numeric codes plus a label table per column)."""
    buffer = io.BytesIO()
    frame.to_stata(buffer, write_index=False, value_labels=labels, version=118)
    path.write_bytes(buffer.getvalue())


def test_stata_labelled_response_is_numeric_and_labelled_covariate_is_a_category(tmp_path):
    (tmp_path / "data").mkdir()
    frame = _hsb()
    codes = frame.assign(minrty=(frame["minrty"] == "Yes").astype(np.int8),
                         sector=(frame["sector"] == "Catholic").astype(np.int8))
    codes = codes[["school", "minrty", "ses", "sector"]]
    _write_dta(codes, tmp_path / "data" / "hsb.dta", {"minrty": {0: "No", 1: "Yes"}, "sector": {0: "Public", 1: "Catholic"}})
    model = prepare(_spec(tmp_path, "hsb.dta")).model
    np.testing.assert_array_equal(model.y, codes["minrty"].to_numpy(dtype=float))
    assert "sector[T.Catholic]" in model.x_names
    column = model.X[:, model.x_names.index("sector[T.Catholic]")]
    np.testing.assert_array_equal(column, codes["sector"].to_numpy(dtype=float))
    by_label = prepare(_spec(tmp_path, "hsb.dta", "Yes", name="label.yaml")).model
    np.testing.assert_array_equal(by_label.y, model.y)


@pytest.mark.parametrize("success, fragment", [
    ("Maybe", "'Maybe' is not a value of column 'minrty'"),
])
def test_unknown_success_label_is_refused_with_the_values_there_are(tmp_path, capsys, success, fragment):
    from mlmrun import cli

    shutil.copytree(SPECS / "data", tmp_path / "data")
    spec = _spec(tmp_path, "hsb82.csv", success)
    assert cli.main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "'No', 'Yes'" in err
