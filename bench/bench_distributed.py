"""Benchmark: one fit over a 2-worker Dask LocalCluster next to the same fit in one process.

Two simulated models, each written as a partitioned Parquet folder (whole top-level units per file):

- LMM: y = 1 + 0.5 x1 - 0.3 x2 + u_region + u_school + e (3 levels: 20 pupils per school, 50 schools per
  region), exact ML; 10,000,000 rows by default (`--lmm-rows`);
- GLMM: binary y, logit(p) = -0.5 + 0.8 x + u_cluster, sd(u) = 1, 20 rows per cluster, adaptive quadrature;
  2,000,000 rows by default (`--glmm-rows`).

Each fit runs in a fresh subprocess: one process (`mlmrun.pipeline.prepare` + `estimate`: reads the folder,
compiles, fits), and distributed (`mlmrun.distributed.fit.fit_distributed` on a LocalCluster of `--workers`
single-threaded processes started inside it). Printed per fit: wall seconds, CPU seconds (client and every
worker), peak resident memory of the single process, of the client and of each worker (VmHWM,
read in each worker by `client.run`), and the log likelihood (the two must agree to 1e-8). With two cores
shared by other jobs wall time is noisy; the CPU seconds are the fairer comparison. Run with
`make bench-distributed`; results also go to .bench/distributed.json.
"""

from __future__ import annotations

from common import ROOT  # first: pins BLAS threads before numpy loads

# isort: split

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

LMM_SPEC = """\
name: bench_distributed_lmm
data: {path: parts}
levels:
  - {name: school, id: school}
  - {name: region, id: region}
responses:
  - {name: y, family: gaussian}
fixed: "y ~ x1 + x2"
random:
  - {level: school, terms: [1]}
  - {level: region, terms: [1]}
estimation: {method: ML}
"""

GLMM_SPEC = """\
name: bench_distributed_glmm
data: {path: parts}
levels:
  - {name: cluster, id: cluster}
responses:
  - {name: y, family: binomial, link: logit}
fixed: "y ~ x"
random:
  - {level: cluster, terms: [1]}
estimation: {method: ML}
"""


def lmm_frame(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    school = np.arange(rows) // 20
    region = school // 50
    x1, x2 = rng.normal(size=rows), rng.uniform(-1, 1, size=rows)
    y = (1 + 0.5 * x1 - 0.3 * x2 + rng.normal(0, 0.5, region[-1] + 1)[region]
         + rng.normal(0, 0.8, school[-1] + 1)[school] + rng.normal(size=rows))
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "school": school.astype(np.int64), "region": region})


def glmm_frame(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    cluster = np.arange(rows) // 20
    x = rng.normal(size=rows)
    eta = -0.5 + 0.8 * x + rng.normal(0, 1.0, cluster[-1] + 1)[cluster]
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "cluster": cluster.astype(np.int64)})


def write_parts(frame: pd.DataFrame, key: str, folder: Path, parts: int) -> None:
    """`parts` Parquet files of consecutive top-level units (`key` sorted ascending)."""
    folder.mkdir(parents=True)
    bounds = np.linspace(0, frame[key].max() + 1, parts + 1).astype(np.int64)
    for j in range(parts):
        keep = (frame[key] >= bounds[j]) & (frame[key] < bounds[j + 1])
        frame.loc[keep].to_parquet(folder / f"part-{j:03d}.parquet", index=False)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _maxrss_mb() -> float:
    """Peak resident memory of this process: VmHWM (Linux; reset by exec, unlike getrusage's ru_maxrss,
    which a subprocess inherits from the process it was forked from), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_single(spec: Path) -> dict:
    """One process: read the folder, compile, fit."""
    from mlmrun.estimate import estimate
    from mlmrun.pipeline import prepare

    t0, c0 = time.perf_counter(), _cpu()
    fit = estimate(prepare(spec).model)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - c0, "peak_rss_mb": _maxrss_mb(),
            "loglik": fit.loglik, "converged": bool(fit.converged), "n_rows": fit.model.n,
            "estimates": dict(zip(map(str, fit.model.partable.free_names()), map(float, fit.free), strict=True))}


def _worker_usage() -> dict:
    return {"cpu_s": _cpu(), "peak_rss_mb": _maxrss_mb()}


def _warm() -> None:
    import mlmrun.distributed.objective  # noqa: F401
    import mlmrun.distributed.partitions  # noqa: F401


def run_distributed(spec: Path, workers: int) -> dict:
    """A LocalCluster of `workers` processes; the fit's figures and each worker's CPU time and peak memory."""
    from dask.distributed import Client, LocalCluster

    from mlmrun.distributed.fit import fit_distributed

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        client.run(_warm)  # imports out of the figures (a long-running cluster has them)
        before = client.run(_worker_usage)
        t0, c0 = time.perf_counter(), _cpu()
        fit = fit_distributed(spec, client=client)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        after = client.run(_worker_usage)
    per_worker = [{"cpu_s": after[w]["cpu_s"] - before[w]["cpu_s"], "peak_rss_mb": after[w]["peak_rss_mb"],
                   "rss_before_fit_mb": before[w]["peak_rss_mb"]} for w in sorted(after)]
    return {"wall_s": wall, "client_cpu_s": cpu, "client_peak_rss_mb": _maxrss_mb(), "workers": per_worker,
            "loglik": fit.loglik, "converged": bool(fit.converged), "n_rows": fit.model.n,
            "estimates": dict(zip(map(str, fit.model.partable.free_names()), map(float, fit.free), strict=True))}


def _subprocess(mode: str, spec: Path, workers: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--run", mode, str(spec), "--workers", str(workers)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _show(name: str, rows: int, single: dict, dist: dict) -> None:
    print(f"\n{name}: {rows:,} rows")
    if "error" in single:
        print(f"  one process: failed: {single['error'][-400:]}")
    else:
        print(f"  one process : wall {single['wall_s']:8.1f} s  cpu {single['cpu_s']:8.1f} s  "
              f"peak RSS {single['peak_rss_mb']:8.0f} MB  loglik {single['loglik']:.6f}")
    if "error" in dist:
        print(f"  distributed : failed: {dist['error'][-400:]}")
        return
    workers = "  ".join(f"w{k}: cpu {w['cpu_s']:.1f} s, peak {w['peak_rss_mb']:.0f} MB"
                        for k, w in enumerate(dist["workers"]))
    print(f"  distributed : wall {dist['wall_s']:8.1f} s  client cpu {dist['client_cpu_s']:6.1f} s  "
          f"client peak {dist['client_peak_rss_mb']:6.0f} MB  loglik {dist['loglik']:.6f}\n                {workers}")
    if "error" not in single:
        diff = max(abs(dist["estimates"][k] - v) for k, v in single["estimates"].items())
        print(f"  |loglik difference| {abs(dist['loglik'] - single['loglik']):.2e}, largest |estimate difference| "
              f"{diff:.2e}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmm-rows", type=int, default=10_000_000)
    parser.add_argument("--glmm-rows", type=int, default=2_000_000)
    parser.add_argument("--parts", type=int, default=8, help="Parquet files per dataset")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-single", action="store_true", help="only the distributed fits")
    parser.add_argument("--run", nargs=2, metavar=("MODE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        mode, spec = args.run
        doc = run_single(Path(spec)) if mode == "single" else run_distributed(Path(spec), args.workers)
        print(json.dumps(doc))
        return 0
    rng = np.random.default_rng(20261129)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mlmrun-bench-dist-") as tmp:
        for name, rows, make, key, text in (("lmm", args.lmm_rows, lmm_frame, "region", LMM_SPEC),
                                            ("glmm", args.glmm_rows, glmm_frame, "cluster", GLMM_SPEC)):
            if rows <= 0:
                continue
            folder = Path(tmp) / name
            write_parts(make(rows, rng), key, folder / "parts", args.parts)
            spec = folder / "spec.yaml"
            spec.write_text(text)
            single = {"error": "skipped"} if args.skip_single else _subprocess("single", spec, args.workers)
            dist = _subprocess("distributed", spec, args.workers)
            _show(name.upper(), rows, single, dist)
            results[name] = {"rows": rows, "single": single, "distributed": dist}
    out = ROOT / ".bench" / "distributed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    failed = [r for r in results.values() if "error" in r["distributed"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
