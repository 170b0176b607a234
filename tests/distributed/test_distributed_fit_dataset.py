"""A partitioned Parquet folder as `data.path` (data/dataset.py): hive folders give their column back, writer
files are skipped, and one process reads the whole folder, so the fit equals the published one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlmrun.errors import DataError
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.conftest import ROOT, SPECS, write_spec
from tests.distributed.test_distributed_fit_refusals import PIG


def test_hive_folders_of_the_level_id_fit_as_the_published_model(tmp_path: Path) -> None:
    pig = pd.read_csv(SPECS / "data" / "pig.csv")
    for pid, rows in pig.groupby("id"):
        folder = tmp_path / "data" / "pig" / f"id={pid}"
        folder.mkdir(parents=True)
        rows.drop(columns="id").to_parquet(folder / "part.parquet")
    (tmp_path / "data" / "pig" / "_SUCCESS").write_text("")
    (tmp_path / "data" / "pig" / "id=1" / ".part.parquet.crc").write_text("not parquet")
    prepared = prepare(write_spec(tmp_path, PIG))
    assert prepared.model.n == 432 and prepared.model.levels[0].n_units == 48
    ref = json.loads((ROOT / "tests" / "reference" / "pig__ri_ml.json").read_text())
    assert estimate(prepared.model).loglik == pytest.approx(ref["loglik"], abs=1e-3)


def test_a_folder_without_parquet_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data" / "pig").mkdir(parents=True)
    (tmp_path / "data" / "pig" / "pig.csv").write_text((SPECS / "data" / "pig.csv").read_text())
    with pytest.raises(DataError, match=r"holds no \.parquet files"):
        prepare(write_spec(tmp_path, PIG))
