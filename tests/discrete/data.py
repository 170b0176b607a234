"""Small simulated data sets for the discrete-latent tests (fixed seeds), written next to a spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun.compile.model import CompiledModel
from mlmrun.pipeline import prepare


def class_data(n: int, items: int, seed: int, alpha: np.ndarray, a: np.ndarray, g: np.ndarray) -> pd.DataFrame:
    """Binary items from a latent class model: class probabilities softmax(a + g x), P(y_ij = 1 | c) = expit(alpha[c, j])."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    logits = a[None, :] + x[:, None] * g[None, :]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    cls = (p.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1)
    y = (rng.random((n, items)) < 1.0 / (1.0 + np.exp(-alpha[cls]))).astype(int)
    return pd.DataFrame({"person": np.repeat(np.arange(1, n + 1), items),
                         "item": np.tile([f"i{j + 1:02d}" for j in range(items)], n),
                         "y": y.reshape(-1), "x": np.repeat(x, items)})


def ordinal_data(n: int, seed: int) -> pd.DataFrame:
    """Three ordinal items per person with a two-point person effect and item-specific loadings."""
    rng = np.random.default_rng(seed)
    eta = np.where(rng.random(n) < 0.3, 1.5, -0.6)
    lam = np.array([1.0, 0.7, 1.3])
    latent = eta[:, None] * lam[None, :] + rng.logistic(size=(n, 3))
    y = np.digitize(latent, [-1.0, 0.5])
    return pd.DataFrame({"person": np.repeat(np.arange(1, n + 1), 3), "item": np.tile(["a", "b", "c"], n),
                         "y": y.reshape(-1), "z": np.tile([0.0, 1.0, -1.0], n)})


def gaussian_data(n: int, seed: int) -> pd.DataFrame:
    """Four gaussian rows per unit with a three-point unit intercept."""
    rng = np.random.default_rng(seed)
    u = rng.choice([-1.0, 0.2, 1.4], size=n, p=[0.3, 0.5, 0.2])
    x = rng.normal(size=(n, 4))
    y = 1.0 + 0.5 * x + u[:, None] + rng.normal(scale=0.7, size=(n, 4))
    return pd.DataFrame({"unit": np.repeat(np.arange(1, n + 1), 4), "x": x.reshape(-1), "y": y.reshape(-1)})


def compiled(folder: Path, spec: str, frame: pd.DataFrame) -> CompiledModel:
    """Write data.csv and spec.yaml into `folder` and compile them."""
    frame.to_csv(folder / "data.csv", index=False)
    (folder / "spec.yaml").write_text(spec)
    return prepare(folder / "spec.yaml").model


def three_level_data(clusters: int, seed: int) -> pd.DataFrame:
    """Binary rows (3 per person, 4 persons per cluster): a two-point cluster effect and a normal person effect."""
    rng = np.random.default_rng(seed)
    c_eff = np.where(rng.random(clusters) < 0.4, 1.0, -0.7)
    persons = clusters * 4
    p_eff = rng.normal(scale=0.8, size=persons)
    x = rng.normal(size=(persons, 3))
    nu = -0.2 + 0.6 * x + p_eff[:, None] + np.repeat(c_eff, 4)[:, None]
    y = (rng.random((persons, 3)) < 1.0 / (1.0 + np.exp(-nu))).astype(int)
    return pd.DataFrame({"cluster": np.repeat(np.arange(1, clusters + 1), 12), "person": np.repeat(np.arange(1, persons + 1), 3),
                         "x": x.reshape(-1), "y": y.reshape(-1)})
