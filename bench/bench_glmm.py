"""Benchmark: GLMM fits by adaptive quadrature / Laplace beside the peers' timings, and linear scaling.

Part 1: for each issue-3 spec, the median in-process `estimate()` time (fit
alone, model prepared once) and the log likelihood, next to the peer's timing
from the reference file (lme4/clmm `system.time` on a shared 2-core machine,
model-frame construction included: indicative only).

Part 2: abortion_socatt (respondents in districts, 3 levels, 12 x 12 adaptive
points) replicated 1x, 4x and 16x (ids renumbered, so 54, 216, 864 districts):
the time of one log-likelihood-and-gradient evaluation at fixed adaptation,
and that time per replication, which must stay flat (cost linear in the
number of top-level units).

BLAS threads are pinned to one before numpy loads (small matrices: threads
only add latency). Usage: python bench/bench_glmm.py [--repeat N] [--json FILE]
"""

from __future__ import annotations

from common import ROOT, peer_seconds, timed_fits  # first: pins BLAS threads before numpy loads

# isort: split

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from mlmrun.estimate import estimate
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare

SPECS = {
    "cbpp": ("cbpp__agq25", "timing.median_seconds"),
    "cbpp_laplace": ("cbpp__laplace", "timing.median_seconds"),
    "epil": ("epil__ri_agq20", "timing.median_seconds"),
    "wine_logit": ("wine__clmm_logit_agq10", "timing.median_seconds"),
    "wine_probit": ("wine__clmm_probit_agq10", "timing.median_seconds"),
    "abortion_socatt_2level": ("abortion_socatt__binomial_ri", "models.two_level_agq20.seconds"),
    "abortion_socatt": ("abortion_socatt__binomial_ri", None),
    "abortion_socatt_laplace": ("abortion_socatt__binomial_ri", "models.three_level_laplace.seconds"),
    "pig_intercept_quadrature": (None, None),
}


def fit_times(repeat: int) -> list[dict]:
    rows = []
    print(f"{'spec':<28} {'ours median (s)':>16} {'peer (s)':>9} {'loglik':>16}  converged")
    for name, (file, path) in SPECS.items():
        model = prepare(ROOT / "specs" / f"{name}.yaml").model
        estimate(model)  # warm caches (rules, imports)
        times, fit = timed_fits(model, repeat)
        peer = peer_seconds(file, path)
        row = {"spec": name, "fit_median_s": statistics.median(times), "peer_s": peer, "loglik": fit.loglik,
               "converged": fit.converged, "n_evaluations": fit.n_evaluations}
        rows.append(row)
        print(f"{name:<28} {row['fit_median_s']:>16.4f} {peer if peer is not None else '-':>9} "
              f"{fit.loglik:>16.6f}  {fit.converged}")
    return rows


def replicated(factor: int, folder: Path) -> Path:
    """abortion_socatt with `factor` copies, ids renumbered so copies are distinct units."""
    data = pd.read_csv(ROOT / "specs" / "data" / "abortion_socatt.csv")
    copies = []
    for r in range(factor):
        part = data.copy()
        part["district"] += r * 1000
        part["respondent"] += r * 100000
        copies.append(part)
    (folder / "data").mkdir(exist_ok=True)
    pd.concat(copies).to_csv(folder / "data" / f"socatt_x{factor}.csv", index=False)
    text = (ROOT / "specs" / "abortion_socatt.yaml").read_text()
    text = text.replace("data/abortion_socatt.csv", f"data/socatt_x{factor}.csv").replace(
        "name: abortion_socatt", f"name: socatt_x{factor}")
    text = "\n".join(line for line in text.splitlines() if "check_points" not in line)
    spec = folder / f"socatt_x{factor}.yaml"
    spec.write_text(text + "\n")
    return spec


def scaling(repeat: int) -> list[dict]:
    base = estimate(prepare(ROOT / "specs" / "abortion_socatt.yaml").model)
    names = list(base.model.partable.names)
    rows = []
    print(f"\n{'replication':<12} {'districts':>9} {'rows':>7} {'eval+grad (s)':>14} {'per replication (s)':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (1, 4, 16):
            model = prepare(replicated(factor, Path(tmp))).model
            obj = QuadratureObjective(model, integration_plan(model))
            values = model.partable.start_values
            for i, name in enumerate(model.partable.names):
                values[i] = base.values[names.index(name)]
            free = model.partable.pack(values)
            ad = obj.adapt(free)
            obj.frozen(free, ad)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                obj.frozen(free, ad)
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            row = {"replication": factor, "districts": model.levels[1].n_units, "rows": model.n,
                   "eval_grad_s": med, "per_replication_s": med / factor}
            rows.append(row)
            print(f"{factor:<12} {row['districts']:>9} {row['rows']:>7} {med:>14.4f} {med / factor:>20.4f}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    result = {"fits": fit_times(args.repeat), "scaling": scaling(args.repeat)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
