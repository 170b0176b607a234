"""Replicate loops on a Dask cluster give the results they give in-process, whatever the number of workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlmrun import cli
from mlmrun.distributed.replicates import dask_map
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.postest.bootstrap import bootstrap_p, in_process, make_task, replicate
from tests.conftest import SPECS

PAIR = [str(SPECS / "pig_intercept.yaml"), str(SPECS / "pig_slope.yaml")]
R = 6


@pytest.fixture(scope="module")
def task():
    """Bootstrap of the random slope's LR test: simulate from the random-intercept fit, refit both."""
    small, large = (estimate(prepare(p).model) for p in PAIR)
    return make_task(small, large, seed=11)


def test_bootstrap_on_two_workers_equals_the_in_process_loop(task, dask_client):
    here = bootstrap_p(task, 0.5, R, in_process)
    there = bootstrap_p(task, 0.5, R, dask_map(dask_client))
    assert there["statistics"] == here["statistics"] == [replicate(task, i) for i in range(R)]
    assert there["p"] == here["p"] and there["exceeding"] == here["exceeding"]
    assert all(s is not None and s >= 0 for s in here["statistics"])
    assert dask_map(dask_client)(replicate, task, []) == []


def test_compare_bootstrap_gives_one_p_value_in_process_on_one_worker_and_on_two(tmp_path: Path, dask_client, capsys):
    docs = {}
    for label, extra in (("here", []), ("one", ["--local-workers", "1"]),
                         ("two", ["--scheduler", dask_client.scheduler.address])):
        out = tmp_path / f"{label}.json"
        assert cli.main(["compare", *PAIR, "--bootstrap", str(R), "--seed", "4", "--json", str(out), *extra]) == 0
        (test,) = json.loads(out.read_text())["lr_tests"]
        docs[label] = test["bootstrap"]
    assert docs["here"]["replicates_used"] == R
    assert docs["one"] == docs["here"] == docs["two"]
    assert "Traceback" not in capsys.readouterr().err


def test_cluster_options_without_bootstrap_are_refused(capsys):
    assert cli.main(["compare", *PAIR, "--local-workers", "2"]) == 2
    assert "give --bootstrap R" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(__import__("mlmrun.families.registry", fromlist=["FAMILIES"]).FAMILIES))
def test_every_family_survives_the_pickling_that_sends_models_to_workers(name):
    import pickle

    from mlmrun.families.registry import ALLOWED_LINKS, get_family

    for link in ALLOWED_LINKS[name]:
        family = get_family(name, link)
        copy = pickle.loads(pickle.dumps(family))
        assert type(copy) is type(family) and copy == family and copy.link == link
        with pytest.raises(AttributeError, match="immutable"):
            copy._link = None
