"""predict --data on choice models: new rows whose set ids a fitted set carries form sets of their own."""

from __future__ import annotations

import numpy as np
import pandas as pd

import mlmrun
from tests.conftest import SPECS


def test_new_rows_of_fitted_sets_get_the_fitted_predictions() -> None:
    fit = mlmrun.fit(SPECS / "rankings_slope.yaml")
    data = pd.read_csv(SPECS / "data" / "rankings_sim.csv")
    new = data[data["resp"] <= 7]
    ours = fit.predict(new)
    fitted = fit.predict().iloc[:len(new)]
    assert len(ours) == len(new) and not ours["unseen@resp"].any()
    for col in ("mu", "eta", "eb_mean(price)@resp"):
        np.testing.assert_allclose(ours[col].to_numpy(), fitted[col].to_numpy(), rtol=1e-12)
    sets = new["resp"].to_numpy()
    np.testing.assert_allclose(pd.Series(ours["mu"].to_numpy()).groupby(sets).sum(), 1.0, rtol=1e-12)
