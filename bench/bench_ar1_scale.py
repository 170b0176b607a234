"""Benchmark: exact ML fit of a random-intercept model with AR(1) residuals, 100,000 clusters x 10 occasions.

    y_jt = 1 + 0.5 x_jt + 0.2 t + u_j + e_jt,   sd(u) = 0.7,   e_jt = 0.6 e_j,t-1 + a_jt,  sd(e) = 1,

one million rows (issue 12: under 20 s and 4 GB). A tenth of the clusters
miss one occasion at random (gaps in the time index). Prints the compile and
fit seconds, the peak Python allocation during the fit (tracemalloc) and the
peak resident memory of the process (maxrss), and the estimates against the
truth. `make bench-scale` runs it; `--clusters` scales it down for a quick check.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mlmrun.compile import compile_model  # noqa: E402
from mlmrun.data.load import LoadedData  # noqa: E402
from mlmrun.estimate import estimate, gaussian_fit  # noqa: E402,F401  (imported before timing the fit)
from mlmrun.spec.model import Spec  # noqa: E402

TRUE = {"Intercept": 1.0, "x": 0.5, "t": 0.2, "sd(_cons)@id": 0.7, "phi1": 0.6, "sd(e)": 1.0}
OCCASIONS = 10


def simulate(n_clusters: int, seed: int = 20261129) -> pd.DataFrame:
    """Stationary AR(1) residuals over t = 1..10 per cluster, then a tenth of the clusters lose one occasion."""
    rng = np.random.default_rng(seed)
    phi, sd_e = TRUE["phi1"], TRUE["sd(e)"]
    e = np.empty((n_clusters, OCCASIONS))
    e[:, 0] = rng.normal(0, sd_e, n_clusters)
    innovation = sd_e * np.sqrt(1 - phi**2)
    for t in range(1, OCCASIONS):
        e[:, t] = phi * e[:, t - 1] + rng.normal(0, innovation, n_clusters)
    t = np.tile(np.arange(1, OCCASIONS + 1), n_clusters)
    cluster = np.repeat(np.arange(n_clusters), OCCASIONS)
    x = rng.normal(size=n_clusters * OCCASIONS)
    u = rng.normal(0, TRUE["sd(_cons)@id"], n_clusters)
    y = TRUE["Intercept"] + TRUE["x"] * x + TRUE["t"] * t + u[cluster] + e.ravel()
    keep = np.ones(len(y), dtype=bool)
    gaps = rng.choice(n_clusters, size=n_clusters // 10, replace=False)
    keep[gaps * OCCASIONS + rng.integers(1, OCCASIONS - 1, size=len(gaps))] = False
    return pd.DataFrame({"y": y, "x": x, "t": t, "id": cluster})[keep].reset_index(drop=True)


def spec() -> Spec:
    return Spec.model_validate({
        "name": "bench_ar1_scale",
        "data": {"path": "simulated-in-memory.csv"},
        "levels": [{"name": "id", "id": "id"}],
        "responses": [{"name": "y", "family": "gaussian", "residuals": {"structure": "ar", "time": "t"}}],
        "fixed": "y ~ x + t",
        "random": [{"level": "id", "terms": [1]}],
        "estimation": {"method": "ML"},
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100_000)
    args = parser.parse_args(argv)
    frame = simulate(args.clusters)
    start = time.perf_counter()
    model = compile_model(spec(), LoadedData(frame=frame, sha256="", n_rows=len(frame), path="<memory>"))
    compile_s = time.perf_counter() - start
    tracemalloc.start()
    start, cpu = time.perf_counter(), time.process_time()
    fit = estimate(model)
    fit_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    names = list(model.partable.names)
    estimates = {k: float(fit.values[names.index(k)]) for k in TRUE}
    report = {"rows": model.n, "clusters": args.clusters, "compile_seconds": round(compile_s, 2),
              "fit_seconds": round(fit_s, 2), "fit_cpu_seconds": round(cpu_s, 2), "fit_peak_traced_mb": round(traced_peak / 2**20, 1),
              "process_maxrss_mb": round(maxrss_mb, 1), "loglik": fit.loglik, "converged": fit.converged,
              "iterations": fit.iterations, "n_evaluations": fit.n_evaluations, "estimates": estimates}
    print(f"bench_ar1_scale: {model.n:,} rows, {args.clusters:,} clusters, random intercept + AR(1) residuals")
    print(f"  compile {compile_s:.2f} s, fit {fit_s:.2f} s wall, {cpu_s:.2f} s CPU (target < 20 s)")
    print(f"  peak memory: fit {traced_peak / 2**20:.0f} MB traced, process {maxrss_mb:.0f} MB maxrss (target < 4096 MB)")
    print(f"  loglik {fit.loglik:.4f}, converged {fit.converged}, {fit.iterations} iterations, "
          f"{fit.n_evaluations} evaluations")
    print("  estimates vs truth: " + ", ".join(f"{k} {v:.4f} ({TRUE[k]})" for k, v in estimates.items()))
    print(json.dumps(report))
    ok = fit.converged and fit_s < 20 and maxrss_mb < 4096
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
