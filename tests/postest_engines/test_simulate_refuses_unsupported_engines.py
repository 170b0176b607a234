"""simulate refuses models whose residual structure, residual covariances or discrete latent variables it cannot
draw, instead of silently drawing independent residuals and normal latent variables."""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.pipeline import prepare
from mlmrun.postest.simulate import SimulationError, simulate
from tests.conftest import SPECS


@pytest.mark.parametrize(("spec", "what"), [
    ("ovary_ar2.yaml", "residual covariance structure"),
    ("holzinger_swineford_rescov.yaml", "residual covariances"),
    ("cbpp_npmle.yaml", "discrete latent distributions"),
])
def test_simulate_refuses_what_it_cannot_draw(spec: str, what: str) -> None:
    model = prepare(SPECS / spec).model
    with pytest.raises(SimulationError, match=what):
        simulate(model, model.partable.start_values, np.random.default_rng(1))
