"""Parametric-bootstrap p-value of an LR test: simulate from the restricted fit, refit both models.

The replicate loop is a map over replicate indices of the pure function
`replicate(task, index)`: replicate i draws from its own generator
(simulate.replicate_rng: child i of SeedSequence(seed)), so the statistics
do not depend on how replicates are distributed: `mapper` runs the map in this
process (`in_process`) or on a Dask cluster (mlmrun/distributed/replicates.py),
with the same statistics in the same order. p = (1 + #{T_i >= T_obs}) / (1 + R) over the replicates
whose two refits converged (Davison & Hinkley 1997, eq. 4.11).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.postest.compare import ComparisonError
from mlmrun.postest.simulate import replicate_rng, simulate
from mlmrun.results import FitResult

ReplicateMap = Callable[[Callable[[Any, int], Any], Any, Sequence[int]], list[Any]]
"""(func, shared, indices) -> [func(shared, i) for i in indices] in index order, wherever the calls run;
`shared` (the task) is sent to each worker once, not once per replicate."""


def in_process(func: Callable[[Any, int], Any], shared: Any, indices: Sequence[int]) -> list[Any]:
    """The replicate map run here, one replicate after another."""
    return [func(shared, i) for i in indices]


@dataclass(frozen=True)
class BootstrapTask:
    """What every replicate needs: both compiled models, the restricted estimates and the seed."""

    restricted: CompiledModel
    full: CompiledModel
    values: np.ndarray
    seed: int


def make_task(restricted: FitResult, full: FitResult, seed: int) -> BootstrapTask:
    """The task of a pair of fits, refused when their rows or responses differ (one simulated y serves both)."""
    r, f = restricted.model, full.model
    if r.n != f.n or not np.array_equal(r.y, f.y) or not np.array_equal(r.eq_of_row, f.eq_of_row):
        raise ComparisonError("--bootstrap: the two models do not have the same response rows; a simulated response "
                              "from one must fit the other (same data, filters and responses)")
    return BootstrapTask(r, f, np.asarray(restricted.values, float), int(seed))


def replicate(task: BootstrapTask, index: int) -> float | None:
    """LR statistic of replicate `index` (None when a refit does not converge)."""
    from mlmrun.estimate import estimate

    y = simulate(task.restricted, task.values, replicate_rng(task.seed, index))
    try:
        small = estimate(replace(task.restricted, y=y))
        large = estimate(replace(task.full, y=y))
    except (ArithmeticError, ValueError, np.linalg.LinAlgError):
        return None
    if not (small.converged and large.converged):
        return None
    return max(0.0, 2.0 * (large.loglik - small.loglik))


def bootstrap_p(task: BootstrapTask, statistic: float, replicates: int,
                mapper: ReplicateMap = in_process) -> dict[str, Any]:
    """Bootstrap p-value of the observed `statistic` from `replicates` replicates mapped by `mapper`."""
    stats = list(mapper(replicate, task, range(replicates)))
    used = np.array([s for s in stats if s is not None], dtype=float)
    exceed = int(np.sum(used >= statistic - 1e-9))
    return {"p": (1 + exceed) / (1 + len(used)), "replicates": int(replicates), "replicates_used": int(len(used)),
            "exceeding": exceed, "seed": task.seed, "statistics": [None if s is None else float(s) for s in stats]}
