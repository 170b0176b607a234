"""A covariate of numbers with a stray text cell is refused by name, not silently turned into a category."""

from __future__ import annotations

from tests.data_safety.cli_run import ROWS, run, spec_for


def _rows_with_x(folder, cells: list[str]) -> None:
    lines = ROWS.splitlines()
    body = [",".join([line.split(",")[0], cell, line.split(",")[2]]) for line, cell in zip(lines[1:], cells, strict=True)]
    (folder / "d.csv").write_text("\n".join([lines[0], *body]) + "\n")


def test_one_text_cell_in_a_numeric_covariate_is_named_with_the_cell(folder, capsys):
    _rows_with_x(folder, ["2", "3", "1", "5", "2", "1", "abc", "2"])
    lines = (folder / "d.csv").read_text().splitlines()
    # ten numbers and one stray cell: at least 90% numbers
    (folder / "d.csv").write_text("\n".join(lines + ["1.1,3,5", "0.4,2,5", "2.0,6,6"]) + "\n")
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert problem.startswith("model.yaml:7:8: fixed: column 'x' holds numbers except 1 of its 11 values, e.g. 'abc'")
    assert "fix those cells" in problem


def test_a_text_covariate_of_labels_stays_a_category(folder, capsys):
    _rows_with_x(folder, ["a", "b", "a", "c", "b", "a", "c", "b"])
    outcome = run(folder, capsys, spec_for("d.csv"))
    assert outcome.code == 0, outcome.err


def test_a_mostly_text_column_with_a_few_numbers_stays_a_category(folder, capsys):
    _rows_with_x(folder, ["a", "b", "1", "c", "b", "a", "c", "b"])
    assert run(folder, capsys, spec_for("d.csv")).code == 0
