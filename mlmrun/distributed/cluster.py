"""The Dask client a command runs on: an existing cluster (--scheduler ADDRESS) or a LocalCluster (--local-workers N).

A LocalCluster is sized to the machine (one single-threaded worker process per
CPU this process may use), listens on 127.0.0.1 only, and its workers run with
BLAS pinned to one thread, so N workers use N cores rather than N times the
BLAS pool. Both are closed when the command ends, however it ends. A bad or
unreachable address is a ClusterError (exit 2, one line), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from mlmrun.display import excerpt
from mlmrun.errors import MlmrunError

if TYPE_CHECKING:
    from distributed import Client

BLAS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Set in every local worker process: each worker is one core's worth of work."""
LOCAL_HTTP = {"dashboard_address": "127.0.0.1:0"}
"""The scheduler's small HTTP server (health, metrics; no dashboard): a free local port, not 8787 on every interface."""
CONNECT_TIMEOUT = 30.0
"""Seconds to reach a scheduler and find a worker there (--connect-timeout)."""


class ClusterError(MlmrunError):
    """The cluster cannot be reached or started (exit 2 with what to do instead)."""


def machine_workers() -> int:
    """The number of CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def add_cluster_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--scheduler ADDRESS | --local-workers N, and --connect-timeout, on a subcommand's parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help=f"run {what} on the Dask cluster whose scheduler listens at ADDRESS (tcp://HOST:PORT)")
    group.add_argument("--local-workers", type=int, metavar="N",
                       help=f"run {what} on a local Dask cluster of N single-threaded worker processes")
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                        help=f"with --scheduler: seconds to reach it and find a worker (default {CONNECT_TIMEOUT:g})")


def check_address(address: str) -> None:
    """Refuse an address Dask cannot parse (it would fail later with a traceback), naming the form to write."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except ValueError as exc:
        raise ClusterError(f"--scheduler: {excerpt(address)} is not a Dask scheduler address ({exc}); write "
                           "tcp://HOST:PORT as the scheduler prints it (e.g. tcp://10.0.0.5:8786)") from None


def _connect(address: str, timeout: float) -> Client:
    from distributed import Client

    check_address(address)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"--scheduler: cannot reach a Dask scheduler at {excerpt(address)} within {timeout:g} s "
                           f"({exc}); start one (`dask scheduler`, or dask-jobqueue / dask-kubernetes), check the "
                           "address and port, or run locally with --local-workers N") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
        check_worker_versions(client, address)
    except (OSError, TimeoutError):
        client.close()
        raise ClusterError(f"--scheduler: the scheduler at {excerpt(address)} has no workers after {timeout:g} s; "
                           "start workers (`dask worker ADDRESS`) or scale the cluster up, then try again") from None
    except ClusterError:
        client.close()
        raise
    return client


def mlmrun_version() -> str:
    """This process's mlmrun version (run on every worker of a cluster by check_worker_versions)."""
    from mlmrun import __version__

    return __version__


def check_worker_versions(client: Client, address: str) -> None:
    """Refuse a cluster whose workers cannot import mlmrun or run another version than this process."""
    from mlmrun import __version__

    try:
        versions = client.run(mlmrun_version)
    except Exception as exc:  # a worker without mlmrun fails to unpickle the call: any exception type
        raise ClusterError(f"--scheduler: the workers at {excerpt(address)} cannot run mlmrun ({type(exc).__name__}: "
                           f"{excerpt(str(exc))}); install mlmrun {__version__} in the workers' Python environment") from None
    other = sorted(f"{worker} has {version}" for worker, version in versions.items() if version != __version__)
    if other:
        raise ClusterError(f"--scheduler: workers run another mlmrun than this one ({__version__}): {'; '.join(other[:3])}"
                           f"{'...' if len(other) > 3 else ''}; install the same version everywhere")


@contextmanager
def dask_client(scheduler: str | None = None, local_workers: int | None = None,
                timeout: float = CONNECT_TIMEOUT) -> Iterator[Client]:
    """A client of the cluster at `scheduler`, else of a LocalCluster of `local_workers` (default: the machine's CPUs).

    Everything started here is closed on exit, also after an error or Ctrl-C.
    """
    if not (0 < timeout < math.inf):
        raise ClusterError(f"--connect-timeout: {timeout:g}; give a positive number of seconds such as 30")
    with ExitStack() as stack:
        if scheduler is not None:
            client = _connect(scheduler, timeout)
            stack.callback(client.close)
        else:
            n = machine_workers() if local_workers is None else local_workers
            if n < 1:
                raise ClusterError(f"--local-workers: {n}; give a positive number of worker processes such as "
                                   f"{machine_workers()} (this machine's CPUs)")
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, scheduler_kwargs=LOCAL_HTTP, silence_logs=logging.ERROR,
                                   env=dict(BLAS_ENV))
            stack.callback(cluster.close)
            client = Client(cluster, set_as_default=False)
            stack.callback(client.close)
        yield client


def n_workers(client: Client) -> int:
    """Workers the scheduler knows now."""
    return len(client.nthreads())
