"""check_stray_text counts every text cell of a numeric column, whether the column is read as text or as objects."""

from __future__ import annotations

import pandas as pd
import pytest

from mlmrun.compile.data_checks import check_stray_text
from mlmrun.errors import DataError

CELLS = [str(i) for i in range(60)] + ["n/a", "3,5", "n/a", "?", "n/a"]
"""60 numbers and five text cells (three distinct), so text is under a tenth of the column."""


@pytest.mark.parametrize("dtype", ["str", object])
def test_every_text_cell_is_counted_and_the_distinct_ones_named_in_order(dtype) -> None:
    frame = pd.DataFrame({"x": pd.Series(CELLS + [None], dtype=dtype)})
    bad = [c for c in CELLS if not c.isdigit()]
    with pytest.raises(DataError) as err:
        check_stray_text(frame, {"x": "fixed"})
    message = str(err.value)
    assert f"holds numbers except {len(bad)} of its {len(CELLS)} values" in message
    assert "e.g. 'n/a', '3,5', '?';" in message


@pytest.mark.parametrize("cells", [["M", "F"] * 30, [str(i) for i in range(60)]])
def test_a_column_all_text_or_all_numbers_is_not_refused(cells: list[str]) -> None:
    check_stray_text(pd.DataFrame({"x": pd.Series(cells, dtype="str")}), {"x": "fixed"})
