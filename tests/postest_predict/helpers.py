"""Running `mlmrun fit` and `mlmrun predict` in-process for the post-estimation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun import cli


def run(*argv: str) -> int:
    """The CLI's exit code for `mlmrun ARGV...`."""
    return cli.main([str(a) for a in argv])


def fit_and_predict(spec: Path, folder: Path, *options: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit `spec` into folder/fit, then predict from its results.json; (per-row table, by-unit table)."""
    assert run("fit", spec, "--out", folder / "fit", "--quiet") == 0
    rows, units = folder / "rows.csv", folder / "units.csv"
    assert run("predict", spec, "--results", folder / "fit" / "results.json", "--out", rows, "--by-unit", units,
               "--quiet", *options) == 0
    return pd.read_csv(rows), pd.read_csv(units)


def assert_scaled(name: str, ours: np.ndarray, target: np.ndarray, rel: float) -> None:
    """|ours - target| <= rel * (|target| + mean |target|): relative, with values near zero (residuals, small
    BLUPs) judged on the scale of the quantity rather than of themselves."""
    ours, target = np.asarray(ours, dtype=float), np.asarray(target, dtype=float)
    assert ours.shape == target.shape, f"{name}: shape {ours.shape} vs {target.shape}"
    assert np.isfinite(target).all() and np.isfinite(ours).all(), f"{name}: missing values"
    scale = np.abs(target) + np.mean(np.abs(target))
    worst = int(np.argmax(np.abs(ours - target) / scale))
    assert np.all(np.abs(ours - target) <= rel * scale), (
        f"{name}: element {worst}: ours {ours[worst]!r}, target {target[worst]!r} (tolerance {rel:g} x scale)")
