"""Shared set-up for the bench scripts: BLAS pinned to one thread, repository paths, peer timings.

Import this module first: it pins the threads before numpy is loaded, so figures compare with
single-threaded peers (lme4, glmmTMB, ordinal were timed single-threaded on a 2-core machine).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def peer_seconds(file: str | None, path: str | None) -> float | None:
    """A peer's recorded fit time: the dotted `path` inside tests/reference/`file`.json, or None."""
    if not file or not path:
        return None
    node = json.loads((REF / f"{file}.json").read_text())
    for key in path.split("."):
        node = node[key]
    return float(node)


def timed_fits(model, repeat: int) -> tuple[list[float], object]:
    """Wall seconds of `repeat` in-process fits of one compiled model, and the last FitResult."""
    import time

    from mlmrun.estimate import estimate

    times, fit = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        fit = estimate(model)
        times.append(time.perf_counter() - start)
    return times, fit
