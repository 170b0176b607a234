"""Replicate loops (parametric bootstrap of LR tests) on a Dask cluster, with the results they give in-process.

A replicate loop is a map of a pure function `func(shared, index)` over replicate
indices (postest/bootstrap.py ReplicateMap); each replicate seeds its own generator
from (seed, index). Here the shared task is scattered to every worker once, one
Dask task per index runs the same function, and the results are gathered in index
order: the statistics, and so the p-value, do not depend on the number of workers
or on which worker ran which replicate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

    from mlmrun.postest.bootstrap import ReplicateMap


def dask_map(client: Client) -> ReplicateMap:
    """A ReplicateMap running every replicate as a task on the cluster of `client`."""

    def mapper(func: Callable[[Any, int], Any], shared: Any, indices: Sequence[int]) -> list[Any]:
        indices = [int(i) for i in indices]
        if not indices:
            return []
        [task] = client.scatter([shared], broadcast=True, hash=False)
        futures = client.map(func, [task] * len(indices), indices, pure=False)
        try:
            return list(client.gather(futures))
        finally:
            client.cancel([*futures, task])

    return mapper
