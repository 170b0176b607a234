"""A local Dask cluster of two worker processes, started and stopped by the tests that use it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import mlmrun
from mlmrun.distributed.cluster import LOCAL_HTTP
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def dask_client() -> Iterator[object]:
    """A client of LocalCluster(n_workers=2, threads_per_worker=1, processes=True), closed after the module.

    The workers import this checkout's mlmrun (checked), with BLAS pinned to one thread as `mlmrun batch` pins it.
    """
    from distributed import Client, LocalCluster

    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           host="127.0.0.1", silence_logs=logging.ERROR, env=env, scheduler_kwargs=LOCAL_HTTP)
    client = Client(cluster, set_as_default=False)
    try:
        where = client.run(lambda: __import__("mlmrun").__file__)
        assert set(where.values()) == {mlmrun.__file__}, where
        yield client
    finally:
        client.close()
        cluster.close()
