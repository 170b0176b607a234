"""Benchmark: issue 10's count, censored and composite-link specs beside the peers' timings.

For each spec, the median in-process `estimate()` time (fit alone, model
prepared once) and the log likelihood, next to the peer's timing from the
reference file (glmmTMB `system.time` on a shared 2-core machine, model-frame
construction included: indicative only; survreg's tobit fit was not timed).
The target is under 1 s per spec. Usage: python bench/bench_counts.py [--repeat N] [--json FILE]
"""

from __future__ import annotations

from common import ROOT, peer_seconds, timed_fits  # first: pins BLAS threads before numpy loads

# isort: split

import argparse
import json
import statistics
from pathlib import Path

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare

SPECS = {
    "epil_nbinom": ("epil__nbinom2_ri_laplace", "timing.median_seconds"),
    "epil_zip": ("epil__zip_ri_laplace", "timing.median_seconds"),
    "tobit": (None, None),
    "tobit_cluster": (None, None),
    "composite": (None, None),
}
TARGET_S = 1.0


def fit_times(repeat: int) -> list[dict]:
    rows = []
    print(f"{'spec':<16} {'ours median (s)':>16} {'peer (s)':>9} {'loglik':>16}  converged")
    for name, (file, path) in SPECS.items():
        model = prepare(ROOT / "specs" / f"{name}.yaml").model
        estimate(model)  # warm caches (rules, imports)
        times, fit = timed_fits(model, repeat)
        peer = peer_seconds(file, path)
        row = {"spec": name, "fit_median_s": statistics.median(times), "peer_s": peer, "loglik": fit.loglik,
               "converged": bool(fit.converged), "under_target": statistics.median(times) < TARGET_S}
        rows.append(row)
        shown = "-" if peer is None else f"{peer:.3f}"
        print(f"{name:<16} {row['fit_median_s']:>16.3f} {shown:>9} {fit.loglik:>16.6f}  {fit.converged}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = fit_times(args.repeat)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
