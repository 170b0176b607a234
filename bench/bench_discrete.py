"""Benchmark: discrete latent distributions (issue 13) against their targets.

- specs/cbpp_npmle.yaml (15 herds, 2 mass points, 10 seeded starts): under 0.5 s;
- a 10,000-unit logistic random-intercept model with 3 mass points (8 binary rows per unit, one
  covariate, simulated with seed 13): under 3 s;
- a 5,000-person, 3-class, 10-item latent class model (simulated with seed 13): under 3 s.

Each figure is the median wall time of in-process `estimate()` calls on one prepared model (the fit
alone, default 5 starts), BLAS pinned to one thread, with the mean CPU time of the process beside it
(on a loaded machine the wall time overstates the cost). Usage: python bench/bench_discrete.py [--repeat N]
"""

from __future__ import annotations

from common import ROOT, timed_fits  # first: pins BLAS threads before numpy loads

# isort: split

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun.pipeline import prepare

TARGETS = {"cbpp_npmle": 0.5, "npmle_10k_units_3_points": 3.0, "lca_5k_persons_3_classes_10_items": 3.0}

RI_SPEC = """\
name: npmle_bench
data: {path: data.csv}
levels: [{name: unit, id: unit}]
responses: [{name: y, family: binomial}]
fixed: "y ~ x"
random: [{level: unit, terms: [1], distribution: {discrete: 3}}]
"""

LCA_SPEC = """\
name: lca_bench
data: {path: data.csv}
levels: [{name: person, id: person}]
responses: [{name: y, family: binomial}]
fixed: "y ~ 0"
latent: [{name: class, level: person, classes: 3, loadings: {by: item}}]
"""


def ri_data(rng: np.random.Generator, units: int = 10_000, rows: int = 8) -> pd.DataFrame:
    u = rng.choice([-1.2, 0.0, 1.5], size=units, p=[0.3, 0.5, 0.2])
    x = rng.normal(size=(units, rows))
    y = rng.random((units, rows)) < 1.0 / (1.0 + np.exp(-(-0.3 + 0.8 * x + u[:, None])))
    return pd.DataFrame({"unit": np.repeat(np.arange(units), rows), "x": x.reshape(-1), "y": y.reshape(-1).astype(int)})


def lca_data(rng: np.random.Generator, persons: int = 5_000, items: int = 10) -> pd.DataFrame:
    alpha = np.stack([np.linspace(-2, -0.5, items), np.linspace(0.5, 2, items),
                      np.where(np.arange(items) < items // 2, -1.5, 1.5)])
    cls = rng.choice(3, size=persons, p=[0.5, 0.3, 0.2])
    y = rng.random((persons, items)) < 1.0 / (1.0 + np.exp(-alpha[cls]))
    return pd.DataFrame({"person": np.repeat(np.arange(persons), items),
                         "item": np.tile([f"i{j:02d}" for j in range(items)], persons), "y": y.reshape(-1).astype(int)})


def model_of(folder: Path, spec: str, frame: pd.DataFrame):
    frame.to_csv(folder / "data.csv", index=False)
    (folder / "spec.yaml").write_text(spec)
    return prepare(folder / "spec.yaml").model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(13)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        models = {"cbpp_npmle": prepare(ROOT / "specs" / "cbpp_npmle.yaml").model}
        for name, spec, frame in (("npmle_10k_units_3_points", RI_SPEC, ri_data(rng)),
                                  ("lca_5k_persons_3_classes_10_items", LCA_SPEC, lca_data(rng))):
            folder = Path(tmp) / name
            folder.mkdir()
            models[name] = model_of(folder, spec, frame)
        print(f"{'model':<36} {'median (s)':>10} {'cpu (s)':>8} {'target (s)':>10} {'loglik':>16}  points  converged")
        for name, model in models.items():
            cpu = time.process_time()
            times, fit = timed_fits(model, args.repeat)
            cpu = (time.process_time() - cpu) / args.repeat
            median = statistics.median(times)
            ok = median < TARGETS[name]
            failed += not ok
            print(f"{name:<36} {median:>10.3f} {cpu:>8.3f} {TARGETS[name]:>10.1f} {fit.loglik:>16.4f}  "
                  f"{fit.model.discrete[0].K:>6}  {fit.converged}{'' if ok else '  OVER TARGET'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
