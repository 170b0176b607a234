"""Shared random test cases for the families tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from mlmrun.families import Family, get_family

THRESHOLDS = np.array([-1.0, 0.2, 1.5])


@dataclass(frozen=True)
class Case:
    """A family with data and parameter values at which to evaluate it."""

    family: Family
    y: np.ndarray
    nu: np.ndarray
    params: np.ndarray | None
    trials: np.ndarray | None


def make_case(
    family: str, link: str, seed: int = 0, nodes: tuple[int, ...] = (3,), binomial_trials: bool = True
) -> Case:
    """Random y, nu (n rows x node axes) and family parameters that exercise every code path."""
    rng = np.random.default_rng(seed)
    n = 12
    shape = (n, *nodes)
    fam = get_family(family, link)
    params = trials = None
    if family == "gaussian":
        nu = rng.normal(0.0, 0.7, shape)
        y = rng.normal(1.0, 1.5, n)
        params = rng.uniform(0.5, 2.0, n)
    elif family == "binomial":
        nu = rng.uniform(-3.0, 3.0, shape)
        if binomial_trials:
            trials = rng.integers(1, 11, n).astype(float)
            y = rng.binomial(trials.astype(int), 0.4).astype(float)
        else:
            y = np.tile([0.0, 1.0], n // 2)
    elif family == "poisson":
        nu = rng.normal(1.0, 0.6, shape)
        y = rng.poisson(3.0, n).astype(float)
    elif family == "gamma":
        nu = rng.normal(0.0, 1.0, shape)
        y = rng.gamma(2.0, 1.0, n)
        params = rng.uniform(0.5, 5.0, n)
    elif family == "ordinal":
        nu = rng.normal(0.0, 1.5, shape)
        y = np.arange(n, dtype=float) % (THRESHOLDS.size + 1)
        params = THRESHOLDS.copy()
    elif family in ("multinomial", "ranking"):  # 4 choice sets of 3 alternatives; params are the set ids
        nu = rng.normal(0.0, 1.5, shape)
        params = np.repeat(np.arange(n // 3), 3)
        y = np.tile([1.0, 0.0, 0.0] if family == "multinomial" else [2.0, 1.0, 0.0], n // 3)
    elif family in ("nbinom2", "nbinom1", "zip", "zinb2", "zinb1"):
        nu = rng.normal(1.0, 0.6, shape)
        y = rng.negative_binomial(2, 0.4, n).astype(float)
        y[:3] = 0.0
        cols = [rng.uniform(0.5, 5.0, n)] if family != "zip" else []
        params = np.column_stack(cols + ([rng.normal(-1.0, 0.7, n)] if family.startswith("zi") else []))
    elif family == "composite_poisson":
        nu = rng.normal(1.0, 0.6, shape)
        y = rng.poisson(3.0, n).astype(float)
        y[:2] = 0.0
        params = rng.normal(0.0, 0.8, (n, 1))
    elif family == "composite_gaussian":
        nu = rng.normal(0.0, 0.7, shape)
        y = rng.normal(1.0, 1.5, n)
        params = np.column_stack([rng.uniform(0.5, 2.0, n), rng.normal(0.0, 0.8, n)])
    elif family == "censored_gaussian":
        nu = rng.normal(0.0, 0.7, shape)
        y = rng.normal(1.0, 1.5, n)
        kind = np.arange(n) % 4
        lo = np.where(kind == 1, -np.inf, y)
        hi = np.where(kind == 2, np.inf, np.where(kind == 3, y + 1.0, y))
        params = np.column_stack([rng.uniform(0.5, 2.0, n), lo, hi])
    else:
        raise AssertionError(family)
    return Case(fam, y, nu, params, trials)


@pytest.fixture
def case_factory() -> Callable[..., Case]:
    return make_case
