"""Wide-to-long stacking declared in the spec replaces reshaping by hand."""

from __future__ import annotations

import pandas as pd

from mlmrun.data.reshape import stack_long
from mlmrun.spec.model import Stack


def test_stack_keeps_other_columns_and_orders_by_row_then_item():
    wide = pd.DataFrame({"id": [10, 20], "a": [1, 0], "b": [0, 1], "x": [0.5, 1.5]})
    long = stack_long(wide, Stack(columns=["a", "b"], item="item", value="y", id="row"))
    assert list(long.columns) == ["id", "x", "row", "item", "y"]
    assert long["item"].tolist() == ["a", "b", "a", "b"]
    assert long["y"].tolist() == [1, 0, 0, 1]
    assert long["id"].tolist() == [10, 10, 20, 20]
    assert long["row"].tolist() == [1, 1, 2, 2]


def test_lsat_spec_stacks_to_five_rows_per_person():
    from mlmrun.pipeline import prepare
    from tests.conftest import SPECS

    model = prepare(SPECS / "lsat_2pl.yaml").model
    assert model.n == 5000
    assert model.levels[0].n_units == 1000
    assert set(model.levels[0].sizes()) == {5}
