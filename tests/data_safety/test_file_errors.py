"""A data file that cannot be read is exit 2 naming data.path, never an internal error or a hang."""

from __future__ import annotations

import errno
import io
import os
import signal
import sys

import pandas as pd
import pytest

from tests.data_safety.cli_run import ROWS, run, spec_for

SECRET = "s3cr3t-line-of-the-file"


@pytest.fixture
def alarm():
    """Fail instead of hanging: SIGALRM after 10 s."""

    def timeout(signum, frame):
        raise TimeoutError("the command hung")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_a_folder_named_like_a_data_file(folder, capsys, command):
    (folder / "d.csv").mkdir()
    problem = run(folder, capsys, spec_for("d.csv"), command).problem()
    assert "data.path: d.csv is a folder, not a file" in problem
    assert not (folder / "out").exists()


def test_an_empty_file(folder, capsys):
    (folder / "d.csv").write_text("")
    assert "data.path: d.csv is empty (0 bytes)" in run(folder, capsys, spec_for("d.csv")).problem()


def test_a_file_of_blank_lines_has_no_header(folder, capsys):
    (folder / "d.csv").write_text("\n\n\n")
    assert "d.csv has no header row" in run(folder, capsys, spec_for("d.csv")).problem()


def test_a_fifo_is_refused_without_hanging(folder, capsys, alarm):
    os.mkfifo(folder / "d.csv")
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert "data.path: d.csv is not a regular file" in problem


def test_an_unreadable_file(folder, capsys, monkeypatch):
    (folder / "d.csv").write_text(ROWS)
    os.chmod(folder / "d.csv", 0)
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):  # tests run as root, who reads mode-000 files anyway
        if str(path).endswith("d.csv"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert "data.path: cannot read d.csv: permission denied" in problem


def test_a_path_too_long_for_the_file_system(folder, capsys):
    name = "a" * 300 + ".csv"
    problem = run(folder, capsys, spec_for(name)).problem()
    assert "data.path" in problem and "too long" in problem and "a" * 300 not in problem


def test_parquet_without_an_engine(folder, capsys, monkeypatch):
    (folder / "d.parquet").write_bytes(b"PAR1" + b"\0" * 16 + b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    problem = run(folder, capsys, spec_for("d.parquet")).problem()
    assert "data.path: reading Parquet (d.parquet) needs the pyarrow package" in problem


def test_parquet_is_read_with_pyarrow(folder, capsys):
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(io.StringIO(ROWS))
    frame.to_parquet(folder / "d.PARQUET")
    outcome = run(folder, capsys, spec_for("d.PARQUET"))
    assert outcome.code == 0 and "8 rows used" in outcome.out and "g (4 units)" in outcome.out


def test_a_text_file_named_parquet_is_not_quoted(folder, capsys):
    (folder / "d.parquet").write_text(f"y,x,g\n{SECRET},1,1\n")
    problem = run(folder, capsys, spec_for("d.parquet")).problem()
    assert "data.path: cannot read d.parquet as parquet" in problem and SECRET not in problem


def test_text_that_is_not_utf8(folder, capsys):
    (folder / "d.csv").write_bytes(b"y,x,g\n1,2,\xff\xfe\n")
    assert "d.csv is not UTF-8 text" in run(folder, capsys, spec_for("d.csv")).problem()


def test_a_stata_file_that_is_not_one_is_not_quoted(folder, capsys):
    (folder / "d.dta").write_text(f"{SECRET}\n" * 20)
    problem = run(folder, capsys, spec_for("d.dta")).problem()
    assert "data.path: cannot read d.dta as dta" in problem and SECRET not in problem


def test_header_only_data_names_the_columns(folder, capsys):
    (folder / "d.csv").write_text("y,x,g\n")
    problem = run(folder, capsys, spec_for("d.csv")).problem()
    assert "d.csv has a header (columns are 'y', 'x', 'g') but no data rows" in problem


def test_filters_that_keep_no_row(folder, capsys):
    (folder / "d.csv").write_text(ROWS)
    spec = spec_for("d.csv").replace("data: {path: d.csv}", "data: {path: d.csv, filter: [{column: x, op: '>', value: 99}]}")
    problem = run(folder, capsys, spec).problem()
    assert "data.filter: no row satisfies every filter (of 8 rows read)" in problem
