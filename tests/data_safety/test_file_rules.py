"""Which files a spec may read: data extensions only, nothing hidden, never a file's lines in a message."""

from __future__ import annotations

import json
import os

import pytest

from mlmrun import cli
from mlmrun.pipeline import prepare
from tests.data_safety.cli_run import ROWS, run, spec_for

SECRET = "ghp_TOPSECRETTOKEN1234567890"
GIT_CONFIG = f'[core]\n\trepositoryformatversion = 0\n[http]\n\textraheader = AUTHORIZATION: basic {SECRET}\n'


@pytest.mark.parametrize("path", [".git/config", ".git/x.csv", ".env.csv", "data/.cache/d.csv", "data/../.git/x.csv"])
def test_hidden_files_and_folders_are_refused_without_quoting_them(folder, capsys, path):
    for hidden in (".git/config", ".git/x.csv", ".env.csv", "data/.cache/d.csv"):
        (folder / hidden).parent.mkdir(parents=True, exist_ok=True)
        (folder / hidden).write_text(GIT_CONFIG)
    problem = run(folder, capsys, spec_for(path)).problem()
    assert problem.startswith("model.yaml:2:14: data.path:") and "hidden" in problem
    assert SECRET not in problem and "extraheader" not in problem and "[core]" not in problem


@pytest.mark.parametrize("name", ["notes.txt", "config", "data.csv.bak", "results.json"])
def test_files_without_a_data_extension_are_refused(folder, capsys, name):
    (folder / name).write_text(f"y,x,g\n{SECRET},1,1\n")
    problem = run(folder, capsys, spec_for(name)).problem()
    assert "data.path" in problem and ".csv, .tsv, .parquet, .dta" in problem and SECRET not in problem


def test_a_symlink_with_a_data_extension_to_another_file_is_refused(folder, capsys):
    (folder / "secret.txt").write_text(GIT_CONFIG)
    os.symlink("secret.txt", folder / "d.csv")
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert "leads to a file with the extension '.txt'" in problem and SECRET not in problem


@pytest.mark.parametrize("name", ["D.CSV", "d.Csv"])
def test_extensions_are_checked_in_any_case(folder, capsys, name):
    (folder / name).write_text(ROWS)
    outcome = run(folder, capsys, spec_for(name))
    assert outcome.code == 0 and "8 rows used" in outcome.out


def test_tsv_files_are_read_with_tabs(folder, capsys):
    (folder / "d.TSV").write_text(ROWS.replace(",", "\t"))
    outcome = run(folder, capsys, spec_for("d.TSV"))
    assert outcome.code == 0 and "8 rows used" in outcome.out and "g (4 units)" in outcome.out


def test_long_cell_values_are_shortened_and_control_characters_escaped(folder, capsys):
    value = "\x1b[2J" + "A" * 60 + SECRET
    rows = [line + ",2" for line in ROWS.splitlines()[1:]] + [f"1,1,5,{value}"]
    (folder / "d.csv").write_text("\n".join(["y,x,g,n", *rows]) + "\n")
    spec = spec_for("d.csv").replace("family: gaussian", "family: binomial, trials: n")
    problem = run(folder, capsys, spec).problem()
    assert "responses.0.trials: column 'n' must be numeric; 1 of its values is not a number" in problem
    assert "\x1b" not in problem and "'\\x1b[2J" + "A" * 36 + "...'" in problem
    assert SECRET not in problem


def test_column_names_in_hints_are_excerpts(folder, capsys):
    header = ",".join(["y", "x", "\x07" + "c" * 80 + SECRET] + [f"col{j}" for j in range(30)])
    (folder / "d.csv").write_text(header + "\n" + ",".join(["1"] * 33) + "\n")
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert "levels.0.id: column 'g' is not in the data" in problem
    assert SECRET not in problem and "\x07" not in problem and "col29" not in problem and "more" in problem


def test_paths_in_messages_are_relative_to_the_working_directory(folder, capsys):
    (folder / "data").mkdir()
    problem = run(folder, capsys, spec_for("data/missing.csv")).problem()
    assert "data file not found: data/missing.csv" in problem


def test_outside_the_working_directory_a_path_is_shown_absolute(folder, capsys, monkeypatch):
    (folder / "spec").mkdir()
    (folder / "work").mkdir()
    (folder / "spec" / "model.yaml").write_text(spec_for("gone.csv"))
    monkeypatch.chdir(folder / "work")
    assert cli.main(["validate", "../spec/model.yaml"]) == 2
    err = capsys.readouterr().err
    assert f"data file not found: {folder.resolve() / 'spec' / 'gone.csv'}" in err


@pytest.mark.parametrize(("name", "content", "expected"), [
    (".git/prev.json", GIT_CONFIG, "hidden"),
    ("prev.txt", GIT_CONFIG, "extension '.txt'"),
    ("prev.json", GIT_CONFIG, "invalid JSON at line 1"),
    ("prev.json", json.dumps({"parameters": [{"name": "x", "estimate": SECRET}]}), "entry 0 of 'parameters'"),
    ("prev.json", json.dumps({"parameters": SECRET}), "no 'parameters' list"),
    ("prev.json", "", "is empty"),
])
def test_start_from_obeys_the_same_rules_and_never_quotes_the_file(folder, capsys, name, content, expected):
    (folder / "d.csv").write_text(ROWS)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(content)
    problem = run(folder, capsys, spec_for("d.csv") + f"estimation: {{start_from: {name}}}\n").problem()
    assert "estimation.start_from" in problem and expected in problem
    assert SECRET not in problem and "extraheader" not in problem


def test_start_from_a_results_file_still_sets_start_values(folder, capsys):
    (folder / "d.csv").write_text(ROWS)
    (folder / "prev.json").write_text(json.dumps({"parameters": [{"name": "x", "estimate": 0.25}]}))
    (folder / "model.yaml").write_text(spec_for("d.csv") + "estimation: {start_from: prev.json}\n")
    partable = prepare("model.yaml").model.partable
    assert partable.start_values[list(partable.names).index("x")] == 0.25
