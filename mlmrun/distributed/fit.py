"""One fit over Dask workers: set up the partitions, run the single-process drivers on the client, tear down.

`fit_distributed(path, scheduler=..., workers=...)` reads the spec, gives
each worker some files of its partitioned Parquet folder
(distributed/partitions.py), compiles them there, and fits with the
estimate/ drivers over the proxies of distributed/objective.py:

- exact Gaussian (nested levels, ML or REML): gaussian_fit's optimiser
  (L-BFGS-B, escapes from SD saddles, Newton polish, snapping to the
  boundary) on the profiled deviance; standard errors as gaussian_se
  (differences of the analytic gradient, fixed part from (X'V^-1X)^-1); the
  LR test against the linear regression from summed normal equations;
- adaptive / ghq quadrature and its Laplace method: quadrature_fit's GLM
  start, re-adaptation rounds, Laplace polish, information, point check and
  LR test.

Empirical Bayes predictions are not gathered (they are per unit and stay on
the workers), so results.json has no `empirical_bayes` for these fits.
The client model (`DistributedModel`) is compiled from a small sample of the
data (the first top-level units of the first partition) for its parameter
table and structure, and carries the data-wide counts (rows, units per
level) for the report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlmrun.compile import compile_model
from mlmrun.compile.data_checks import check_level_sizes
from mlmrun.compile.level_order import check_level_order
from mlmrun.compile.model import CompiledModel
from mlmrun.compile.spec_checks import check_spec
from mlmrun.data.dataset import DatasetFile, combined_digest, dataset_files, is_dataset
from mlmrun.data.levels import LevelIndex
from mlmrun.data.load import LoadedData
from mlmrun.data.shown import shown_path
from mlmrun.distributed.objective import DistributedQuadrature
from mlmrun.distributed.partitions import (
    Partition,
    check_disjoint,
    check_tables,
    merge_schema,
    residual_starts,
    top_level_column,
    whole_data_checks_off,
)
from mlmrun.errors import DataError, SpecError
from mlmrun.likelihood.gaussian.deviance import LOG_2PI
from mlmrun.pipeline import Prepared, _located
from mlmrun.results import FitResult
from mlmrun.spec.loader import load_spec
from mlmrun.spec.model import Spec

SAMPLE_UNITS, SAMPLE_ROWS = 100, 100_000
"""The client compiles its model (parameter table and structure) from the first partition's first SAMPLE_UNITS
top-level units, at most SAMPLE_ROWS rows of them."""


@dataclass(frozen=True)
class CountedLevel(LevelIndex):
    """A level of the whole data as the client knows it: units, labels, parents and rows per unit, no row codes
    (the report's group summary reads `sizes`; nothing on the client indexes rows)."""

    unit_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))

    def sizes(self) -> np.ndarray:
        return self.unit_sizes


@dataclass(frozen=True)
class DistributedModel(CompiledModel):
    """The client's model: a sample's arrays for structure, the whole data's counts for the report."""

    n_total: int = 0

    @property
    def n(self) -> int:
        return self.n_total


class Pool:
    """One `Partition` actor per worker (Dask actors: the client calls them directly, not through the
    scheduler) and a map of one method over all of them, answers in partition order."""

    def __init__(self, actors: list[Any]) -> None:
        self.actors = actors

    def map(self, method: str, *args: Any) -> list[Any]:
        """`Partition.method(*args)` on every partition."""
        futures = [getattr(a, method)(*args) for a in self.actors]
        return [f.result() for f in futures]

    def engine(self, method: str, *args: Any) -> list[Any]:
        """The engine's `method(*args)` on every partition (Partition.engine)."""
        futures = [a.run(method, *args) for a in self.actors]
        return [f.result() for f in futures]


class EnginePool:
    """The pool as the proxies of distributed/objective.py see it: `map` calls the partitions' engines."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def map(self, method: str, *args: Any) -> list[Any]:
        return self.pool.engine(method, *args)


def check_supported(spec: Spec) -> None:
    """Refuse, at the offending key, what a distributed fit cannot do: a likelihood that is not a sum over
    top-level units, a design built from data-wide information the partitions do not share, or a model the
    single-process fit sends to another engine (the distributed fit must equal it)."""
    if any(lv.crossed for lv in spec.levels):
        at = next(i for i, lv in enumerate(spec.levels) if lv.crossed)
        raise SpecError.at(("levels", at, "crossed"), "crossed levels make the likelihood a non-separable sum "
                           "(units of a crossed level span the partitions); fit this model in one process "
                           "(drop `distributed` and the --scheduler/--local-workers options)")
    unsupported = [("weights", spec.weights is not None), ("structural.Gamma", bool(spec.structural.Gamma)),
                   ("residual_covariances", spec.residual_covariances is not None),
                   ("estimation.start_from", spec.estimation.start_from is not None),
                   ("estimation.vce", spec.estimation.vce not in (None, "oim")),
                   ("estimation.meanstructure", not spec.estimation.meanstructure),
                   ("fixed", bool(re.search(r"\b(center|scale|poly)\s*\(", spec.fixed)))]
    unsupported += [(f"levels.{i}.pweight", lv.pweight is not None) for i, lv in enumerate(spec.levels)]
    for i, eq in enumerate(spec.responses):
        unsupported += [(f"responses.{i}.{key}", bool(getattr(eq, key, None)))
                        for key in ("variance", "variance_by", "residuals", "choice", "thresholds", "scale",
                                    "zero_inflation", "composite")]
        unsupported.append((f"responses.{i}.family", eq.family in ("ordinal", "multinomial", "ranking")))
    for i, block in enumerate(spec.random):
        unsupported.append((f"random.{i}.distribution", block.distribution is not None))
    for i, lat in enumerate(spec.latent):
        unsupported += [(f"latent.{i}.loadings.by", lat.loadings is not None and lat.loadings.by is not None),
                        (f"latent.{i}.distribution", lat.distribution is not None),
                        (f"latent.{i}.classes", lat.classes is not None)]
    for key, bad in unsupported:
        if bad:
            loc = tuple(int(p) if p.isdigit() else p for p in key.split("."))
            raise SpecError.at(loc, f"a distributed fit does not support `{key}` (it needs data-wide information "
                               "or a likelihood that is not a sum over top-level units, or a center/scale/poly "
                               "of the whole data); fit this model in one process (drop `distributed` and the "
                               "--scheduler/--local-workers options)")
    gaussian = all(eq.family == "gaussian" and eq.link in (None, "identity") for eq in spec.responses)
    if spec.estimation.method == "REML" and not (gaussian and spec.estimation.exact):
        raise SpecError.at(("estimation", "method"), "REML needs the exact likelihood of a model whose every "
                           "response is gaussian with the identity link (and `exact: true`); write `method: ML`")
    if gaussian and spec.estimation.exact and spec.estimation.method == "ML" and spec.latent and not any(
            lat.loadings is not None and lat.loadings.on for lat in spec.latent):
        raise SpecError.at(("latent",), "a linear Gaussian model with `latent:` variables can be fitted by the "
                           "moments engine (sufficient statistics), which the distributed fit does not use; "
                           "write the effects under `random:`, or fit this model in one process")
    top_level_column(spec)


def precheck(spec: Spec, base_dir: Path, allow_outside: bool = False) -> list[DatasetFile]:
    """Everything a distributed fit checks before it starts a cluster: the spec, and the dataset folder's files."""
    check_spec(spec)
    check_supported(spec)
    if not is_dataset(base_dir, spec.data.path, allow_outside):
        raise DataError("data.path: a distributed fit reads a partitioned Parquet dataset (a folder of .parquet "
                        "files, each holding whole top-level units); name such a folder, or drop `distributed`")
    return dataset_files(base_dir, spec.data.path, "data.path", allow_outside)


def _route(model: CompiledModel) -> str:
    """'gaussian' (exact profiled ML/REML), 'laplace' (the joint Laplace engine) or 'quadrature', as
    estimate/_fit routes the whole data (the moments engine's models are refused by `check_supported`)."""
    from mlmrun.likelihood.preflight import uses_laplace_engine

    if model.is_linear_gaussian and model.spec.estimation.exact:
        return "gaussian"
    return "laplace" if uses_laplace_engine(model) else "quadrature"


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A client of the scheduler at `scheduler`, or of a local cluster of `workers` single-threaded processes
    (one worker: threads of this process, which start at once).

    Dask's own log is held at CRITICAL meanwhile: a worker's error reaches the client as the error it is
    (raised there with its message), and Dask's copy of it would be a second, traceback-laden report."""
    from dask.distributed import Client, LocalCluster

    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        if scheduler:
            with Client(scheduler) as client:
                yield client
            return
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=workers > 1, dashboard_address=":0",
                          silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
            yield client
    finally:
        logger.setLevel(level)


@dataclass
class Setup:
    """Everything a distributed fit holds: the client model, the partitions' pool and what the report needs."""

    model: DistributedModel
    parts: Pool
    n_partitions: int
    files: list[str]
    sample: pd.DataFrame
    """The rows the client model was compiled from (the report's loadings table reads its labels)."""


def _levels(spec: Spec, compiled: list[dict]) -> tuple[CountedLevel, ...]:
    """Data-wide LevelIndex per level from the partitions' unit sizes, labels and parents (units offset per partition)."""
    out = []
    for k, lv in enumerate(spec.levels):
        sizes = np.concatenate([c["levels"][k]["sizes"] for c in compiled])
        labels = np.concatenate([c["levels"][k]["labels"] for c in compiled])
        parent = None
        if compiled[0]["levels"][k]["parent"] is not None:
            offsets = np.cumsum([0] + [len(c["levels"][k + 1]["sizes"]) for c in compiled])
            parent = np.concatenate([c["levels"][k]["parent"] + off for c, off in zip(compiled, offsets, strict=False)])
        out.append(CountedLevel(lv.name, lv.id, np.zeros(0, dtype=np.intp), len(sizes), labels, lv.crossed, parent,
                                sizes))
    return tuple(out)


def open_fit(client: Any, spec: Spec, base_dir: Path, allow_outside: bool = False) -> Setup:
    """Read, check and compile the partitions on the workers; the client model from a sample."""
    files = precheck(spec, base_dir, allow_outside)
    workers = sorted(client.scheduler_info()["workers"])
    groups = [(w, files[k::len(workers)]) for k, w in enumerate(workers) if files[k::len(workers)]]
    futures = [client.submit(Partition, spec, group, workers=[w], allow_other_workers=False, pure=False, actor=True)
               for w, group in groups]
    pool = Pool([f.result() for f in futures])
    reports = pool.map("report")
    level, column = top_level_column(spec)
    order = sorted((f for rep in reports for f in rep["facts"]), key=lambda f: f.name)
    check_disjoint(order, level, column)
    schema = merge_schema(spec, reports)
    carrying = {b.level for b in spec.random} | {lat.level for lat in spec.latent}
    check_level_order(pd.concat([rep["ids"] for rep in reports], ignore_index=True), spec.levels, carrying)
    sample_frame = pool.actors[0].sample(schema, SAMPLE_UNITS, SAMPLE_ROWS).result()
    compiled = pool.map("compile", schema)
    check_tables([c["table"] for c in compiled], [rep["facts"][0].name for rep in reports])
    by_path = {item.path: d for (_, group), rep in zip(groups, reports, strict=True)
               for item, d in zip(group, rep["digests"], strict=True)}
    digest = combined_digest([by_path[item.path] for item in files])  # as data/dataset.read_dataset: path order
    with whole_data_checks_off():
        base = compile_model(spec, LoadedData(sample_frame, digest, len(sample_frame), spec.data.path))
    check_tables([compiled[0]["table"], base.partable.frame], ["the partitions", "a sample of them"])
    values = {f.name: getattr(base, f.name) for f in fields(CompiledModel)}
    values.update(levels=_levels(spec, compiled), n_rows_read=sum(c["n_rows_read"] for c in compiled),
                  n_dropped_missing=sum(c["n_dropped"] for c in compiled), data_sha256=digest)
    base = residual_starts(base, [c["moments"] for c in compiled])
    values["partable"] = base.partable
    model = DistributedModel(**values, n_total=sum(c["n"] for c in compiled))
    check_level_sizes(list(model.levels), list(model.latent))
    return Setup(model, pool, len(files), [shown_path(f.path) for f in files], sample_frame)


def fit_setup(setup: Setup, progress: Callable | None = None) -> FitResult:
    """Fit the opened partitions with the route the whole data would take (module docstring); like
    estimate.estimate, the log likelihood by iteration goes to extras['history'] and ICCs to extras['icc']."""
    from mlmrun.estimate import with_wald
    from mlmrun.estimate.icc import icc_table
    from mlmrun.progress import phase

    history: list[tuple[int, float]] = []

    def record(iteration: int, loglik: float, *more: object) -> None:
        history.append((int(iteration), float(loglik)))
        if progress is not None:
            progress(iteration, loglik, *more)

    record.phase = lambda name: phase(progress, name)  # type: ignore[attr-defined]  # phases pass through
    model = setup.model
    kind = _route(model)
    setup.parts.map("build", kind)
    engines = EnginePool(setup.parts)
    if kind == "gaussian":
        from mlmrun.distributed.routes import fit_gaussian_distributed

        fit = fit_gaussian_distributed(model, engines, record)
    elif kind == "laplace":
        from mlmrun.distributed.objective import DistributedLaplace
        from mlmrun.estimate.laplace_fit import fit_laplace

        fit = fit_laplace(model, record, engine=DistributedLaplace(model, engines),
                          glm=DistributedQuadrature(model, engines))
    else:
        from mlmrun.distributed.routes import fit_quadrature_distributed

        fit = fit_quadrature_distributed(model, DistributedQuadrature(model, engines), record)
    fit = with_wald(fit)
    fit.extras["history"] = history
    table = icc_table(fit)
    if table:
        fit.extras["icc"] = table
    fit.extras["distributed"] = {"partitions": setup.n_partitions, "workers": len(setup.parts.actors),
                                 "files": setup.files}
    return fit


def fit_distributed(path: str | Path, scheduler: str | None = None, workers: int | None = None,
                    allow_outside: bool = False, progress: Callable | None = None, client: Any = None) -> FitResult:
    """Fit the spec at `path` over Dask workers: those of `client`, else of the scheduler at `scheduler`, else
    of a local cluster of `workers` processes (neither given: the spec's `estimation.distributed`, else 2 local)."""
    return fit_prepared(path, scheduler, workers, allow_outside, progress, client)[0]


def fit_prepared(path: str | Path, scheduler: str | None = None, workers: int | None = None,
                 allow_outside: bool = False, progress: Callable | None = None, client: Any = None
                 ) -> tuple[FitResult, Prepared]:
    """`fit_distributed`, and a Prepared for the report (its data: the sample the client model was compiled from)."""
    path = Path(path)
    spec, marks = load_spec(path)
    t0 = time.perf_counter()
    try:
        if client is not None:
            setup = open_fit(client, spec, path.parent, allow_outside)
            fit = fit_setup(setup, progress)
        else:
            dist = spec.estimation.distributed
            if scheduler is None and workers is None and dist is not None:  # options override the spec's key
                scheduler, workers = spec_cluster(dist, allow_outside)
            n = workers if workers is not None else 2
            precheck(spec, path.parent, allow_outside)  # refuse before starting a cluster
            with dask_client(scheduler, n) as own:
                setup = open_fit(own, spec, path.parent, allow_outside)
                fit = fit_setup(setup, progress)
    except (SpecError, DataError) as exc:
        raise _located(exc, marks, path) from None
    model = setup.model
    data = LoadedData(setup.sample, model.data_sha256, model.n_rows_read, spec.data.path)
    return replace(fit, fit_seconds=time.perf_counter() - t0), Prepared(path, spec, marks, data, model)


def spec_cluster(dist: Any, trusted: bool) -> tuple[str | None, int]:
    """The cluster a spec's `estimation.distributed` asks for. Specs arrive in untrusted pull requests: a
    scheduler address (where the data would be sent and the work run, and whose answers the client unpickles)
    is honoured only for a trusted spec (--allow-outside-data); local workers are capped at this machine's cores."""
    if dist.scheduler is not None and not trusted:
        raise SpecError.at(("estimation", "distributed", "scheduler"),
                           "a spec cannot choose the Dask scheduler (the data would go to that machine and its "
                           "answers be unpickled here); pass --scheduler ADDRESS on the command line, or, for a "
                           "spec you trust, --allow-outside-data")
    return dist.scheduler, min(dist.workers, os.cpu_count() or 1)


def wants_distributed(path: str | Path, scheduler: str | None, workers: int | None) -> bool:
    """Whether `mlmrun fit` fits over Dask workers: a --scheduler or --local-workers option, or the spec's key."""
    if scheduler is not None or workers is not None:
        return True
    return load_spec(Path(path))[0].estimation.distributed is not None


def regression_loglik(sums: tuple, reml: bool) -> float:
    """(Restricted) log likelihood of the linear regression with one residual SD, from X'X, X'y, y'y and n."""
    XtX, Xty, yty, n = sums
    p = len(Xty)
    beta = np.linalg.solve(XtX, Xty) if p else np.zeros(0)
    ss = max(float(yty - 2 * beta @ Xty + beta @ XtX @ beta), 1e-300)
    dof = n - p if reml else n
    dev = dof * LOG_2PI + n * np.log(ss / dof) + dof
    if reml and p:
        dev += np.linalg.slogdet(XtX)[1] - p * np.log(ss / dof)
    return -0.5 * float(dev)


__all__ = ["DistributedModel", "Pool", "dask_client", "fit_distributed", "fit_setup", "open_fit", "regression_loglik"]
