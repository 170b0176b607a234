"""Run the CLI on a spec and small data written into a temporary folder (the working directory)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlmrun import cli

LOCATED = re.compile(r"^model\.yaml:\d+:\d+: ")

SPEC = """\
name: safety
data: {path: DATA}
levels:
  - {name: g, id: g}
responses:
  - {name: y, family: gaussian}
fixed: "y ~ x"
random:
  - {level: g, terms: [1]}
"""

ROWS = "y,x,g\n1.0,2,1\n2.5,3,1\n3.1,1,2\n4.2,5,2\n5.0,2,3\n1.3,1,3\n0.7,4,4\n2.2,2,4\n"


@dataclass(frozen=True)
class Outcome:
    """Exit code and the two output streams of one CLI call."""

    code: int
    out: str
    err: str

    def problem(self) -> str:
        """The single located error line of an exit-2 run (FILE:LINE:COL: ...), checked for leaks."""
        assert self.code == 2, (self.code, self.err)
        assert "Traceback" not in self.err and "internal error" not in self.err
        (line,) = [ln for ln in self.err.splitlines() if not ln.startswith("mlmrun: ")]
        assert LOCATED.match(line), f"not FILE:LINE:COL: {line}"
        return line


def run(folder: Path, capsys: pytest.CaptureFixture[str], spec: str, command: str = "validate") -> Outcome:
    """Write `spec` as model.yaml in `folder` and run `mlmrun COMMAND model.yaml`."""
    (folder / "model.yaml").write_text(spec)
    args = [command, "model.yaml"] + (["--out", "out", "--quiet"] if command == "fit" else [])
    code = cli.main(args)
    captured = capsys.readouterr()
    assert str(folder) not in captured.err and str(folder.resolve()) not in captured.err, captured.err
    return Outcome(code, captured.out, captured.err)


def spec_for(data: str) -> str:
    """The base spec reading `data`."""
    return SPEC.replace("DATA", data)
