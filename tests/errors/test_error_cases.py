"""Every case of the error table through the CLI: exit 2, nothing written, no traceback, located, with its hint.

The expected location is computed here from the spec text with yaml.compose
(the position of the offending key or of its value), independently of the
loader's own line map.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from mlmrun import cli
from tests.conftest import SPECS
from tests.errors.cases import CASES, DATA_FILES, FIFO, Case, Loc

SPEC = "spec.yaml"


def _positions(text: str, loc: Loc) -> set[tuple[int, int]]:
    """1-based (line, column) of the key at loc and of its value ((1, 1) for the whole document)."""
    node = yaml.compose(text)
    if not loc:
        return {(1, 1), (node.start_mark.line + 1, node.start_mark.column + 1)}
    found: set[tuple[int, int]] = set()
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            key, node = next((k, v) for k, v in node.value if k.value == part)
            if i == len(loc) - 1:
                found.add((key.start_mark.line + 1, key.start_mark.column + 1))
        else:
            node = node.value[part]
    found.add((node.start_mark.line + 1, node.start_mark.column + 1))
    return found


def run_case(case: Case, folder: Path, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, Path]:
    """Write the case's files next to its spec, run the CLI from `folder`, return (exit, stderr, spec path)."""
    spec = folder / "cases" / SPEC
    (folder / "cases" / "data").mkdir(parents=True)
    for name in re.findall(r"data/[\w.]+\.csv", case.spec or ""):
        if name not in case.files:
            target = folder / "cases" / name
            if name in DATA_FILES:
                target.write_text(DATA_FILES[name])
            elif (SPECS / name).exists():
                shutil.copy(SPECS / name, target)
    for name, content in case.files.items():
        target = folder / "cases" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if content is FIFO:
            os.mkfifo(target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    if case.spec is not None:
        spec.write_text(case.spec)
    out = folder / "out"
    options = (["--out", str(out)] if case.out else []) + ["--quiet"] if case.command == "fit" else []
    with monkeypatch.context() as patch:
        patch.chdir(folder)
        for module in case.no_modules:
            patch.setitem(sys.modules, module, None)
        rc = cli.main([case.command, str(spec)] + options)
    assert not out.exists() and not (folder / "reports").exists(), "an invalid spec wrote output"
    return rc, capsys.readouterr().err, spec


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_error_case_exits_2_located_with_hint(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rc, err, spec = run_case(case, tmp_path, capsys, monkeypatch)
    assert rc == case.exit_code == 2, f"exit {rc}: {err}"
    assert "Traceback" not in err and "internal error" not in err, err
    fragments = [frag for _, frag in case.covers if not frag.startswith("@")]
    first = fragments[0].split("\x00") if fragments else [""]
    lines = [ln for ln in err.splitlines() if all(piece in ln for piece in first)]
    assert lines, f"no stderr line contains {fragments[:1]}:\n{err}"
    line = lines[0]
    for frag in fragments:
        for piece in frag.split("\x00"):
            assert piece in err, f"{piece!r} missing from:\n{err}"
    if case.hint is not None:
        assert case.hint in line, f"hint {case.hint!r} missing from: {line}"
    else:
        assert case.todo, "a case without a hint must say in `todo` whose message lacks one"
    if case.at is not None:
        wanted = _positions(case.spec or "", case.at) | (_positions(case.spec or "", case.now_at) if case.now_at is not None else set())
        match = re.match(rf"^(.*){re.escape(SPEC)}:(\d+):(\d+): ", line)
        assert match, f"not FILE:LINE:COL: {line}"
        assert (int(match[2]), int(match[3])) in wanted, f"located at {match[2]}:{match[3]}, expected one of {sorted(wanted)}: {line}"
    elif case.lines:
        match = re.match(rf"^(.*){re.escape(SPEC)}:(\d+):(\d+): ", line)
        assert match and int(match[2]) in case.lines, f"not located on line {case.lines}: {line}"
    elif case.spec is None:
        assert line.startswith(str(spec)) or SPEC in line, f"the message does not name the spec file: {line}"
    if case.column is not None:
        assert re.search(rf"'{re.escape(case.column)}'|column {re.escape(case.column)}\b", line), f"column {case.column!r} not named: {line}"
    if case.now_at is not None:
        assert case.todo, "a case located where it should not be must say in `todo` who moves it"


def test_cases_have_unique_ids() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
