"""Invalid specs and data: exit 2, every problem as FILE:LINE:COL: what is wrong; what to write instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlmrun import cli
from tests.report.fakes import SPECS

LOCATED = re.compile(r"^(?P<file>.+\.yaml):(?P<line>\d+):(?P<col>\d+): (?P<what>.+)$")

BASE = """\
# yaml-language-server: $schema=../schemas/mlmrun.schema.json
name: errors
data: {path: pig.csv}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1, week], covariance: independent}
estimation: {method: ML}
"""


def _run(tmp_path: Path, text: str, capsys, command: str = "validate") -> list[str]:
    """Run the CLI on a spec next to pig.csv (with a text column `label`); return its stderr lines."""
    lines = (SPECS / "data" / "pig.csv").read_text().splitlines()
    rows = [lines[0] + ",label"] + [f"{line},p{line.split(',')[0]}" for line in lines[1:]]
    (tmp_path / "pig.csv").write_text("\n".join(rows) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    args = [command, str(spec)] + (["--out", str(tmp_path / "out")] if command == "fit" else [])
    assert cli.main(args) == 2
    assert not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if not line.startswith("mlmrun: ")]


def _located(line: str) -> tuple[int, int, str]:
    match = LOCATED.match(line)
    assert match, f"not FILE:LINE:COL: {line}"
    return int(match["line"]), int(match["col"]), match["what"]


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_unknown_key_with_did_you_mean(tmp_path, capsys, command):
    (problem,) = _run(tmp_path, BASE.replace("{method: ML}", "{metod: ML}"), capsys, command)
    assert _located(problem) == (11, 14, "estimation.metod: unknown key 'metod'; did you mean 'method'?")


def test_wrong_type(tmp_path, capsys):
    (problem,) = _run(tmp_path, BASE.replace("{method: ML}", "{method: ML, max_iter: lots}"), capsys)
    line, col, what = _located(problem)
    assert (line, col) == (11, 36)
    assert what == "estimation.max_iter: expected a whole number, got 'lots'; write a whole number, e.g. `max_iter: 10`"


def test_every_problem_is_listed(tmp_path, capsys):
    text = BASE.replace("family: gaussian", "family: gausian").replace("{method: ML}", "{metod: ML}")
    problems = _run(tmp_path, text + "reprot: {dir: x}\n", capsys)
    assert [_located(p)[:2] for p in problems] == [(7, 28), (11, 14), (12, 1)]
    assert "write one of 'gaussian'" in problems[0]
    assert "did you mean 'report'?" in problems[2]


@pytest.mark.parametrize(("old", "new", "where"), [
    ("weight ~ week", "weight ~ wek", (8, 8)),
    ("terms: [1, week]", "terms: [1, weeks]", (10, 25)),
])
def test_unknown_column_is_located_with_did_you_mean(tmp_path, capsys, old, new, where):
    (problem,) = _run(tmp_path, BASE.replace(old, new), capsys)
    line, col, what = _located(problem)
    assert (line, col) == where
    assert "is not in the data; did you mean 'week'?" in what


def test_level_not_nested_suggests_within_parent_or_crossed(tmp_path, capsys):
    text = BASE.replace("  - {name: pig, id: id}\n", "  - {name: occasion, id: week}\n  - {name: pig, id: id}\n")
    (problem,) = _run(tmp_path, text, capsys)
    line, col, what = _located(problem)
    assert (line, col) == (5, 26)  # the value of levels.0.id
    assert "is not nested in level 'pig'" in what
    assert "within_parent: true" in what and "crossed: true" in what


def test_non_numeric_response(tmp_path, capsys):
    text = BASE.replace("weight ~ week", "label ~ week").replace("{name: weight,", "{name: label,")
    (problem,) = _run(tmp_path, text, capsys)
    line, col, what = _located(problem)
    assert (line, col) == (7, 5)
    assert "response column 'label' must be numeric" in what


@pytest.mark.parametrize("formula", [
    "weight ~ open(week)",
    "weight ~ __import__('os').system('touch PWNED')",
    "weight ~ week.__class__",
    "weight ~ np.exp(week)",
])
def test_formula_functions_outside_the_allowed_list_are_rejected_unevaluated(tmp_path, capsys, monkeypatch, formula):
    monkeypatch.chdir(tmp_path)
    text = BASE.replace('fixed: "weight ~ week"', f'fixed: "{formula}"')
    (problem,) = _run(tmp_path, text, capsys)
    line, col, what = _located(problem)
    assert (line, col) == (8, 8)
    assert what.startswith("fixed: ") and ("not allowed" in what or "cannot parse formula" in what)
    assert not (tmp_path / "PWNED").exists()


def test_invalid_yaml_is_located(tmp_path, capsys):
    (problem,) = _run(tmp_path, BASE.replace("levels:\n", "levels:\n - {name: pig\n"), capsys)
    line, _, what = _located(problem)
    assert line >= 5 and "not valid YAML" in what


def test_missing_data_file_is_located(tmp_path, capsys):
    (problem,) = _run(tmp_path, BASE.replace("pig.csv", "pigs.csv"), capsys)
    line, _, what = _located(problem)
    assert line == 3 and "data file not found" in what


def test_text_column_where_a_number_is_needed(tmp_path, capsys):
    (problem,) = _run(tmp_path, BASE.replace("terms: [1, week]", "terms: [1, label]"), capsys)
    line, _, what = _located(problem)
    assert line == 10 and "column 'label' must be numeric" in what
