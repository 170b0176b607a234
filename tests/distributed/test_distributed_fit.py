"""One fit over a 2-worker Dask LocalCluster equals the single-process fit of the same data.

The data are a shipped dataset written as 3 Parquet files (whole top-level
units per file) into a temporary spec folder; the single-process fit reads
the same folder (data/dataset.py concatenates it). The issue's tolerances:
log likelihood 1e-8, estimates and standard errors 1e-6 (Laplace SEs: see
test_laplace_through_the_quadrature_proxy). The REML fit is also held to
lme4's restricted log likelihood (tests/reference).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.distributed.fit import fit_distributed
from mlmrun.errors import DataError
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult
from tests.conftest import ROOT, SPECS, write_spec

dask_distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """Two single-threaded worker processes for the whole module, stopped at its end."""
    with dask_distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=40) as cluster, dask_distributed.Client(cluster) as c:
        yield c


def partition(frame: pd.DataFrame, key: str, folder: Path, parts: int = 3) -> None:
    """Write `frame` as `parts` Parquet files, each holding whole units of `key` (consecutive blocks of units)."""
    folder.mkdir(parents=True)
    units = pd.unique(frame[key])
    for j, chunk in enumerate(np.array_split(units, parts)):
        frame[frame[key].isin(chunk)].to_parquet(folder / f"part-{j}.parquet")


def shipped_spec(name: str, data_csv: str, folder_name: str) -> str:
    """The shipped spec `name` with its data.path pointing at the partition folder."""
    return (SPECS / f"{name}.yaml").read_text().replace(f"data/{data_csv}", f"data/{folder_name}")


def both(path: Path, client: object) -> tuple[FitResult, FitResult]:
    """(single-process fit, distributed fit) of the spec at `path`."""
    return estimate(prepare(path).model), fit_distributed(path, client=client)


def assert_same(single: FitResult, dist: FitResult, se_rel: float = 1e-6) -> None:
    assert dist.converged and single.converged
    assert abs(dist.loglik - single.loglik) < 1e-8
    np.testing.assert_allclose(dist.free, single.free, rtol=0, atol=1e-6)
    se1, se2 = np.sqrt(np.diag(single.cov_free)), np.sqrt(np.diag(dist.cov_free))
    np.testing.assert_allclose(se2, se1, rtol=se_rel, atol=1e-6 if se_rel <= 1e-6 else 0)
    assert dist.model.n == single.model.n
    assert [lv.n_units for lv in dist.model.levels] == [lv.n_units for lv in single.model.levels]
    assert list(dist.model.partable.names) == list(single.model.partable.names)


def test_exact_gaussian_two_level_random_slope(tmp_path: Path, client: object) -> None:
    partition(pd.read_csv(SPECS / "data" / "pig.csv"), "id", tmp_path / "data" / "pig")
    single, dist = both(write_spec(tmp_path, shipped_spec("pig_slope", "pig.csv", "pig")), client)
    assert_same(single, dist)
    assert dist.integration["method"] == "exact" and dist.extras["distributed"]["partitions"] == 3
    assert dist.extras["lr_test"]["chi2"] == pytest.approx(single.extras["lr_test"]["chi2"], abs=1e-7)


def test_exact_gaussian_three_level_reml_matches_lme4(tmp_path: Path, client: object) -> None:
    partition(pd.read_csv(SPECS / "data" / "productivity.csv"), "region", tmp_path / "data" / "prod")
    single, dist = both(write_spec(tmp_path, shipped_spec("productivity_reml", "productivity.csv", "prod")), client)
    assert_same(single, dist)
    ref = json.loads((ROOT / "tests" / "reference" / "productivity__nested_ri_reml.json").read_text())
    assert dist.method == "REML"
    assert dist.loglik == pytest.approx(ref["results"]["loglik"], abs=1e-6)


def test_adaptive_quadrature_binomial_with_a_category_missing_from_a_partition(tmp_path: Path,
                                                                              client: object) -> None:
    cbpp = pd.read_csv(SPECS / "data" / "cbpp.csv")
    cbpp["season"] = "p" + cbpp["period"].astype(str)  # a text covariate: its levels come from the data
    first = cbpp["herd"].isin(pd.unique(cbpp["herd"])[:5])
    cbpp = cbpp[~(first & (cbpp["season"] == "p4"))]  # partition 0 never sees p4
    partition(cbpp, "herd", tmp_path / "data" / "cbpp")
    text = shipped_spec("cbpp", "cbpp.csv", "cbpp").replace("C(period)", "season")
    text = text.replace("points: 25}}", "points: 25}, check_points: [12]}")
    single, dist = both(write_spec(tmp_path, text), client)
    assert "season[T.p4]" in list(dist.model.partable.names)
    assert_same(single, dist)
    for key, ll in single.extras["point_check"]["loglik"].items():
        assert abs(dist.extras["point_check"]["loglik"][key] - ll) < 1e-8
    assert dist.extras["lr_test"]["statistic"] == pytest.approx(single.extras["lr_test"]["statistic"], abs=1e-7)


def test_laplace_through_the_joint_engine_over_partitions(tmp_path: Path, client: object) -> None:
    """`method: laplace` fits by the joint Laplace engine (estimate/laplace_fit.py) in one process; over the
    workers each partition's engine gives its units' share of the log likelihood and exact gradient (the
    random effects' Hessian is block-diagonal over top-level units), so estimates and SEs agree to 1e-6."""
    partition(pd.read_csv(SPECS / "data" / "cbpp.csv"), "herd", tmp_path / "data" / "cbpp")
    single, dist = both(write_spec(tmp_path, shipped_spec("cbpp_laplace", "cbpp.csv", "cbpp")), client)
    assert dist.integration["method"] == "laplace"
    assert_same(single, dist, se_rel=1e-6)


def test_a_design_a_partition_cannot_reproduce_is_refused(tmp_path: Path, client: object) -> None:
    """C(I(id > 16)) is a category whose levels come from the rows: the first file has only False. The
    refusal is raised on the client after the workers compiled; the next test's error crosses processes."""
    partition(pd.read_csv(SPECS / "data" / "pig.csv"), "id", tmp_path / "data" / "pig")
    text = shipped_spec("pig_intercept", "pig.csv", "pig").replace("weight ~ week", "weight ~ week + C(I(id > 16))")
    with pytest.raises(DataError, match=r"compiles to another parameter table .*True"):
        fit_distributed(write_spec(tmp_path, text), client=client)


def test_a_worker_error_arrives_as_the_data_error_it_is(tmp_path: Path, client: object) -> None:
    pig = pd.read_csv(SPECS / "data" / "pig.csv")
    partition(pig, "id", tmp_path / "data" / "pig")
    pig[pig["id"] > 40].drop(columns="id").to_parquet(tmp_path / "data" / "pig" / "part-2.parquet")
    with pytest.raises(DataError, match=r"part-2.parquet has no column .id. \(the id of level .pig.\)"):
        fit_distributed(write_spec(tmp_path, shipped_spec("pig_intercept", "pig.csv", "pig")), client=client)


def test_a_worker_holding_one_top_level_unit_is_fitted(tmp_path: Path, client: object) -> None:
    """Files are dealt round-robin: the second worker gets only part-1, a single pig. One process refuses a
    level with one unit; a partition with one is fine (the check is made on the whole data)."""
    pig = pd.read_csv(SPECS / "data" / "pig.csv")
    folder = tmp_path / "data" / "pig"
    folder.mkdir(parents=True)
    for j, ids in enumerate(([*range(1, 31)], [31], [*range(32, 49)])):
        pig[pig["id"].isin(ids)].to_parquet(folder / f"part-{j}.parquet")
    single, dist = both(write_spec(tmp_path, shipped_spec("pig_intercept", "pig.csv", "pig")), client)
    assert_same(single, dist)
