"""Benchmark: issue 4's latent-variable specs, the flagship first.

Part 1, specs/abortion.yaml (Table 1 of Rabe-Hesketh, Skrondal & Pickles 2004
on simulated data): one in-process `estimate()` (model prepared once): fit
time, likelihood evaluations, iterations, log likelihood and the point-check
change, then the flagship total and its standard-error phase (wall and CPU
seconds; issue 11's target: the whole in-process fit under 5 s at its current accuracy) with every phase's time;
then the same model at 10 points per dimension at both levels (the
paper's setting; a temporary copy of the spec without the point check).

Part 2, every other issue-4 spec: the median in-process fit time beside the
peer's timing where its reference file has one (R `system.time` on a shared
2-core machine, model-frame construction included: indicative only).

BLAS threads are pinned to one before numpy loads. Usage:
python bench/bench_latent.py [--repeat N] [--skip-flagship] [--json FILE]
"""

from __future__ import annotations

from common import ROOT, peer_seconds, timed_fits  # first: pins BLAS threads before numpy loads

# isort: split

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare

SPECS = {
    "lsat_2pl": ("lsat__2pl", None),
    "holzinger_swineford": ("holzinger_swineford__cfa3_ml_meanstructure", "timing.median_seconds"),
    "hsced": ("hsced__heteroscedastic_ml", None),
    "kypssim": ("kypssim__persistence_ml", None),
    "diet": ("diet__measurement_error_direct", None),
    "latent_covariates": ("latent_covariates__no_interaction", None),
    "irtsim": ("irtsim__2pl_multilevel", None),
    "irtsim_laplace": ("irtsim__2pl_multilevel", None),
    "mresp": ("mresp__mixed_response_laplace", None),
    "mresp_laplace": ("mresp__mixed_response_laplace", None),
}
TARGET_S = 5.0
"""Fit-time target: the flagship's whole in-process fit (issue 11), and each spec of part 2."""


class PhaseClock:
    """A progress listener that adds up wall and CPU seconds per fit phase (all optimisation rounds as one)."""

    def __init__(self) -> None:
        self.current = "setup"
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.mark = (time.perf_counter(), time.process_time())

    def phase(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[self.current] = self.wall.get(self.current, 0.0) + now[0] - self.mark[0]
        self.cpu[self.current] = self.cpu.get(self.current, 0.0) + now[1] - self.mark[1]
        self.current, self.mark = ("optimisation rounds" if name.startswith("optimisation round") else name), now

    def __call__(self, iteration: int, loglik: float, *more: object) -> None:
        pass


def one_fit(spec: Path) -> dict:
    """A single timed in-process fit of a prepared spec, with wall and CPU seconds per phase."""
    model = prepare(spec).model
    clock = PhaseClock()
    t0, c0 = time.perf_counter(), time.process_time()
    fit = estimate(model, clock)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    clock.phase("done")
    check = fit.extras.get("point_check") or {}
    return {"fit_s": seconds, "fit_cpu_s": cpu, "phase_s": clock.wall, "phase_cpu_s": clock.cpu,
            "n_evaluations": int(fit.n_evaluations), "iterations": int(fit.iterations),
            "loglik": fit.loglik, "converged": bool(fit.converged), "integration": fit.integration,
            "point_check_change": check.get("loglik_change"), "point_check": check.get("loglik")}


def ten_point_copy(folder: Path) -> Path:
    """specs/abortion.yaml with 10 points per dimension at every level and no point check."""
    doc = yaml.safe_load((ROOT / "specs" / "abortion.yaml").read_text())
    doc["name"] = "abortion_10pt"
    data = ROOT / "specs" / doc["data"]["path"]
    shutil.copy(data, folder / data.name)  # a spec may only read files inside its own folder
    doc["data"]["path"] = data.name
    doc["estimation"]["integration"]["points"] = 10
    doc["estimation"].pop("check_points", None)
    path = folder / "abortion_10pt.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def flagship() -> dict:
    print("flagship specs/abortion.yaml (Table 1, simulated data)")
    row = one_fit(ROOT / "specs" / "abortion.yaml")
    print(f"  fitted {row['integration']['points']}: {row['fit_s']:.2f} s, {row['n_evaluations']} likelihood "
          f"evaluations, {row['iterations']} iterations, loglik {row['loglik']:.4f}, converged {row['converged']}, "
          f"point-check change {row['point_check_change']:.2e} ({row['point_check']})")
    phases = ", ".join(f"{name} {row['phase_s'][name]:.2f} s" for name in row["phase_s"])
    print(f"  flagship total {row['fit_s']:.2f} s (CPU {row['fit_cpu_s']:.2f} s; target {TARGET_S:g} s); standard errors "
          f"{row['phase_s'].get('standard errors', float('nan')):.2f} s (CPU "
          f"{row['phase_cpu_s'].get('standard errors', float('nan')):.2f} s); phases: {phases}")
    with tempfile.TemporaryDirectory() as tmp:
        ten = one_fit(ten_point_copy(Path(tmp)))
    print(f"  10 points per dimension (the paper's setting): {ten['fit_s']:.2f} s, {ten['n_evaluations']} "
          f"evaluations, loglik {ten['loglik']:.4f}, converged {ten['converged']}")
    return {"fitted": row, "ten_points": ten}


def others(repeat: int) -> list[dict]:
    rows = []
    print(f"\n{'spec':<22} {'ours median (s)':>16} {'peer (s)':>9} {'loglik':>14} {'evals':>6}  converged")
    for name, (file, path) in SPECS.items():
        model = prepare(ROOT / "specs" / f"{name}.yaml").model
        times, fit = timed_fits(model, repeat)
        peer = peer_seconds(file, path)
        row = {"spec": name, "fit_median_s": statistics.median(times), "fit_times_s": times, "peer_s": peer,
               "loglik": fit.loglik, "converged": bool(fit.converged), "n_evaluations": int(fit.n_evaluations),
               "within_target": statistics.median(times) < TARGET_S}
        rows.append(row)
        flag = "" if row["within_target"] else f"  (over the {TARGET_S:g} s target)"
        print(f"{name:<22} {row['fit_median_s']:>16.3f} {peer if peer is not None else '-':>9} "
              f"{fit.loglik:>14.4f} {fit.n_evaluations:>6}  {fit.converged}{flag}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fits per spec in part 2 (median reported)")
    parser.add_argument("--skip-flagship", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    result = {"flagship": None if args.skip_flagship else flagship(), "others": others(args.repeat)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
