"""Comparison helpers for reference tests: read peer/published targets, compare with a clear message.

`load_reference("pig__ri_ml", "fixed_effects", "week", "estimate")` walks a
reference JSON (tests/reference/<file>.json) by dict keys and list indices;
a missing key fails with the keys that do exist, so a typo is not mistaken
for a numerical failure.

`assert_close(name, ours, target, abs_tol=..., sig_digits=...)` passes when
|ours - target| is within the absolute tolerance and/or within half a unit
of the target's last significant digit (sig_digits=4: 0.6066851 -> 5e-5).
Both criteria must hold when both are given. Arrays are compared
elementwise and the message names the worst element. A target that is
null (None), NaN or infinite fails: a reference file with a missing number
must never make a comparison pass vacuously (NaN compares false with any
tolerance).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_DIR = Path(__file__).resolve().parent


@cache
def _read(file: str) -> Any:
    name = file if file.endswith(".json") else f"{file}.json"
    path = REFERENCE_DIR / name
    if not path.exists():
        known = sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))
        raise FileNotFoundError(f"no reference file {path.name} in {REFERENCE_DIR}; files are {known}")
    return json.loads(path.read_text())


def load_reference(file: str, *keys: str | int) -> Any:
    """The value at `keys` in tests/reference/<file>.json (the whole document without keys)."""
    node = _read(file)
    walked: list[str | int] = []
    for key in keys:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            options = list(node) if isinstance(node, dict) else f"{len(node)} items" if isinstance(node, list) else type(node).__name__
            raise KeyError(f"{file}: no key {key!r} under {walked or '<top>'}; available: {options}") from None
        walked.append(key)
    return node


def sig_tolerance(target: float, sig_digits: int) -> float:
    """Half a unit in the last of `sig_digits` significant digits of target."""
    if target == 0 or not math.isfinite(target):
        return 0.5 * 10.0 ** (-sig_digits)
    exponent = math.floor(math.log10(abs(target)))
    return 0.5 * 10.0 ** (exponent - sig_digits + 1)


def _no_null(name: str, target: Any) -> Any:
    """target, unless it is or holds None (np.asarray would quietly turn None into NaN)."""
    if target is None:
        raise AssertionError(f"{name}: the target is null (None); fix the reference file or the key read from it")
    if isinstance(target, list | tuple):
        for item in target:
            _no_null(name, item)
    return target


def assert_close(name: str, ours: Any, target: Any, abs_tol: float | None = None, sig_digits: int | None = None) -> None:
    """Fail unless ours agrees with target within abs_tol and/or to sig_digits significant digits."""
    if abs_tol is None and sig_digits is None:
        raise ValueError("assert_close needs abs_tol or sig_digits (say which agreement the reference supports)")
    ours_a = np.atleast_1d(np.asarray(ours, dtype=float))
    target_a = np.atleast_1d(np.asarray(_no_null(name, target), dtype=float))
    if ours_a.shape != target_a.shape:
        raise AssertionError(f"{name}: shape {ours_a.shape} of ours differs from the target's {target_a.shape}")
    problems = []
    for idx in np.ndindex(target_a.shape):
        o, t = float(ours_a[idx]), float(target_a[idx])
        diff = abs(o - t)
        where = f"[{', '.join(map(str, idx))}]" if target_a.size > 1 else ""
        if not math.isfinite(t):
            problems.append((math.inf, f"{name}{where}: the target is {t}, not a number to compare with; "
                                       "fix the reference file or the key read from it"))
            continue
        if not math.isfinite(o):
            problems.append((math.inf, f"{name}{where}: ours is {o}, target {t!r}"))
            continue
        if abs_tol is not None and diff > abs_tol:
            problems.append((diff / abs_tol, f"{name}{where}: ours {o!r} vs target {t!r}: |diff| = {diff:.3g} > "
                                             f"absolute tolerance {abs_tol:.3g}"))
        if sig_digits is not None:
            tol = sig_tolerance(t, sig_digits)
            if diff > tol:
                problems.append((diff / tol, f"{name}{where}: ours {o!r} vs target {t!r}: |diff| = {diff:.3g} > "
                                             f"{tol:.3g}, so they do not agree to {sig_digits} significant digits"))
    if problems:
        problems.sort(key=lambda p: -p[0])
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise AssertionError(problems[0][1] + more)


def printed_half_unit(printed: float) -> float:
    """Half a unit in the last decimal of a number as printed in a reference file (0.05458 -> 5e-6)."""
    text = repr(float(printed))
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return 0.5 * 10.0 ** -decimals


LOGLIK_FLOOR = 1e-6
"""Agreement asked of a log likelihood whose peer printed more digits than its optimiser's convergence supports."""


def loglik_tolerance(printed: float) -> float:
    """The reference's own precision for a log likelihood: half its last printed unit, at least LOGLIK_FLOOR."""
    return max(printed_half_unit(printed), LOGLIK_FLOOR)
