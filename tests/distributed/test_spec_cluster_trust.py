"""A spec's `estimation.distributed` cannot send the data elsewhere or start more processes than the machine has."""

from __future__ import annotations

import os

import pytest

from mlmrun.distributed.fit import spec_cluster
from mlmrun.errors import SpecError
from mlmrun.spec.model import Distributed


def test_a_scheduler_named_by_an_untrusted_spec_is_refused() -> None:
    with pytest.raises(SpecError, match="a spec cannot choose the Dask scheduler"):
        spec_cluster(Distributed(scheduler="tcp://203.0.113.5:8786"), trusted=False)


def test_a_trusted_spec_keeps_its_scheduler() -> None:
    assert spec_cluster(Distributed(scheduler="tcp://10.0.0.5:8786", workers=3), trusted=True)[0] == "tcp://10.0.0.5:8786"


def test_local_workers_asked_by_a_spec_are_capped_at_the_cores() -> None:
    cores = os.cpu_count() or 1
    assert spec_cluster(Distributed(workers=1024), trusted=False) == (None, cores)
    assert spec_cluster(Distributed(workers=1), trusted=False) == (None, 1)
