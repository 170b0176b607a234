"""A binomial response given as text or categories: `success: LABEL` says which value counts as 1.

Survey files often hold outcomes as labels (No/Yes); recoding them outside the spec is a step a reader
of the analysis cannot see. The column must hold exactly two distinct values (one of them `success`),
or only the success label or only the other one; labels compare as text, so `success: 1` matches 1 and "1".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlmrun.data.shown import excerpt, excerpts
from mlmrun.errors import DataError, SpecError
from mlmrun.spec.model import Equation


def success_indicator(col: pd.Series, eq: Equation, k: int) -> np.ndarray:
    """1.0 where the response equals `eq.success`, 0.0 where it holds the one other value."""
    if eq.family != "binomial":
        raise SpecError(f"responses.{k}.success is only for the binomial family; drop `success:` or use "
                        "family: binomial")
    if eq.trials:
        raise SpecError(f"responses.{k}.success: a response with `trials:` counts successes, so it has no success "
                        "label; drop `success:` or `trials:`")
    text = col.astype(object).map(_label)
    label = _label(eq.success)
    values = sorted(set(text))
    if label not in values and len(values) < 2:
        raise DataError(f"responses.{k}.success: {excerpt(label)} is not a value of column {excerpt(eq.name)}, "
                        f"which holds only {excerpts(values)}; write the value that counts as success")
    if label not in values:
        raise DataError(f"responses.{k}.success: {excerpt(label)} is not a value of column {excerpt(eq.name)}; "
                        f"it holds {excerpts(values)}; write one of them (labels are case-sensitive)")
    if len(values) > 2:
        raise DataError(f"responses.{k}.success: column {excerpt(eq.name)} holds {len(values)} distinct values "
                        f"({excerpts(values)}), a binomial response two; filter the rows (data.filter) or use "
                        "family: ordinal or multinomial")
    return (text == label).to_numpy(dtype=float)


def _label(value: object) -> str:
    """A label or cell as text, whole numbers without '.0', so `success: 1` matches 1, 1.0 and "1"."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)
