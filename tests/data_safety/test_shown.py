"""Excerpts of file values and shown paths: short, printable, relative to the working directory."""

from __future__ import annotations

from pathlib import Path

from mlmrun.data.shown import EXCERPT_CHARS, columns_hint, excerpt, shown_path


def test_an_excerpt_is_short_quoted_and_printable():
    assert excerpt("abc") == "'abc'"
    long = excerpt("x" * 500)
    assert long == "'" + "x" * EXCERPT_CHARS + "...'"
    assert excerpt("a\nb\x1b[31m\x00") == "'a\\nb\\x1b[31m\\x00'"
    assert excerpt("it's") == "'it\\'s'"
    assert excerpt("\u2028") == "'\\u2028'"


def test_a_column_hint_lists_a_few_names():
    hint = columns_hint([f"c{j}" for j in range(20)])
    assert hint.startswith("columns are 'c0', 'c1'") and hint.endswith("and 8 more") and "'c12'" not in hint


def test_paths_are_relative_inside_the_working_directory_and_absolute_outside(tmp_path, monkeypatch):
    (tmp_path / "work" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    assert shown_path(tmp_path / "work" / "data" / "d.csv") == str(Path("data") / "d.csv")
    assert shown_path("data/d.csv") == "data/d.csv"
    assert shown_path(tmp_path / "elsewhere.csv") == str(tmp_path / "elsewhere.csv")
    assert shown_path("../elsewhere.csv") == str(tmp_path / "elsewhere.csv")
    assert "\n" not in shown_path("data/a\nb.csv")
