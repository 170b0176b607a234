"""What a distributed fit refuses, with a located message: units split between files, a dataset outside the
spec's folder, a file instead of a folder, designs the partitions cannot reproduce, and models whose
likelihood is not a sum over top-level units (or that one process fits with another engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.distributed.fit import fit_distributed
from mlmrun.errors import DataError, SpecError
from tests.conftest import SPECS, write_spec

PIG = """\
name: pig_dist
data: {path: data/pig}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1]}
estimation: {method: ML, distributed: {workers: 1}}
"""


def pig_parts(folder: Path, overlap: bool = False) -> None:
    """pig.csv as 3 Parquet files of whole pigs; `overlap`: pig 17's rows split between files 0 and 1."""
    pig = pd.read_csv(SPECS / "data" / "pig.csv")
    folder.mkdir(parents=True)
    groups = np.array_split(pd.unique(pig["id"]), 3)
    for j, ids in enumerate(groups):
        part = pig[pig["id"].isin(ids)]
        if overlap and j == 0:
            part = pd.concat([part, pig[pig["id"] == 17].head(2)])
        if overlap and j == 1:
            part = part.drop(part.index[(part["id"] == 17).to_numpy()][:2])
        part.to_parquet(folder / f"part-{j}.parquet")


def test_a_unit_in_two_files_is_refused_naming_it(tmp_path: Path) -> None:
    pig_parts(tmp_path / "data" / "pig", overlap=True)
    with pytest.raises(DataError, match=r"id='17' of level 'pig' has rows in two partition files.*partition by id"):
        fit_distributed(write_spec(tmp_path, PIG))


def test_a_dataset_outside_the_spec_folder_is_refused(tmp_path: Path) -> None:
    pig_parts(tmp_path / "elsewhere" / "pig")
    (tmp_path / "spec").mkdir()
    path = write_spec(tmp_path / "spec", PIG.replace("data/pig", "../elsewhere/pig"))
    with pytest.raises(DataError, match=r"data\.path: .* is outside the spec's folder"):
        fit_distributed(path)


def test_a_single_file_is_refused_with_the_layout_to_use(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    pd.read_csv(SPECS / "data" / "pig.csv").to_parquet(tmp_path / "data" / "pig.parquet")
    with pytest.raises(DataError, match=r"reads a partitioned Parquet dataset \(a folder"):
        fit_distributed(write_spec(tmp_path, PIG.replace("data/pig", "data/pig.parquet")))


@pytest.mark.parametrize(("edit", "error", "message"), [
    (("random:\n  - {level: pig, terms: [1]}\n", ""), SpecError, "no latent variables at a nested level"),
    (("{name: pig, id: id}", "{name: pig, id: id, crossed: true}"), SpecError, "crossed levels"),
    (("weight ~ week", "weight ~ center(week)"), SpecError, "does not support `fixed`"),
    (("{method: ML,", "{method: REML, exact: false,"), SpecError, "REML needs the exact likelihood"),
])
def test_models_that_are_no_sum_over_partitions_are_refused(tmp_path: Path, edit: tuple[str, str],
                                                            error: type, message: str) -> None:
    pig_parts(tmp_path / "data" / "pig")
    with pytest.raises(error, match=message):
        fit_distributed(write_spec(tmp_path, PIG.replace(*edit)))
