"""Stata .dta files with value labels.

A Stata column with value labels holds numeric codes and a label per code. Covariates are read as
categories named by their labels (so a coefficient reads `region[T.North]`, as in Stata's output with
`i.region`), ordered by code; response columns keep their codes, so a labelled 0/1 outcome
(0 "No" 1 "Yes") is the numeric 0/1 a binomial response needs. Codes without a label keep their number
as the category name (pandas' rule).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mlmrun.spec.model import Spec


def code_columns(spec: Spec) -> frozenset[str]:
    """Response columns whose Stata codes are kept: every response without `success:` (which names a label)."""
    return frozenset(eq.name for eq in spec.responses if eq.success is None)


def read_stata_labelled(raw: bytes, numeric: frozenset[str]) -> pd.DataFrame:
    """The .dta file in `raw`: labelled columns as categories, except those in `numeric` (codes kept).

    Read twice (codes, then labels) through pandas' public reader: a column that comes back categorical
    the second time carries value labels, its categories already ordered by code.
    """
    codes = pd.read_stata(io.BytesIO(raw), convert_categoricals=False)
    labelled = pd.read_stata(io.BytesIO(raw), convert_categoricals=True)
    for column in codes.columns:
        if column in numeric or not isinstance(labelled[column].dtype, pd.CategoricalDtype):
            continue
        codes[column] = labelled[column].cat.rename_categories([str(c) for c in labelled[column].cat.categories])
    return codes
