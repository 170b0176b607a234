"""Benchmark: start-up of the light commands (issue 16): `--help`, `--version`, `schema`, `validate` of a small spec.

Each command runs REPEAT times in a fresh interpreter, the commands taking turns so that a
busy machine slows them alike; printed are the median wall time and the median CPU time
(user + system, from the children's rusage) next to the issue's targets (0.3 s for the
first three, 0.8 s for validate). Python writes and reuses its bytecode cache as it does
for a user (PYTHONDONTWRITEBYTECODE is dropped for the children; one untimed warm-up run
per command fills the cache). Usage: python bench/bench_startup.py [--repeat N] [--json FILE]
"""

from __future__ import annotations

from common import ROOT  # first: pins BLAS threads (subprocesses inherit it)

# isort: split

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SMALL_SPEC = "specs/pig_slope.yaml"
COMMANDS: dict[str, tuple[list[str], float]] = {
    "--help": (["--help"], 0.3),
    "--version": (["--version"], 0.3),
    "schema": (["schema"], 0.3),
    "validate": (["validate", SMALL_SPEC], 0.8),
}
"""Label -> (arguments of `mlmrun`, target wall seconds)."""


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall and CPU seconds of one `python -m mlmrun ARGS` and its exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mlmrun", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"mlmrun {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return wall, cpu, proc.returncode


def startup_times(repeat: int) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for args, _ in COMMANDS.values():
        run_once(args, env)  # warm-up: bytecode cache, file system cache
    walls: dict[str, list[float]] = {label: [] for label in COMMANDS}
    cpus: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for _ in range(repeat):
        for label, (args, _) in COMMANDS.items():
            wall, cpu, _ = run_once(args, env)
            walls[label].append(wall)
            cpus[label].append(cpu)
    rows = []
    print(f"{'command':<12} {'wall median (s)':>16} {'cpu median (s)':>15} {'target (s)':>11}  under target")
    for label, (args, target) in COMMANDS.items():
        wall, cpu = statistics.median(walls[label]), statistics.median(cpus[label])
        rows.append({"command": f"mlmrun {' '.join(args)}", "wall_median_s": wall, "cpu_median_s": cpu,
                     "wall_s": walls[label], "cpu_s": cpus[label], "target_s": target, "under_target": wall < target})
        print(f"{label:<12} {wall:>16.3f} {cpu:>15.3f} {target:>11.1f}  {wall < target}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = startup_times(args.repeat)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
