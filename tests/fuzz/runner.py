"""Run one fuzz case through the CLI and judge the outcome.

validate runs in-process (fast; a SIGALRM bounds it); fit runs in a subprocess
with a wall-clock limit and an address-space limit, so a mutated `points:` can
neither hang the suite nor exhaust the machine's memory.

The contract judged (issue 7): exit 0, 1 or 2 only (never 3), no traceback,
and every line of an exit-2 message located at FILE:LINE:COL of the spec or
naming a data column in quotes.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mlmrun import cli
from tests.fuzz.known import known_failure
from tests.fuzz.mutate import ROOT, Case

SPEC_NAME = "fuzz.yaml"
LOCATED = re.compile(rf"(^|/){re.escape(SPEC_NAME)}:\d+:\d+: ")
VALIDATE_SECONDS = 20
FIT_SECONDS = 60
FIT_MEMORY_BYTES = 3 * 1024**3


@dataclass(frozen=True)
class Outcome:
    """What one command did with one case."""

    command: str
    rc: int
    stderr: str
    problem: str | None
    known: str | None


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout


def write_case(case: Case, folder: Path) -> Path:
    """Write the mutated spec and data into folder (the data at the spec's own relative path)."""
    data = folder / case.data_path
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(case.csv_text())
    spec = folder / SPEC_NAME
    spec.write_text(case.spec_text())
    return spec


def _validate(spec: Path) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(VALIDATE_SECONDS)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = cli.main(["validate", str(spec)])
    except _Timeout:
        rc = -1
        err.write(f"<validate took more than {VALIDATE_SECONDS} s>")
    except BaseException as exc:  # noqa: BLE001 - anything escaping main() is the defect being looked for
        rc = -2
        err.write(f"Traceback (escaped cli.main): {type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return rc, err.getvalue()


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (FIT_MEMORY_BYTES, FIT_MEMORY_BYTES))


def _fit(spec: Path) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("MLMRUN_DEBUG", None)
    cmd = [sys.executable, "-m", "mlmrun", "fit", str(spec), "--out", str(spec.parent / "out"), "--quiet"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=spec.parent, timeout=FIT_SECONDS,
                              stdin=subprocess.DEVNULL, preexec_fn=_limit_memory, check=False)
    except subprocess.TimeoutExpired:
        return -1, f"<fit took more than {FIT_SECONDS} s>"
    return proc.returncode, proc.stderr


def judge(rc: int, stderr: str, columns: list[str]) -> str | None:
    """None when the outcome keeps the contract, else what is wrong."""
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
            if not LOCATED.search(line) and not any(q in line for q in quoted):
                return f"unlocated: {line[:200]}"
    return None


def run_case(case: Case, folder: Path, fit: bool) -> list[Outcome]:
    """validate (and fit when asked and validate passed) one case; one Outcome per command."""
    spec = write_case(case, folder)
    outcomes = []
    rc, err = _validate(spec)
    problem = judge(rc, err, case.header)
    outcomes.append(Outcome("validate", rc, err, problem, known_failure(problem, err) if problem else None))
    if fit and rc == 0:
        rc, err = _fit(spec)
        problem = judge(rc, err, case.header)
        outcomes.append(Outcome("fit", rc, err, problem, known_failure(problem, err) if problem else None))
    return outcomes
