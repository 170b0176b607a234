"""Mutation check: apply each curated one-line mutant of the core and run the tests that must kill it.

`make mutate` runs this. The mutants are listed in tools/mutants.yaml, each as
(id, file, the exact original text, its replacement, what bug it stands for,
the test files to run). The text must occur exactly once in the file, else
the mutant is STALE (the code moved; re-point it with a one-line edit of the
YAML). Every mutant must be killed: a surviving mutant means a class of bug
the suite would let through.

Each worker copies the repository (tracked and untracked-but-not-ignored
files) once to a scratch folder, applies a mutant there, runs
`pytest -x -q -p no:cacheprovider <tests>` with BLAS pinned to one thread and
a per-mutant timeout, then restores the file. A mutant that survives its
listed tests is run once more against the whole suite (unless
--no-fallback). Bytecode is never written, so a restored file can never be
shadowed by the mutant's cached .pyc (same size, same mtime second).

Exit status: 0 when every mutant is killed, 1 otherwise (survived, stale,
timed out, or the tests could not run), 2 for a malformed mutant list.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "tools" / "mutants.yaml"
DEFAULT_TIMEOUT = 600
WHOLE_SUITE = ["tests"]
TIMING_TESTS: list[str] = []
"""Deselected: a timed test judges the machine's load (scratch runs share it), not the code (timings live in make bench)."""
PINNED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Mutant:
    """One one-line change of the core and the tests that must notice it."""

    id: str
    file: str
    find: str
    replace: str
    why: str
    tests: list[str] = field(default_factory=list)
    timeout: int = DEFAULT_TIMEOUT


@dataclass
class Outcome:
    """What happened to one mutant: killed | survived | stale | timeout | error, and by which test."""

    mutant: Mutant
    status: str
    detail: str = ""
    seconds: float = 0.0


def load_mutants(path: Path = MUTANTS) -> list[Mutant]:
    """Read and check the mutant list (unique ids, required keys, a real change, files that exist)."""
    entries = yaml.safe_load(path.read_text())
    if not isinstance(entries, list):
        raise SystemExit(f"{path}: expected a list of mutants")
    mutants, seen = [], set()
    for i, entry in enumerate(entries):
        missing = {"id", "file", "find", "replace", "why"} - set(entry)
        if missing:
            raise SystemExit(f"{path}: mutant #{i} lacks {sorted(missing)}")
        m = Mutant(**entry)
        if m.id in seen:
            raise SystemExit(f"{path}: duplicate mutant id {m.id}")
        if m.find == m.replace:
            raise SystemExit(f"{path}: mutant {m.id} changes nothing")
        if "\n" in m.find or "\n" in m.replace:
            raise SystemExit(f"{path}: mutant {m.id} must be a one-line change")
        seen.add(m.id)
        mutants.append(m)
    return mutants


def repo_files(root: Path) -> list[str]:
    """Tracked files plus untracked files git does not ignore (new tests count before they are committed)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         check=True, capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p and (root / p).is_file()]


def scratch_copy(root: Path, dest: Path) -> Path:
    """Copy the repository's files into dest (no .venv, no caches, no bytecode)."""
    for rel in repo_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def first_failure(output: str) -> str:
    """The first FAILED/ERROR line of pytest's short summary, or the last meaningful line."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0].split(" ", 1)[1]
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def run_pytest(work: Path, tests: list[str], timeout: int) -> tuple[int | None, str]:
    """Run pytest in the scratch copy; (returncode or None on timeout, combined output)."""
    env = dict(os.environ, **PINNED, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(work))
    env.pop("PYTEST_ADDOPTS", None)
    deselect = [arg for node in TIMING_TESTS for arg in ("--deselect", node)]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *deselect, *tests]
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out


def apply(work: Path, m: Mutant) -> str | None:
    """Write the mutant into the scratch copy; the original text, or None when the mutant is stale."""
    path = work / m.file
    if not path.is_file():
        return None
    original = path.read_text()
    if original.count(m.find) != 1:
        return None
    path.write_text(original.replace(m.find, m.replace))
    return original


def judge(work: Path, m: Mutant, fallback: bool) -> Outcome:
    """Apply one mutant, run its tests (then the whole suite if it survives), restore the file."""
    start = time.perf_counter()
    original = apply(work, m)
    if original is None:
        count = (work / m.file).read_text().count(m.find) if (work / m.file).is_file() else 0
        return Outcome(m, "stale", f"text found {count} times in {m.file} (must be exactly once)")
    try:
        runs = [m.tests or WHOLE_SUITE]
        if fallback and m.tests:
            runs.append(WHOLE_SUITE)
        for tests in runs:
            code, output = run_pytest(work, tests, m.timeout)
            if code is None:
                return Outcome(m, "timeout", f"after {m.timeout} s running {' '.join(tests)}",
                               time.perf_counter() - start)
            if code == 1:
                return Outcome(m, "killed", first_failure(output), time.perf_counter() - start)
            if code != 0:
                return Outcome(m, "error", f"pytest exit {code}: {first_failure(output)}", time.perf_counter() - start)
        return Outcome(m, "survived", f"ran {' + '.join(' '.join(t) for t in runs)}", time.perf_counter() - start)
    finally:
        (work / m.file).write_text(original)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutant ids to run")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at a time (one scratch copy each)")
    parser.add_argument("--no-fallback", action="store_true", help="do not rerun survivors against the whole suite")
    parser.add_argument("--check", action="store_true", help="only check that every mutant applies exactly once")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    args = parser.parse_args(argv)
    mutants = load_mutants()
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {m.id for m in mutants}
        if unknown:
            print(f"unknown mutant ids: {sorted(unknown)}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.id in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.id:32s} {m.file}: {m.why}")
        return 0
    if args.check:
        stale = [m for m in mutants if not (ROOT / m.file).is_file() or (ROOT / m.file).read_text().count(m.find) != 1]
        for m in stale:
            print(f"{m.id:32s} STALE     {m.file}")
        print(f"{len(mutants) - len(stale)} of {len(mutants)} mutants apply exactly once")
        return 1 if stale else 0
    with tempfile.TemporaryDirectory(prefix="mlmrun-mutate-") as tmp:
        workers = max(1, min(args.jobs, len(mutants)))
        pool_dirs = [scratch_copy(ROOT, Path(tmp) / f"w{i}") for i in range(workers)]
        free_dirs = list(pool_dirs)
        lock = threading.Lock()
        print(f"{len(mutants)} mutants, {workers} at a time (scratch copies in {tmp})", flush=True)

        def task(m: Mutant) -> Outcome:
            with lock:
                work = free_dirs.pop()
            try:
                outcome = judge(work, m, not args.no_fallback)
            finally:
                with lock:
                    free_dirs.append(work)
            with lock:
                print(f"{m.id:32s} {outcome.status.upper():9s} {outcome.seconds:6.1f}s  {outcome.detail}", flush=True)
            return outcome

        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(pool.map(task, mutants))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("killed", "survived", "stale", "timeout", "error")}
    print("total: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(outcomes)} mutants")
    return 0 if counts["killed"] == len(outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
