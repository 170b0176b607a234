"""`random:` is shorthand for latent variables with loadings fixed at 1: both forms give identical fits."""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.conftest import write_spec

COMMON = """
data: {path: data/pig.csv}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
"""
SHORTHAND = "name: short\n" + COMMON + """
random:
  - {level: pig, terms: [1, week], covariance: independent}
"""
EXPLICIT = "name: explicit\n" + COMMON + """
latent:
  - {name: _cons, level: pig, loadings: {on: [1], fix: {1: 1}}}
  - {name: week, level: pig, loadings: {on: [week], fix: {week: 1}}}
covariance: {pig: independent}
"""


@pytest.mark.parametrize("exact", [True, False])
def test_shorthand_and_explicit_latent_spec_fit_identically(spec_dir, exact):
    extra = "" if exact else "estimation: {exact: false, integration: {points: 12}}\n"
    fits = [estimate(prepare(write_spec(spec_dir, text + extra, f"{i}.yaml")).model) for i, text in enumerate((SHORTHAND, EXPLICIT))]
    short, explicit = fits
    assert short.loglik == pytest.approx(explicit.loglik, abs=1e-8)
    names = ["Intercept", "week", "sd(_cons)@pig", "sd(week)@pig", "sd(Residual)"]
    est = [{n: f.values[f.model.partable.index(n)] for n in names} for f in fits]
    for n in names:
        assert est[0][n] == pytest.approx(est[1][n], rel=1e-6), n
    assert np.isfinite(short.loglik)
