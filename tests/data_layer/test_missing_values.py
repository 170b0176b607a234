"""Rows with a missing value in any column the model uses are dropped, counted, and reported.

Every column kind is covered: response, covariate, level id, binomial trials,
offset, exposure, variance_by and select columns. The test blanks cells of a
copy of a shipped dataset and computes by itself which rows must go; a fit on
the blanked data must equal a fit on the data with those rows deleted by the
test, and results.json and the report must say how many rows were used and
dropped.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from mlmrun import cli
from tests.conftest import SPECS, write_spec

BLANK_ROWS = (0, 5, 17, 40, 41)


def read_rows(name: str) -> tuple[list[str], list[dict[str, str]]]:
    with (SPECS / "data" / name).open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return path


def blanked(rows: list[dict[str, str]], column: str, where: tuple[int, ...] = BLANK_ROWS) -> list[dict[str, str]]:
    return [dict(r, **{column: ""}) if i in where else dict(r) for i, r in enumerate(rows)]


def validate_counts(spec: Path, capsys) -> tuple[int, int, int]:
    """(rows used, rows dropped, rows read) as `mlmrun validate` prints them."""
    assert cli.main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    m = re.search(r"(\d+) rows used \((\d+) dropped for missing values\) of (\d+) read", out)
    assert m, out
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def fit(spec: Path, out: Path) -> dict:
    assert cli.main(["fit", str(spec), "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "results.json").read_text())


def pig_with_extras() -> tuple[list[str], list[dict[str, str]]]:
    """pig.csv plus a category for variance_by (week parity) and an exposure/offset pair."""
    header, rows = read_rows("pig.csv")
    for r in rows:
        r["half"] = "odd" if int(r["week"]) % 2 else "even"
    return header + ["half"], rows


PIG_SPEC = """name: pig_missing
data: {{path: data/{csv}}}
levels:
  - {{name: pig, id: id}}
responses:
  - {{name: weight, family: gaussian{extra}}}
fixed: "weight ~ week"
random:
  - {{level: pig, terms: [1]}}
estimation: {{method: ML}}
"""


@pytest.mark.parametrize("column,extra", [("weight", ""), ("week", ""), ("id", ""), ("half", ", variance_by: half")])
def test_missing_value_in_a_gaussian_model_drops_the_row_and_counts_it(spec_dir, tmp_path, capsys, column, extra):
    header, rows = pig_with_extras()
    write_rows(spec_dir / "data" / "blank.csv", header, blanked(rows, column))
    write_rows(spec_dir / "data" / "deleted.csv", header, [r for i, r in enumerate(rows) if i not in BLANK_ROWS])
    blank = write_spec(spec_dir, PIG_SPEC.format(csv="blank.csv", extra=extra), "blank.yaml")
    deleted = write_spec(spec_dir, PIG_SPEC.format(csv="deleted.csv", extra=extra), "deleted.yaml")
    n, k = len(rows), len(BLANK_ROWS)
    assert validate_counts(blank, capsys) == (n - k, k, n)
    doc = fit(blank, tmp_path / "blank")
    ref = fit(deleted, tmp_path / "deleted")
    assert doc["data"]["n_rows"] == n and doc["data"]["n_used"] == n - k and doc["n_dropped_missing"] == k
    assert ref["data"]["n_used"] == n - k and ref["n_dropped_missing"] == 0
    assert doc["loglik"] == pytest.approx(ref["loglik"], abs=1e-8)
    assert [p["estimate"] for p in doc["parameters"]] == pytest.approx([p["estimate"] for p in ref["parameters"]],
                                                                       rel=1e-6, abs=1e-8)
    report = (tmp_path / "blank" / "report.md").read_text()
    assert re.search(rf"Rows read\W+{n}\b", report) and re.search(rf"Rows dropped \(missing values\)\W+{k}\b", report)


def test_rows_missing_in_several_columns_are_counted_once(spec_dir, capsys):
    header, rows = pig_with_extras()
    rows = blanked(blanked(rows, "weight", (1, 2, 3)), "week", (3, 4))
    write_rows(spec_dir / "data" / "blank.csv", header, rows)
    spec = write_spec(spec_dir, PIG_SPEC.format(csv="blank.csv", extra=""))
    assert validate_counts(spec, capsys) == (len(rows) - 4, 4, len(rows))


def test_missing_value_in_an_unused_column_drops_nothing(spec_dir, capsys):
    header, rows = pig_with_extras()
    write_rows(spec_dir / "data" / "blank.csv", header, blanked(rows, "half"))
    spec = write_spec(spec_dir, PIG_SPEC.format(csv="blank.csv", extra=""))
    assert validate_counts(spec, capsys) == (len(rows), 0, len(rows))


CBPP_SPEC = """name: cbpp_missing
data: {{path: data/{csv}}}
levels:
  - {{name: herd, id: herd}}
responses:
  - {{{response}}}
fixed: "incidence ~ C(period)"
random:
  - {{level: herd, terms: [1]}}
estimation: {{method: ML, integration: {{method: adaptive, points: 5}}}}
"""
CBPP_RESPONSES = {
    "size": "name: incidence, family: binomial, link: logit, trials: size",
    "exposure": "name: incidence, family: poisson, exposure: exposure",
    "logsize": "name: incidence, family: poisson, offset: logsize",
}


@pytest.mark.parametrize("column", list(CBPP_RESPONSES))
def test_missing_trials_offset_or_exposure_drops_the_row(spec_dir, tmp_path, capsys, column):
    import math

    header, rows = read_rows("cbpp.csv")
    for r in rows:
        r["exposure"] = r["size"]
        r["logsize"] = repr(math.log(float(r["size"])))
    header = header + ["exposure", "logsize"]
    where = (0, 7, 30)
    write_rows(spec_dir / "data" / "blank.csv", header, blanked(rows, column, where))
    write_rows(spec_dir / "data" / "deleted.csv", header, [r for i, r in enumerate(rows) if i not in where])
    blank = write_spec(spec_dir, CBPP_SPEC.format(csv="blank.csv", response=CBPP_RESPONSES[column]), "blank.yaml")
    deleted = write_spec(spec_dir, CBPP_SPEC.format(csv="deleted.csv", response=CBPP_RESPONSES[column]), "del.yaml")
    n, k = len(rows), len(where)
    assert validate_counts(blank, capsys) == (n - k, k, n)
    doc, ref = fit(blank, tmp_path / "blank"), fit(deleted, tmp_path / "deleted")
    assert (doc["data"]["n_used"], doc["n_dropped_missing"]) == (n - k, k)
    assert doc["loglik"] == pytest.approx(ref["loglik"], abs=1e-6)


def test_missing_select_column_drops_the_row(spec_dir, capsys):
    header, rows = read_rows("mresp.csv")
    where = (0, 3, 100, 101)
    write_rows(spec_dir / "data" / "blank.csv", header, blanked(rows, "itemgroup", where))
    spec_text = (SPECS / "mresp.yaml").read_text().replace("data/mresp.csv", "data/blank.csv")
    spec = spec_dir / "mresp.yaml"
    spec.write_text(spec_text)
    n = len(rows)
    assert validate_counts(spec, capsys) == (n - len(where), len(where), n)


def test_no_rows_left_is_a_data_error_naming_the_cause(spec_dir, capsys):
    header, rows = pig_with_extras()
    write_rows(spec_dir / "data" / "blank.csv", header, blanked(rows, "weight", tuple(range(len(rows)))))
    spec = write_spec(spec_dir, PIG_SPEC.format(csv="blank.csv", extra=""))
    assert cli.main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "no rows left after dropping rows with a missing value" in err
    assert "'weight' (responses.0.name) 432 missing" in err
