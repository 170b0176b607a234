"""Benchmark: the joint sparse Laplace engine (issue 14) on crossed GLMMs, and against the old nested Laplace.

Part 1: crossed_binary, crossed_counts and soup, the median in-process
`estimate()` time (model prepared once) beside the peers' recorded timings
(glmmTMB, glmer, clmm: `system.time` on a shared 2-core machine, model-frame
construction included: indicative only).

Part 2: simulated crossed logistic models, persons x 50 items (2000 persons:
100k responses; 20000: 1M), each fitted in its own process: CPU seconds of
the fit, of one log likelihood + gradient evaluation at the estimates, peak
resident memory, and the growth of each cost from 100k to 1M responses
(linear cost: ~10).

Part 3: a nested binary random-intercept model with 10,000 clusters of 10
(100k rows): the new engine against the quadrature room's per-unit Laplace
(estimate.quadrature_fit.fit_quadrature, the pre-issue-14 path), CPU seconds
measured alternately, best of `--repeat`.

CPU time (time.process_time) is reported because the machine is shared; BLAS
threads are pinned to one. Usage: python bench/bench_crossed.py [--repeat N]
[--json FILE] [--sizes 2000,20000]; `make bench-crossed`.
"""

from __future__ import annotations

from common import ROOT, peer_seconds  # first: pins BLAS threads before numpy loads

# isort: split

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare

PEERS = {
    "crossed_binary": [("glmmTMB", "crossed_binary__rs_glmmtmb_laplace"), ("glmer", "crossed_binary__rs_laplace")],
    "crossed_counts": [("glmer", "crossed_counts__poisson_laplace")],
    "soup": [("clmm", "soup__crossed_clmm_laplace")],
}
ITEMS = 50

CROSSED = """\
name: crossed_sim
data: {{path: {data}}}
levels:
  - {{name: person, id: person, crossed: true}}
  - {{name: item, id: item, crossed: true}}
responses:
  - {{name: y, family: binomial, link: logit}}
fixed: "y ~ x"
random:
  - {{level: person, terms: [1]}}
  - {{level: item, terms: [1]}}
estimation: {{integration: {{method: laplace}}}}
"""

NESTED = """\
name: nested_sim
data: {{path: {data}}}
levels:
  - {{name: cluster, id: cluster}}
responses:
  - {{name: y, family: binomial, link: logit}}
fixed: "y ~ x"
random:
  - {{level: cluster, terms: [1]}}
estimation: {{integration: {{method: laplace}}}}
"""


def cpu_fit(model) -> tuple[float, object]:
    start = time.process_time()
    fit = estimate(model)
    return time.process_time() - start, fit


def peers(repeat: int) -> list[dict]:
    rows = []
    print(f"{'spec':<16} {'ours CPU s':>10} {'ours wall s':>11}  peers (wall s)  loglik")
    for name, files in PEERS.items():
        model = prepare(ROOT / "specs" / f"{name}.yaml").model
        cpu, wall, fit = [], [], None
        for _ in range(repeat):
            t0 = time.perf_counter()
            c, fit = cpu_fit(model)
            wall.append(time.perf_counter() - t0)
            cpu.append(c)
        peer = {who: peer_seconds(file, "timing.median_seconds") for who, file in files}
        row = {"spec": name, "cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall), "peers_s": peer,
               "loglik": fit.loglik, "converged": fit.converged}
        rows.append(row)
        said = ", ".join(f"{k} {v:.2f}" for k, v in peer.items())
        print(f"{name:<16} {row['cpu_s']:>10.2f} {row['wall_s']:>11.2f}  {said:<14}  {fit.loglik:.6f}")
    return rows


def simulate_crossed(persons: int, folder: Path, seed: int = 20261129) -> Path:
    """persons x ITEMS logistic responses: logit P = -0.3 + 0.8 x + u_person (sd 1) + v_item (sd 0.5)."""
    rng = np.random.default_rng(seed)
    person = np.repeat(np.arange(persons), ITEMS)
    item = np.tile(np.arange(ITEMS), persons)
    x = rng.normal(size=persons)[person]
    eta = -0.3 + 0.8 * x + rng.normal(0, 1.0, persons)[person] + rng.normal(0, 0.5, ITEMS)[item]
    y = (rng.random(len(eta)) < 1 / (1 + np.exp(-eta))).astype(int)
    path = folder / f"crossed_{persons}.csv"
    pd.DataFrame({"person": person, "item": item, "x": np.round(x, 4), "y": y}).to_csv(path, index=False)
    spec = folder / f"crossed_{persons}.yaml"
    spec.write_text(CROSSED.format(data=path.name))
    return spec


def one_crossed(persons: int) -> dict:
    """Fit one simulated size in this process (called in a child): CPU seconds, evaluation cost, peak RSS."""
    from mlmrun.likelihood.laplace.objective import LaplaceEngine

    with tempfile.TemporaryDirectory() as tmp:
        model = prepare(simulate_crossed(persons, Path(tmp)), allow_outside_data=True).model
        cpu, fit = cpu_fit(model)
        engine = LaplaceEngine(model)
        engine.loglik_gradient(fit.free)  # warm start of the mode at the estimates
        start = time.process_time()
        for _ in range(3):
            engine.loglik_gradient(fit.free * (1 + 1e-9))
            engine.loglik_gradient(fit.free)
        per_eval = (time.process_time() - start) / 6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"persons": persons, "responses": persons * ITEMS, "fit_cpu_s": cpu, "eval_cpu_s": per_eval,
            "peak_mib": peak, "loglik": fit.loglik, "converged": fit.converged, "iterations": fit.iterations,
            "n_evaluations": fit.n_evaluations}


def scaling(sizes: list[int]) -> list[dict]:
    rows = []
    print(f"\n{'persons x items':<16} {'responses':>10} {'fit CPU s':>10} {'eval CPU s':>10} {'peak MiB':>9}  converged")
    for persons in sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(persons)], capture_output=True, text=True,
                             check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{persons:>6} x {ITEMS:<7} {row['responses']:>10} {row['fit_cpu_s']:>10.2f} {row['eval_cpu_s']:>10.3f} "
              f"{row['peak_mib']:>9.0f}  {row['converged']}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        ratio = b["responses"] / a["responses"]
        print(f"growth for {ratio:.0f}x responses: fit {b['fit_cpu_s'] / a['fit_cpu_s']:.1f}x, one evaluation "
              f"{b['eval_cpu_s'] / a['eval_cpu_s']:.1f}x, peak memory {b['peak_mib'] / a['peak_mib']:.1f}x")
    return rows


def nested_old_vs_new(repeat: int, clusters: int = 10_000, size: int = 10) -> dict:
    """The nested model by the new engine and by the quadrature room's Laplace, alternately (CPU seconds)."""
    from mlmrun.estimate.quadrature_fit import fit_quadrature

    rng = np.random.default_rng(20261131)
    cluster = np.repeat(np.arange(clusters), size)
    x = rng.normal(size=len(cluster))
    eta = -0.5 + 0.7 * x + rng.normal(0, 0.8, clusters)[cluster]
    y = (rng.random(len(eta)) < 1 / (1 + np.exp(-eta))).astype(int)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pd.DataFrame({"cluster": cluster, "x": np.round(x, 4), "y": y}).to_csv(folder / "nested.csv", index=False)
        (folder / "nested.yaml").write_text(NESTED.format(data="nested.csv"))
        model = prepare(folder / "nested.yaml", allow_outside_data=True).model
        new, old, fits = [], [], {}
        for _ in range(repeat):
            c, fits["new"] = cpu_fit(model)
            new.append(c)
            start = time.process_time()
            fits["old"] = fit_quadrature(model)
            old.append(time.process_time() - start)
    row = {"rows": clusters * size, "clusters": clusters, "new_cpu_s": min(new), "old_cpu_s": min(old),
           "speedup": min(old) / min(new), "new_loglik": fits["new"].loglik, "old_loglik": fits["old"].loglik}
    print(f"\nnested binary random intercept, {clusters} clusters x {size} ({clusters * size} rows), CPU s (best of "
          f"{repeat}): new engine {row['new_cpu_s']:.2f}, quadrature-room Laplace {row['old_cpu_s']:.2f}, "
          f"speed-up {row['speedup']:.1f}x; logliks {row['new_loglik']:.6f} vs {row['old_loglik']:.6f}")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="2000,20000", help="persons (x 50 items) of the simulated crossed fits")
    parser.add_argument("--json", type=Path, default=ROOT / ".bench" / "crossed.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_crossed(args.one)))
        return 0
    doc = {"peers": peers(args.repeat), "scaling": scaling([int(s) for s in args.sizes.split(",")]),
           "nested": nested_old_vs_new(args.repeat)}
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
