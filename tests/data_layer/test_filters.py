"""Row filters: every operator keeps exactly the rows the comparison holds for, boundary values included.

The expected rows are decided by Python's own comparison operators on values
read with the csv module, independently of the loader (pandas).
"""

from __future__ import annotations

import csv
import operator
from pathlib import Path

import pytest

from mlmrun import cli
from mlmrun.data.load import load_data
from mlmrun.errors import DataError
from mlmrun.spec.model import DataSpec
from tests.conftest import SPECS, write_spec

PY_OPS = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt,
          "<=": operator.le}
ROWS = [(1, 1.0, "a"), (2, 2.0, "b"), (3, 3.0, "b"), (4, 3.0, "c"), (5, 3.5, "c"), (6, 4.0, "d"), (7, -1.0, "b")]


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "t.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "x", "s"])
        w.writerows(ROWS)
    return path


def _kept(path: Path, column: str, op: str, value) -> list[int]:
    """The rows a filter keeps; a filter that keeps none is a DataError, read here as the empty list."""
    spec = DataSpec(path=path.name, filter=[{"column": column, "op": op, "value": value}])
    try:
        return load_data(spec, path.parent).frame["row"].tolist()
    except DataError as exc:
        assert "no row satisfies every filter" in str(exc)
        return []


def _expected(column: str, op: str, value) -> list[int]:
    pos = {"x": 1, "s": 2}[column]
    return [r[0] for r in ROWS if PY_OPS[op](r[pos], value)]


@pytest.mark.parametrize("op", list(PY_OPS))
@pytest.mark.parametrize("value", [3, 3.0, 3.5, 0, 10])
def test_numeric_filter_keeps_exactly_the_rows_where_it_holds(table, op, value):
    expected = _expected("x", op, value)
    assert _kept(table, "x", op, value) == expected


@pytest.mark.parametrize("op", list(PY_OPS))
@pytest.mark.parametrize("value", ["b", "c", "bb", "a"])
def test_string_filter_keeps_exactly_the_rows_where_it_holds(table, op, value):
    assert _kept(table, "s", op, value) == _expected("s", op, value)


def test_boundary_value_is_kept_by_le_and_ge_and_dropped_by_lt_and_gt(table):
    """The value 3.0 occurs twice: <= and >= keep both rows, < and > drop both."""
    assert _kept(table, "x", "<=", 3) == [1, 2, 3, 4, 7]
    assert _kept(table, "x", ">=", 3) == [3, 4, 5, 6]
    assert _kept(table, "x", "<", 3) == [1, 2, 7]
    assert _kept(table, "x", ">", 3) == [5, 6]


def test_several_filters_must_all_hold(table):
    spec = DataSpec(path=table.name, filter=[{"column": "x", "op": ">=", "value": 2},
                                            {"column": "s", "op": "!=", "value": "c"}])
    assert load_data(spec, table.parent).frame["row"].tolist() == [2, 3, 6]


def _exam_rows(predicate) -> int:
    with (SPECS / "data" / "exam.csv").open() as fh:
        return sum(predicate(int(r["nstu"])) for r in csv.DictReader(fh))


@pytest.mark.parametrize("op", list(PY_OPS))
def test_filters_through_the_cli_count_the_rows_read(spec_dir, capsys, op):
    """`mlmrun validate` on the exam data filtered on nstu at a value that occurs: rows read as the csv says."""
    boundary = 37
    assert _exam_rows(lambda v: v == boundary) > 0
    spec = write_spec(spec_dir, f"""name: exam_filtered
data:
  path: data/exam.csv
  filter: [{{column: nstu, op: "{op}", value: {boundary}}}]
levels:
  - {{name: school, id: school}}
responses:
  - {{name: gcse, family: gaussian}}
fixed: "gcse ~ lrt"
random:
  - {{level: school, terms: [1]}}
""")
    assert cli.main(["validate", str(spec)]) == 0
    n = _exam_rows(lambda v: PY_OPS[op](v, boundary))
    assert f" {n} rows used (0 dropped for missing values) of {n} read" in capsys.readouterr().out
