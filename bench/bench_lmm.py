"""Benchmark (issue 11): every shipped linear mixed model, in-process compile + fit, beside the peer's complete call.

For each spec: the median over repeats of the CPU seconds (time.process_time:
the bench machine is shared, and CPU time is what one core spends) of
`prepare(spec)` (reading the data, checking, compiling) plus `estimate()`
on it, the formula cache cleared first so every repeat compiles as a fresh
process would. Beside it the peer's recorded time from the reference file
(lme4::lmer or nlme::lme `system.time` around the complete call, model frame
included: elapsed seconds on a 2-core machine shared with other jobs, so
indicative) and the ratio ours / peer (issue 11's target: at most 1). Specs
whose reference files record no peer time (the pig models are Stata
references) show '-'.

BLAS threads are pinned to one before numpy loads. Usage:
python bench/bench_lmm.py [--repeat N] [--json FILE]
"""

from __future__ import annotations

from common import ROOT, peer_seconds  # first: pins BLAS threads before numpy loads

# isort: split

import argparse
import json
import statistics
import time

from mlmrun.compile import design as compile_design
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare

SPECS = {
    "sleepstudy": ("sleepstudy__rs_ml", "lme4"),
    "penicillin": ("penicillin__crossed_ml", "lme4"),
    "productivity": ("productivity__nested_ri_ml", "lme4"),
    "productivity_reml": ("productivity__nested_ri_reml", "lme4"),
    "gcse_slope": ("exam__gcse_rs_ml_nstu_gt4", "lme4"),
    "hsb_slope": ("hsb82__cses_rs_ml", "lme4"),
    "ovary_ar2": ("ovary__ri_ar2_ml", "nlme"),
    "ovary_ar2_reml": ("ovary__ri_ar2_reml", "nlme"),
    "pig_intercept": (None, None),
    "pig_slope": (None, None),
    "pig_slope_reml": (None, None),
    "pig_slope_unstructured": (None, None),
    "pig_crossed": (None, None),
    "productivity_blocks": (None, None),
    "scotssec": ("scotssec__crossed_ml", "lme4"),
}


def compile_and_fit(spec: str) -> tuple[float, float, object]:
    """CPU seconds of one fresh compile and one fit of specs/`spec`.yaml, and the fit."""
    compile_design.PARSED.clear()
    t0 = time.process_time()
    model = prepare(ROOT / "specs" / f"{spec}.yaml").model
    t1 = time.process_time()
    fit = estimate(model)
    return t1 - t0, time.process_time() - t1, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'spec':<24} {'compile (s)':>11} {'fit (s)':>8} {'ours (s)':>9} {'peer':>5} {'peer (s)':>9} "
          f"{'ours/peer':>9}  loglik")
    for spec, (ref, peer) in SPECS.items():
        compile_and_fit(spec)  # warm imports and caches other than the formula cache
        runs = [compile_and_fit(spec) for _ in range(args.repeat)]
        comp = statistics.median(r[0] for r in runs)
        fit_s = statistics.median(r[1] for r in runs)
        total = statistics.median(r[0] + r[1] for r in runs)
        peer_s = peer_seconds(ref, "timing.median_seconds")
        ratio = total / peer_s if peer_s else None
        fit = runs[-1][2]
        rows.append({"spec": spec, "compile_cpu_s": comp, "fit_cpu_s": fit_s, "total_cpu_s": total, "peer": peer,
                     "peer_s": peer_s, "ratio": ratio, "loglik": fit.loglik, "converged": bool(fit.converged)})
        print(f"{spec:<24} {comp:>11.4f} {fit_s:>8.4f} {total:>9.4f} {peer or '-':>5} "
              f"{peer_s if peer_s is not None else '-':>9} {f'{ratio:.2f}' if ratio else '-':>9}  {fit.loglik:.4f}",
              flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0 if all(r["converged"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
