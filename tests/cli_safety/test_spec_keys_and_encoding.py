"""Duplicate keys, encodings and file kinds: each a located exit 2, never a silent choice or an exit 3."""

from __future__ import annotations

import os
import threading

import pytest

from mlmrun import cli
from tests.cli_safety.helpers import PIG_SPEC, located, run_cli
from tests.conftest import write_spec


def test_duplicate_top_level_key_names_both_lines(spec_dir, capsys):
    spec = write_spec(spec_dir, PIG_SPEC + 'fixed: "weight ~ 1"\n')
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code == 2
    first = 1 + PIG_SPEC.splitlines().index('fixed: "weight ~ week"') + 1  # write_spec adds one header line
    last = len(PIG_SPEC.splitlines()) + 2
    assert located(err, spec) == [(last, 1, f"key 'fixed' repeats the key at line {first}; keep one")]


def test_duplicate_nested_keys_are_all_reported_with_their_mapping(spec_dir, capsys):
    text = PIG_SPEC.replace("estimation: {method: ML}", "estimation:\n  method: ML\n  max_iter: 5\n  method: REML\n")
    text = text.replace("{name: pig, id: id}", "{name: pig, id: id, name: sow}")
    spec = write_spec(spec_dir, text)
    code, _, err = run_cli(["fit", str(spec), "--out", str(spec_dir / "out")], capsys)
    assert code == 2 and not (spec_dir / "out").exists()
    problems = located(err, spec)
    assert (7, 25, "levels.0: key 'name' repeats the key at line 7; keep one") in problems
    estimation = 1 + text.splitlines().index("estimation:") + 1
    assert (estimation + 3, 3, f"estimation: key 'method' repeats the key at line {estimation + 1}; keep one") in problems


def test_same_key_in_different_mappings_is_fine(spec_dir, capsys):
    spec = write_spec(spec_dir, PIG_SPEC)
    assert run_cli(["validate", str(spec)], capsys)[0] == 0  # `name` appears in several mappings


@pytest.mark.parametrize(
    ("raw", "where", "expected"),
    [
        ("name: caf\xe9\n".encode("latin-1"), "1:10", "not UTF-8 text (byte 0xe9); save the spec as UTF-8"),
        ("name: x\ndescription: \xff\n".encode("latin-1"), "2:14", "not UTF-8 text (byte 0xff)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "3:1", "contains NUL bytes, so it is not a text spec"),
        ("name: x\n".encode("utf-16"), "1:4", "contains NUL bytes, so it is not a text spec (a binary file, or UTF-16"),
    ],
)
def test_non_utf8_or_binary_spec_is_a_located_exit_2(tmp_path, capsys, raw, where, expected):
    spec = tmp_path / "enc.yaml"
    spec.write_bytes(raw)
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code == 2
    assert f"{spec}:{where}: {expected}" in err


def test_utf8_with_bom_and_non_ascii_is_read(spec_dir, capsys):
    spec = spec_dir / "bom.yaml"
    spec.write_bytes(b"\xef\xbb\xbf" + PIG_SPEC.replace("Pig weights", "Poids des porcs, \xe9t\xe9").encode("utf-8"))
    assert run_cli(["validate", str(spec)], capsys)[0] == 0


def test_folder_as_spec_is_exit_2(tmp_path, capsys):
    code, _, err = run_cli(["validate", str(tmp_path)], capsys)
    assert code == 2 and f"{tmp_path}: is a folder, not a spec file" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_as_spec_is_refused_without_waiting_for_a_writer(tmp_path, capsys):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    result: list[tuple[int, str, str]] = []
    worker = threading.Thread(target=lambda: result.append(run_cli(["validate", str(fifo)], capsys)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader before failing, so the test run does not hang
        with open(fifo, "w"):
            pass
        pytest.fail("validate blocked on a named pipe")
    code, _, err = result[0]
    assert code == 2 and "is not a regular file" in err


def test_missing_spec_is_exit_2(tmp_path, capsys):
    code, _, err = run_cli(["validate", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "nope.yaml: cannot read spec (No such file or directory)" in err


def test_many_repeated_keys_are_listed_up_to_a_limit(tmp_path, capsys):
    spec = tmp_path / "dups.yaml"
    spec.write_text("name: x\n" * 300)
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == "mlmrun: 50 problems:" and len(lines) == 52
    assert lines[1] == f"{spec}:2:1: key 'name' repeats the key at line 1; keep one"
    assert lines[-1] == f"mlmrun: ... and 249 more repeated keys in {spec}"


@pytest.mark.parametrize(("setting", "expected"), [
    ("max_iter: 100000000", "estimation.max_iter: 100000000 is out of range; write a number of at most 10000, e.g. `max_iter: 10000`"),
    ("max_iter: 0", "estimation.max_iter: 0 is out of range; write a number of at least 1, e.g. `max_iter: 1`"),
    ("tol: 0", "estimation.tol: 0 is out of range; write a number above 0"),
    ("check_points: [1, 2, 3, 4, 5, 6, 7, 8, 9]", "estimation.check_points: this list has too many entries (at most 8)"),
])
def test_estimation_cost_settings_are_bounded_with_a_hint(tmp_path, capsys, setting: str, expected: str) -> None:
    """A spec's cost is bounded: iterations and point checks have ceilings, refused at the key with the limit."""
    spec = tmp_path / "m.yaml"
    spec.write_text('name: m\ndata: {path: d.csv}\nresponses:\n  - {name: y, family: gaussian}\nfixed: "y ~ 1"\n'
                    f"estimation: {{{setting}}}\n")
    (tmp_path / "d.csv").write_text("y\n1\n2\n3\n")
    assert cli.main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"m.yaml:6:{len('estimation: {') + 1 + len(setting.split(':')[0]) + 2}: {expected}" in err, err
