"""Run `mlmrun validate` (or fit) on a spec text next to copies of the shipped data; parse FILE:LINE:COL lines."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mlmrun import cli

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "specs" / "data"
LOCATED = re.compile(r"^(?P<file>.+\.yaml):(?P<line>\d+):(?P<col>\d+): (?P<what>.+)$")


def write(folder: Path, text: str, data: tuple[str, ...], name: str = "spec.yaml") -> Path:
    """The spec `text` in `folder`, with the named data files copied next to it."""
    for file in data:
        if not (folder / file).exists():
            shutil.copy(DATA / file, folder / file)
    path = folder / name
    path.write_text(text)
    return path


def refused(path: Path, capsys, command: str = "validate") -> list[tuple[int, int, str]]:
    """Run the CLI, assert exit 2 without traceback, return (line, col, message) of every problem line."""
    args = [command, str(path)] + (["--out", str(path.parent / "out")] if command == "fit" else [])
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    out = []
    for line in err.splitlines():
        if line.startswith("mlmrun: "):
            continue
        match = LOCATED.match(line)
        assert match, f"not FILE:LINE:COL: {line}"
        assert Path(match["file"]) == path
        out.append((int(match["line"]), int(match["col"]), match["what"]))
    assert out
    return out


def position(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the `occurrence`-th `needle` in `text` (what the error must point at)."""
    start = -1
    for _ in range(occurrence):
        start = text.index(needle, start + 1)
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return line, col
