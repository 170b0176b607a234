"""Frequency weights meet predict: a row of weight w counts as w replicated rows in the posterior of its unit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.postest.simulate import SimulationError, replicate_rng, simulate
from mlmrun.postest.units import unit_predictions
from tests.conftest import SPECS, write_spec

PIG = """\
name: pig_fw
data: {path: pigw.csv}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1]}
weights: {fweight: fw}
"""


def test_weighted_linear_gaussian_eb_is_the_weighted_blup(tmp_path: Path) -> None:
    data = pd.read_csv(SPECS / "data" / "pig.csv")
    data["fw"] = np.random.default_rng(2).integers(1, 4, len(data))
    data.to_csv(tmp_path / "pigw.csv", index=False)
    prepared = prepare(write_spec(tmp_path, PIG))
    fit = estimate(prepared.model)
    names = list(prepared.model.partable.names)
    b0, b1 = (fit.values[names.index(n)] for n in ("Intercept", "week"))
    su, se = fit.values[names.index("sd(_cons)@pig")], fit.values[names.index("sd(Residual)")]
    data["r"] = data["weight"] - b0 - b1 * data["week"]
    by = data.assign(wr=data["fw"] * data["r"]).groupby("id", sort=False)[["wr", "fw"]].sum()
    precision = 1 / su**2 + by["fw"] / se**2
    mean = (by["wr"] / se**2) / precision  # the posterior of u_j given the unit's rows, each counted fw times
    (pred,) = unit_predictions(fit)
    np.testing.assert_allclose(pred.mean[:, 0], mean.to_numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(pred.sd[:, 0], np.sqrt(1 / precision.to_numpy()), rtol=1e-6)


def test_simulate_refuses_frequency_weights(tmp_path: Path) -> None:
    data = pd.read_csv(SPECS / "data" / "pig.csv")
    data["fw"] = 2
    data.to_csv(tmp_path / "pigw.csv", index=False)
    model = prepare(write_spec(tmp_path, PIG)).model
    with pytest.raises(SimulationError, match="frequency weights"):
        simulate(model, model.partable.start_values.astype(float), replicate_rng(1, 0))
