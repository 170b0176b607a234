"""Weights and robust clusters of choice equations: a choice set is one observation.

A set's log likelihood is one term, so it takes one weight: rows of a set with
different frequency or sampling weights have no meaning and are refused. Robust
standard errors sum scores over clusters; without a level to cluster on, each
row would be its own cluster and the rows of one set would be treated as
independent, so the sets themselves are the clusters then.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from mlmrun.compile.weights import Weighting
from mlmrun.data.shown import excerpt
from mlmrun.errors import DataError
from mlmrun.spec.model import Spec


def _weight_key(spec: Spec) -> tuple[str, str]:
    given = spec.weights
    if given is not None and given.pweight:
        return "weights.pweight", given.pweight
    if given is not None and given.fweight:
        return "weights.fweight", given.fweight
    return "levels.pweight", next((lv.pweight for lv in spec.levels if lv.pweight), "")


def check_choice_weights(spec: Spec, sets: list[tuple[int, np.ndarray]], weighting: Weighting | None,
                         n: int) -> Weighting | None:
    """Refuse sets whose rows differ in weight; cluster robust SEs on the sets when no level is clustered on.

    `sets` holds (response index, set code per model row, NaN off the equation) per choice equation.
    """
    if weighting is None or not sets:
        return weighting
    if weighting.row is not None:
        for k, set_of_row in sets:
            on = ~np.isnan(set_of_row)
            spread = pd.Series(weighting.row[on]).groupby(set_of_row[on]).agg(["min", "max"])
            bad = spread.index[spread["max"] > spread["min"] * (1 + 1e-12)]
            if len(bad):
                key, col = _weight_key(spec)
                raise DataError(f"{key}: weight {excerpt(col)} differs between the rows of {len(bad)} choice sets of "
                                f"responses.{k} (set {int(bad[0]) + 1} in data order has weights "
                                f"{spread.loc[bad[0], 'min']:g} to {spread.loc[bad[0], 'max']:g}); a choice set is "
                                "one observation: give all rows of a set the same weight")
    if weighting.vce == "robust" and weighting.cluster_name is None:
        codes = np.arange(n, dtype=float)
        for _, set_of_row in sets:
            on = ~np.isnan(set_of_row)
            codes[on] = n + set_of_row[on]
        weighting = replace(weighting, cluster_name="choice set", cluster_codes=pd.factorize(codes)[0])
    return weighting
