"""ICC where ordinal thresholds and scale meet it: defined with shifted thresholds, not with a latent scale model."""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.estimate import estimate
from mlmrun.estimate.icc import icc_table
from mlmrun.pipeline import prepare
from tests.conftest import SPECS


def test_threshold_shifts_keep_the_latent_response_icc() -> None:
    prepared = prepare(SPECS / "wine_thresholds_judge.yaml")
    fit = estimate(prepared.model)
    sd = fit.values[list(prepared.model.partable.names).index("sd(_cons)@judge")]
    (row,) = icc_table(fit)
    assert row["icc"] == pytest.approx(sd**2 / (sd**2 + np.pi**2 / 3), rel=1e-12)


def test_a_latent_scale_model_has_no_single_icc() -> None:
    fit = estimate(prepare(SPECS / "wine_scale_judge.yaml").model)
    assert icc_table(fit) is None  # the level-1 variance pi^2/3 exp(2 z'delta) differs between rows
