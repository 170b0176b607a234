"""Benchmark: exact ML fit of a simulated 3-level random-intercept model with 1,000,000 rows.

    y = 1 + 0.5 x1 - 0.3 x2 + u_region + u_school + e,   sd(u_region) = 0.5, sd(u_school) = 0.8, sd(e) = 1,
    1,000 regions x 50 schools x 20 pupils.

Prints the time to compile the model, the fit seconds (`estimate`, what the
< 60 s target is about), the peak Python allocation during the fit
(tracemalloc: numpy arrays included) and the peak resident memory of the
whole process (getrusage maxrss: data frame, compiled model and fit; the
< 4 GB target). Pin BLAS threads when timing (make bench does:
OMP_NUM_THREADS=1 etc.). `--rows` scales the problem down for a quick check.
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

TRUE = {"Intercept": 1.0, "x1": 0.5, "x2": -0.3, "sd(_cons)@region": 0.5, "sd(_cons)@school": 0.8,
        "sd(Residual)": 1.0}


def simulate(n_rows: int, seed: int = 20240611) -> pd.DataFrame:
    """Pupils (20 per school) in schools (50 per region) in regions."""
    rng = np.random.default_rng(seed)
    per_school, per_region = 20, 50
    n_school = max(n_rows // per_school, 1)
    n_region = max(n_school // per_region, 1)
    school = np.repeat(np.arange(n_school), per_school)[:n_rows]
    region = school // per_region % n_region
    x1, x2 = rng.normal(size=n_rows), rng.uniform(-1, 1, size=n_rows)
    y = (TRUE["Intercept"] + TRUE["x1"] * x1 + TRUE["x2"] * x2
         + rng.normal(0, TRUE["sd(_cons)@region"], n_region)[region]
         + rng.normal(0, TRUE["sd(_cons)@school"], n_school)[school]
         + rng.normal(0, TRUE["sd(Residual)"], n_rows))
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "school": school, "region": region})


def spec() -> Spec:
    return Spec.model_validate({
        "name": "bench_million",
        "data": {"path": "simulated-in-memory.csv"},
        "levels": [{"name": "school", "id": "school"}, {"name": "region", "id": "region"}],
        "responses": [{"name": "y", "family": "gaussian"}],
        "fixed": "y ~ x1 + x2",
        "random": [{"level": "school", "terms": [1]}, {"level": "region", "terms": [1]}],
        "estimation": {"method": "ML"},
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    frame = simulate(args.rows)
    start = time.perf_counter()
    model = compile_model(spec(), LoadedData(frame=frame, sha256="", n_rows=len(frame), path="<memory>"))
    compile_s = time.perf_counter() - start
    tracemalloc.start()
    start = time.perf_counter()
    fit = estimate(model)
    fit_s = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    names = list(model.partable.names)
    estimates = {k: float(fit.values[names.index(k)]) for k in TRUE}
    report = {"rows": model.n, "compile_seconds": round(compile_s, 2), "fit_seconds": round(fit_s, 2),
              "fit_peak_traced_mb": round(traced_peak / 2**20, 1), "process_maxrss_mb": round(maxrss_mb, 1),
              "loglik": fit.loglik, "converged": fit.converged, "iterations": fit.iterations,
              "n_evaluations": fit.n_evaluations, "estimates": estimates}
    print(f"bench_million: {model.n:,} rows, 3-level random intercepts")
    print(f"  compile {compile_s:.2f} s, fit {fit_s:.2f} s (target < 60 s)")
    print(f"  peak memory: fit {traced_peak / 2**20:.0f} MB traced, process {maxrss_mb:.0f} MB maxrss (target < 4096 MB)")
    print(f"  loglik {fit.loglik:.4f}, converged {fit.converged}, {fit.iterations} iterations, "
          f"{fit.n_evaluations} evaluations")
    print("  estimates vs truth: " + ", ".join(f"{k} {v:.4f} ({TRUE[k]})" for k, v in estimates.items()))
    print(json.dumps(report))
    ok = fit.converged and fit_s < 60 and maxrss_mb < 4096
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
