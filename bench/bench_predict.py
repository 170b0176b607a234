"""Benchmark: `mlmrun predict` on the flagship (specs/abortion.yaml) from a fitted results.json.

Fits the flagship once (or reads --results), then times in process, median of --repeat runs, each step
of `predict --results`: reading the fit back (spec, data, compile, results.json checks), the empirical
Bayes predictions (posterior means by 20 x 20 x 5-point adaptive quadrature, or modes), and the
per-row and by-unit tables (rendered as CSV), as wall and CPU seconds. BLAS pinned to one thread.
Usage: python bench/bench_predict.py [--results PATH] [--repeat N] [--json FILE]
"""

from __future__ import annotations

from common import ROOT  # first: pins BLAS threads before numpy loads

# isort: split

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlmrun.pipeline import prepare
from mlmrun.postest.fitted import fitted_from_results, read_results
from mlmrun.postest.frames import model_rows, read_data_file
from mlmrun.postest.output import table_bytes
from mlmrun.postest.predict import fitted_predictions
from mlmrun.postest.units import unit_predictions

SPEC = ROOT / "specs" / "abortion.yaml"


def one_run(results: Path, eb: str) -> dict[str, float]:
    """Wall and CPU seconds of each step of one `predict --results` (no file written)."""
    out: dict[str, float] = {}
    clocks = [(time.perf_counter(), time.process_time())]
    prepared = prepare(SPEC)
    fit = fitted_from_results(prepared, read_results(results))
    clocks.append((time.perf_counter(), time.process_time()))
    preds = unit_predictions(fit, eb)  # type: ignore[arg-type]
    clocks.append((time.perf_counter(), time.process_time()))
    rows = model_rows(prepared.spec, read_data_file(prepared.data.path, prepared.model.data_sha256), fit.model.n)
    tables = fitted_predictions(fit.model, fit.values, rows, preds, eb)  # type: ignore[arg-type]
    table_bytes(tables.rows, Path("rows.csv"))
    table_bytes(tables.units, Path("units.csv"))
    clocks.append((time.perf_counter(), time.process_time()))
    for name, (a, b) in zip(("load", "eb", "tables"), zip(clocks, clocks[1:], strict=False), strict=True):
        out[f"{name}_wall_s"], out[f"{name}_cpu_s"] = b[0] - a[0], b[1] - a[1]
    out["total_wall_s"], out["total_cpu_s"] = clocks[-1][0] - clocks[0][0], clocks[-1][1] - clocks[0][1]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", help="results.json of specs/abortion.yaml (default: fit it once first)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the medians here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        results = Path(args.results) if args.results else Path(folder) / "results.json"
        if not args.results:
            subprocess.run([sys.executable, "-m", "mlmrun", "fit", str(SPEC), "--out", folder, "--quiet"], cwd=ROOT,
                           check=True)
        report = {}
        for eb in ("mean", "mode"):
            runs = [one_run(results, eb) for _ in range(args.repeat)]
            report[eb] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            m = report[eb]
            print(f"predict --eb {eb}: {m['total_wall_s']:.2f} s wall, {m['total_cpu_s']:.2f} s CPU "
                  f"(load {m['load_cpu_s']:.2f}, EB {m['eb_cpu_s']:.2f}, tables {m['tables_cpu_s']:.2f} s CPU), "
                  f"median of {args.repeat}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
