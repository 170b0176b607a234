"""Choice sets of one equation in quadrature row order (rows.py sorts and may differ from the data's order)."""

from __future__ import annotations

import numpy as np

from mlmrun.compile.choice import ChoiceDesign
from mlmrun.families.choice import ChoiceSets
from mlmrun.likelihood.quadrature.rows import RowSet


def choice_sets(design: ChoiceDesign, rows: RowSet, eq_rows: np.ndarray) -> ChoiceSets:
    """ChoiceSets over all rows of the row set: this equation's rows by set, every other row a set of its own
    with no rank (so it takes no part), so that the engine's row indices address it directly."""
    if rows.original is None:
        raise ValueError("choice equations need unmerged rows")
    set_id = -1.0 - np.arange(rows.n, dtype=float)
    rank = np.zeros(rows.n)
    set_id[eq_rows] = design.set_of_row[rows.original[eq_rows]]
    rank[eq_rows] = rows.y[eq_rows]
    return ChoiceSets(rank, set_id)
