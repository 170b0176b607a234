"""Run one fuzz case through the CLI and judge the outcome.

Each command runs in a forked child (cheap: the modules are already imported)
with a wall-clock limit and an address-space limit, so a mutated input can
neither hang the suite (a LAPACK call on inf/NaN cannot be interrupted by a
signal handler) nor exhaust the machine's memory; the child reports its exit
code and stderr through a pipe, and is killed when it overruns.

The contract judged (issue 7): exit 0, 1 or 2 only (never 3), no traceback,
and every line of an exit-2 message located at FILE:LINE:COL of the spec or
naming a data column in quotes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlmrun import cli
from tests.fuzz.known import known_failure
from tests.fuzz.mutate import Case

SPEC_NAME = "fuzz.yaml"
LOCATED = re.compile(rf"(^|/){re.escape(SPEC_NAME)}:\d+:\d+: ")
VALIDATE_SECONDS = 20
FIT_SECONDS = 60
MEMORY_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class Outcome:
    """What one command did with one case."""

    command: str
    rc: int
    stderr: str
    problem: str | None
    known: str | None


def write_case(case: Case, folder: Path) -> Path:
    """Write the mutated spec and data into folder (the data at the spec's own relative path)."""
    data = folder / case.data_path
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(case.csv_text())
    spec = folder / SPEC_NAME
    spec.write_text(case.spec_text())
    return spec


def _cli(argv: list[str]) -> tuple[int, str]:
    """cli.main with stdout and stderr captured; anything escaping it is reported as a traceback."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = cli.main(argv)
    except BaseException:  # noqa: BLE001 - anything escaping main() is the defect being looked for
        rc = -2
        err.write("Traceback (escaped cli.main):\n" + traceback.format_exc())
    return rc, err.getvalue()


def isolated(run: Callable[[], tuple[int, str]], seconds: float, what: str) -> tuple[int, str]:
    """run() in a forked child limited to `seconds` and MEMORY_BYTES; (-1, why) when it overruns."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
            payload = json.dumps(run()).encode()
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        except BaseException:  # noqa: BLE001
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + seconds
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            left = deadline - time.monotonic()
            ready = select.select([pipe], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return -1, f"<{what} took more than {seconds} s>"
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return -3, f"<{what} died without a result (wait status {status})>"
    rc, err = json.loads(b"".join(chunks))
    return int(rc), str(err)


def judge(rc: int, stderr: str, columns: list[str], files: tuple[str, ...] = ()) -> str | None:
    """None when the outcome keeps the contract, else what is wrong.

    `files`: options naming files a message may be located at instead (predict's `--results: PATH: ...`).
    """
    if "Traceback" in stderr:
        return "traceback"
    if rc not in (0, 1, 2):
        return f"exit {rc}"
    if rc == 2:
        lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("mlmrun: ")]
        if not lines:
            return "exit 2 without a message"
        quoted = [f"'{c}'" for c in columns if c]
        for line in lines:
            if not LOCATED.search(line) and not any(q in line for q in quoted) and not line.startswith(files):
                return f"unlocated: {line[:200]}"
    return None


def run_case(case: Case, folder: Path, fit: bool) -> list[Outcome]:
    """validate (and fit when asked and validate passed, then predict and simulate from its results.json) one
    case; one Outcome per command."""
    spec = write_case(case, folder)
    outcomes = []
    rc, err = isolated(lambda: _cli(["validate", str(spec)]), VALIDATE_SECONDS, "validate")
    problem = judge(rc, err, case.header)
    outcomes.append(Outcome("validate", rc, err, problem, known_failure(problem, err, str(case.actions)) if problem else None))
    if fit and rc == 0:
        argv = ["fit", str(spec), "--out", str(folder / "out"), "--quiet"]
        rc, err = isolated(lambda: _cli(argv), FIT_SECONDS, "fit")
        problem = judge(rc, err, case.header)
        outcomes.append(Outcome("fit", rc, err, problem, known_failure(problem, err, str(case.actions)) if problem else None))
        results = folder / "out" / "results.json"
        if rc in (0, 1) and results.exists():
            for command, extra in (("predict", ["--out", str(folder / "p.csv"), "--by-unit", str(folder / "u.csv")]),
                                   ("simulate", ["--seed", "1", "--out", str(folder / "s.csv")])):
                argv = [command, str(spec), "--results", str(results), "--quiet", *extra]
                rc2, err2 = isolated(lambda argv=argv: _cli(argv), FIT_SECONDS, command)
                problem = judge(rc2, err2, case.header, ("--results: ",))
                outcomes.append(Outcome(command, rc2, err2, problem,
                                        known_failure(problem, err2, str(case.actions)) if problem else None))
    return outcomes
