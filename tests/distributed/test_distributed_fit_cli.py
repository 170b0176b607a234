"""`mlmrun fit --local-workers N`: the distributed fit through the CLI writes the same results as one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlmrun import cli
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.conftest import write_spec
from tests.distributed.test_distributed_fit_refusals import PIG, pig_parts


def test_local_workers_option_fits_over_dask_and_writes_the_report(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pig_parts(tmp_path / "data" / "pig")
    spec = write_spec(tmp_path, PIG.replace(", distributed: {workers: 1}", ""))
    out = tmp_path / "out"
    assert cli.main(["fit", str(spec), "--local-workers", "1", "--quiet", "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    single = estimate(prepare(spec).model)
    assert abs(doc["loglik"] - single.loglik) < 1e-8
    assert doc["data"]["n_used"] == 432 and doc["data"]["sha256"] == single.model.data_sha256
    assert "| Groups: pig | 48 (rows per group: min 9, avg 9.0, max 9) |" in (out / "report.md").read_text()
    assert "empirical_bayes" not in doc


def test_local_workers_must_be_a_positive_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, PIG)
    with pytest.raises(SystemExit) as stop:
        cli.main(["fit", str(spec), "--local-workers", "0"])
    assert stop.value.code == 2
    assert "write a whole number from 1 to 1024" in capsys.readouterr().err
