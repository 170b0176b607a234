"""Shared pieces of the cli_safety tests: a valid spec body, running the CLI, reading located messages."""

from __future__ import annotations

import re
from pathlib import Path

from mlmrun import cli
from tests.report.fakes import SPECS

PIG_SPEC = (SPECS / "pig_slope.yaml").read_text()
"""A valid spec whose data path (data/pig.csv) works next to a copy of specs/data (the `spec_dir` fixture)."""

LOCATED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<what>.+)$")


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """`mlmrun ARGS` in-process: exit code, stdout, stderr (stderr must never hold a traceback)."""
    code = cli.main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def located(err: str, source: str | Path) -> list[tuple[int, int, str]]:
    """The (line, column, message) of every stderr line about `source`, asserting each is FILE:LINE:COL."""
    out = []
    for line in err.splitlines():
        if line.startswith("mlmrun: "):
            continue
        match = LOCATED.match(line)
        assert match, f"not FILE:LINE:COL: {line}"
        assert match["file"] == str(source), line
        out.append((int(match["line"]), int(match["col"]), match["what"]))
    return out
