"""`make bench`: time every shipped spec, in process and as a whole `mlmrun fit` command.

For each specs/*.yaml: the median of repeated in-process `estimate()` calls on
one prepared model (the fit alone), and the median wall time of the complete
`mlmrun fit` command in a subprocess (start-up, data loading, compiling,
fitting, rendering, writing). BLAS threads are pinned to one
(OMP/OPENBLAS/MKL_NUM_THREADS=1) so timings are comparable across machines and
with single-threaded peers. Then runs the scripts of EXTRA_BENCHES that exist (among them
bench_latent.py: the flagship's total and its standard-error phase, wall and CPU seconds; bench_lmm.py: every
shipped LMM's compile + fit beside lme4's time and the ratio; bench_insteval.py: time and peak memory on
InstEval's layout beside lmer's; bench_startup.py: start-up of --help, --version, schema and validate).
Results go to stdout and .bench/results.json.
"""

from __future__ import annotations

from common import ROOT, timed_fits  # first: pins BLAS threads (subprocesses inherit it)

# isort: split

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXTRA_BENCHES = ("bench_million.py", "bench_glmm.py", "bench_latent.py", "bench_weights.py", "bench_counts.py",
                 "bench_predict.py", "bench_discrete.py", "bench_sem.py", "bench_startup.py", "bench_insteval.py",
                 "bench_lmm.py")


def time_in_process(spec: Path, repeat: int) -> dict:
    """Median seconds of `estimate()` on one prepared model, plus the fit's log likelihood."""
    from mlmrun.pipeline import prepare

    times, fit = timed_fits(prepare(spec).model, repeat)
    return {"fit_median_s": statistics.median(times), "fit_times_s": times,
            "loglik": fit.loglik, "converged": bool(fit.converged), "iterations": int(fit.iterations)}


def time_command(spec: Path, repeat: int) -> dict:
    """Median wall seconds of the whole `mlmrun fit SPEC --quiet` command (into a throw-away folder)."""
    times, code = [], None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "mlmrun", "fit", str(spec), "--out", out, "--quiet"],
                                  cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - start)
            code = proc.returncode
            if code not in (0, 1):
                return {"command_error": (proc.stderr.strip().splitlines() or ["?"])[-1], "exit_code": code}
    return {"command_median_s": statistics.median(times), "command_times_s": times, "exit_code": code}


def bench_spec(spec: Path, repeat: int, command_repeat: int) -> dict:
    """Both timings for one spec; an error in one spec is recorded, not fatal."""
    row: dict = {"spec": str(spec.relative_to(ROOT))}
    try:
        row.update(time_in_process(spec, repeat))
    except Exception as exc:  # a failing spec is reported in the table and the exit code
        row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return row
    row.update(time_command(spec, command_repeat))
    return row


def run_extra(name: str) -> dict:
    """Run an optional benchmark script of the same folder; its output is shown as it comes."""
    path = Path(__file__).parent / name
    start = time.perf_counter()
    code = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=os.environ.copy(), check=False).returncode
    return {"script": name, "exit_code": code, "wall_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="in-process fits per spec (median reported)")
    parser.add_argument("--command-repeat", type=int, default=3, help="`mlmrun fit` runs per spec")
    parser.add_argument("--spec", action="append", help="only these spec files (default: specs/*.yaml)")
    parser.add_argument("--no-extra", action="store_true", help="skip bench_million.py, bench_glmm.py and bench_latent.py")
    args = parser.parse_args(argv)
    specs = [Path(s).resolve() for s in args.spec] if args.spec else sorted((ROOT / "specs").glob("*.yaml"))
    print(f"{'spec':<40} {'fit median (s)':>15} {'mlmrun fit (s)':>15} {'loglik':>14}  status", flush=True)
    rows = []
    for spec in specs:
        row = bench_spec(spec, args.repeat, args.command_repeat)
        rows.append(row)
        status = row.get("error") or row.get("command_error") or ("converged" if row["converged"] else "NOT converged")
        fit_s = f"{row['fit_median_s']:.4f}" if "fit_median_s" in row else "-"
        cmd_s = f"{row['command_median_s']:.3f}" if "command_median_s" in row else "-"
        ll = f"{row['loglik']:.4f}" if "loglik" in row else "-"
        print(f"{row['spec']:<40} {fit_s:>15} {cmd_s:>15} {ll:>14}  {status}", flush=True)
    extras = [] if args.no_extra else [run_extra(n) for n in EXTRA_BENCHES if (Path(__file__).parent / n).exists()]
    out = ROOT / ".bench" / "results.json"
    out.parent.mkdir(exist_ok=True)
    doc = {"threads": {v: os.environ[v] for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
           "python": sys.version.split()[0], "cpu_count": os.cpu_count(), "specs": rows, "extra": extras}
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")
    failed = [r for r in rows if "error" in r or "command_error" in r] + [e for e in extras if e["exit_code"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
