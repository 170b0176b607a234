"""Evaluate mlmrun's log likelihood at given parameter values through the public pipeline.

Every parameter is fixed with `constraints.fix` in the spec, so `estimate` has nothing
to optimise and reports the log likelihood of exactly those values, by the same path
(plan, rules, adaptation, families) a real fit takes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun import estimate, prepare
from mlmrun.results import FitResult


def write_case(folder: Path, frame: pd.DataFrame, body: str, fix: dict[str, float], name: str = "pin") -> Path:
    """Write data.csv and a spec (its `body` plus constraints.fix of every value in `fix`); return the spec path."""
    frame.to_csv(folder / "data.csv", index=False)
    fixes = ", ".join(f"{json.dumps(k)}: {float(v)!r}" for k, v in fix.items())
    text = f"name: {name}\ndata: {{path: data.csv}}\n{body.strip()}\n"
    if fix:
        text += f"constraints:\n  fix: {{{fixes}}}\n"
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def fit_fixed(path: Path) -> FitResult:
    """Fit a spec whose parameters are all fixed; fail if any parameter was left free."""
    model = prepare(path).model
    free = [str(n) for n, k in zip(model.partable.names, model.partable.frame["free"], strict=True) if k > 0]
    assert not free, f"parameters left free: {free}"
    return estimate(model)


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(a - top), axis=axis))
