"""Benchmark: the survey-weighted specs (issue 12) against their budget of 0.3 s in-process each.

For specs/pisa_size.yaml and specs/pisa_gk.yaml (2069 students in 148 schools, student and school
sampling weights, robust SEs): the median in-process `estimate()` time (model prepared once) and the
log pseudolikelihood. Exit status 1 when a median exceeds the budget.
Usage: python bench/bench_weights.py [--repeat N]
"""

from __future__ import annotations

from common import ROOT, timed_fits  # first: pins BLAS threads before numpy loads

# isort: split

import argparse
import statistics

from mlmrun.pipeline import prepare

SPECS = ("pisa_size", "pisa_gk")
BUDGET_S = 0.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    over = 0
    print(f"{'spec':<12} {'median fit (s)':>15} {'budget (s)':>11} {'log pseudolikelihood':>22}")
    for name in SPECS:
        times, fit = timed_fits(prepare(ROOT / "specs" / f"{name}.yaml").model, args.repeat)
        median = statistics.median(times)
        over += median > BUDGET_S
        print(f"{name:<12} {median:>15.4f} {BUDGET_S:>11.2f} {fit.loglik:>22.1f}")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
