"""Where `fit` writes: report.dir confined like data.path, and the folder checked before any fitting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlmrun import cli
from mlmrun.io import OUTPUT_FILES
from tests.cli_safety.helpers import PIG_SPEC, located, run_cli
from tests.conftest import write_spec
from tests.report.fakes import SPECS, fake_fit


@pytest.fixture
def fits(monkeypatch):
    """Replace estimation by a hand-made FitResult for pig_slope; the list records every call."""
    calls: list[object] = []

    def estimate(model, progress=None):
        from mlmrun.pipeline import prepare

        calls.append(model)
        return fake_fit(prepare(SPECS / "pig_slope.yaml"))

    monkeypatch.setattr(cli, "estimate", estimate)
    return calls


def _spec_with_report_dir(folder: Path, report_dir: str) -> tuple[Path, int, int]:
    spec = write_spec(folder, PIG_SPEC + f"report: {{dir: {report_dir}}}\n")
    line = len(spec.read_text().splitlines())
    return spec, line, len("report: {dir: ") + 1


@pytest.mark.parametrize("report_dir", ["../escaped", "/tmp/mlmrun-escaped", "sub/../../escaped", "link/out"])
def test_report_dir_outside_the_spec_folder_and_working_directory_is_refused(spec_dir, capsys, fits, monkeypatch,
                                                                             report_dir):
    monkeypatch.chdir(spec_dir)
    (spec_dir / "link").symlink_to(spec_dir.parent)
    spec, line, col = _spec_with_report_dir(spec_dir, report_dir)
    for command in (["fit", str(spec)], ["validate", str(spec)]):
        code, _, err = run_cli(command, capsys)
        assert code == 2
        ((at_line, at_col, what),) = located(err, "model.yaml")
        assert (at_line, at_col) == (line, col)
        assert what.startswith(f"report.dir: {report_dir!r} is outside the working directory and the spec's folder")
        assert "--allow-outside-data" in what
    assert fits == []
    assert not (spec_dir.parent / "escaped").exists() and not Path("/tmp/mlmrun-escaped/results.json").exists()


def test_report_dir_inside_the_spec_folder_works_from_another_directory(spec_dir, capsys, fits, monkeypatch, tmp_path):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec, _, _ = _spec_with_report_dir(spec_dir, str(spec_dir / "results"))
    assert run_cli(["fit", str(spec), "--quiet"], capsys)[0] == 2  # absolute: refused even inside
    spec, _, _ = _spec_with_report_dir(spec_dir, "../results")  # relative to the working directory
    assert run_cli(["fit", str(spec), "--quiet"], capsys)[0] == 0
    assert {p.name for p in (spec_dir / "results").iterdir()} == set(OUTPUT_FILES)


def test_allow_outside_data_and_out_lift_the_confinement(spec_dir, capsys, fits, monkeypatch):
    work = spec_dir / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    spec, _, _ = _spec_with_report_dir(spec_dir / "data", "../../escaped")
    (spec_dir / "data" / "data").symlink_to(spec_dir / "data")
    assert run_cli(["fit", str(spec), "--quiet"], capsys)[0] == 2
    assert run_cli(["fit", str(spec), "--quiet", "--allow-outside-data"], capsys)[0] == 0
    assert {p.name for p in (spec_dir.parent / "escaped").iterdir()} == set(OUTPUT_FILES)
    chosen = spec_dir.parent / "chosen"
    assert run_cli(["fit", str(spec), "--quiet", "--out", str(chosen)], capsys)[0] == 0
    assert {p.name for p in chosen.iterdir()} == set(OUTPUT_FILES)


def test_a_file_in_the_way_is_exit_2_before_fitting(spec_dir, capsys, fits):
    (spec_dir / "taken").write_text("not a folder")
    code, _, err = run_cli(["fit", str(write_spec(spec_dir, PIG_SPEC)), "--out", str(spec_dir / "taken")], capsys)
    assert code == 2 and fits == []
    assert "output folder" in err and "taken is an existing file; remove it or choose another folder" in err


def test_a_file_in_the_path_of_the_output_folder_is_exit_2_before_fitting(spec_dir, capsys, fits):
    (spec_dir / "taken").write_text("not a folder")
    code, _, err = run_cli(["fit", str(write_spec(spec_dir, PIG_SPEC)), "--out", str(spec_dir / "taken" / "x")], capsys)
    assert code == 2 and fits == []
    assert "a part of its path is a file" in err


def test_a_folder_named_like_an_output_file_is_exit_2_before_fitting(spec_dir, capsys, fits):
    (spec_dir / "out" / "results.json").mkdir(parents=True)
    code, _, err = run_cli(["fit", str(write_spec(spec_dir, PIG_SPEC)), "--out", str(spec_dir / "out")], capsys)
    assert code == 2 and fits == []
    assert "results.json is a folder, where mlmrun writes the file results.json" in err


def test_report_dir_that_cannot_be_created_points_at_the_key(spec_dir, capsys, fits, monkeypatch):
    monkeypatch.chdir(spec_dir)
    (spec_dir / "taken").write_text("not a folder")
    spec, line, col = _spec_with_report_dir(spec_dir, "taken")
    code, _, err = run_cli(["fit", "model.yaml"], capsys)
    assert code == 2 and fits == []
    ((at_line, at_col, what),) = located(err, "model.yaml")
    assert (at_line, at_col) == (line, col) and what.startswith("report.dir: output folder taken is an existing file")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_folder_is_exit_2_before_fitting(spec_dir, capsys, fits):
    locked = spec_dir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run_cli(["fit", str(write_spec(spec_dir, PIG_SPEC)), "--out", str(locked / "out")], capsys)
    finally:
        locked.chmod(0o755)
    assert code == 2 and fits == []
    assert "cannot create output folder" in err and "Permission denied" in err


def test_probe_write_failure_is_exit_2_before_fitting(spec_dir, capsys, fits, monkeypatch):
    """A folder that exists but refuses new files (read-only mount, quota) is caught by the probe file."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    (spec_dir / "out").mkdir()
    code, _, err = run_cli(["fit", str(write_spec(spec_dir, PIG_SPEC)), "--out", str(spec_dir / "out")], capsys)
    assert code == 2 and fits == []
    assert "cannot write into output folder" in err and "(Permission denied)" in err


def test_failed_fit_removes_the_folders_it_created_and_writes_nothing(spec_dir, capsys, monkeypatch):
    def exploding(model, progress=None):
        raise RuntimeError("optimiser exploded")

    monkeypatch.setattr(cli, "estimate", exploding)
    out = spec_dir / "new" / "deeper" / "out"
    code, _, err = run_cli(["fit", str(write_spec(spec_dir, PIG_SPEC)), "--out", str(out)], capsys)
    assert code == 3 and "optimiser exploded" in err
    assert not (spec_dir / "new").exists()


def test_failed_fit_keeps_an_existing_folder_and_its_files(spec_dir, capsys, monkeypatch):
    def exploding(model, progress=None):
        raise RuntimeError("optimiser exploded")

    monkeypatch.setattr(cli, "estimate", exploding)
    out = spec_dir / "out"
    out.mkdir()
    (out / "results.json").write_text("previous")
    assert run_cli(["fit", str(write_spec(spec_dir, PIG_SPEC)), "--out", str(out)], capsys)[0] == 3
    assert [p.name for p in out.iterdir()] == ["results.json"] and (out / "results.json").read_text() == "previous"


def test_summary_names_the_written_files_relative_to_the_working_directory(spec_dir, capsys, fits, monkeypatch):
    monkeypatch.chdir(spec_dir)
    code, out, _ = run_cli(["fit", str(write_spec(spec_dir, PIG_SPEC)), "--out", str(spec_dir / "o")], capsys)
    assert code == 0
    assert "wrote o/results.json, o/report.html, o/report.md" in out and str(spec_dir) not in out


@pytest.mark.parametrize(("report_dir", "expected"), [
    ('"a\\0b"', "report.dir: 'a\\x00b' is not a usable folder name"),
    ("x" * 5000, "report.dir: cannot create output folder xxx"),
])
def test_unusable_report_dir_is_a_short_located_exit_2(spec_dir, capsys, fits, monkeypatch, report_dir, expected):
    monkeypatch.chdir(spec_dir)
    spec, line, col = _spec_with_report_dir(spec_dir, report_dir)
    code, _, err = run_cli(["fit", "model.yaml"], capsys)
    assert code == 2 and fits == []
    ((at_line, at_col, what),) = located(err, "model.yaml")
    assert (at_line, at_col) == (line, col) and what.startswith(expected) and len(what) < 600
