"""compile/weights.py: pwscale formulas (Stata's pwscale) and where level weights go, checked on pisa2000.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlmrun.pipeline import prepare
from tests.conftest import write_spec

PISA = """\
name: w
data: {path: data/pisa2000.csv}
levels:
  - {name: school, id: id_school, pweight: wnrschbw}
responses:
  - {name: isei, family: gaussian}
fixed: "isei ~ female"
random:
  - {level: school, terms: [1]}
weights: {pweight: w_fstuwt, pwscale: SCALE}
"""


def _model(folder, text: str):
    return prepare(write_spec(folder, text)).model


@pytest.mark.parametrize("scale", ["size", "effective", "gk"])
def test_pwscale_rescales_row_weights_as_stata(spec_dir, scale):
    data = pd.read_csv(spec_dir / "data" / "pisa2000.csv")
    model = _model(spec_dir, PISA.replace("SCALE", scale))
    school = model.levels[0].codes
    w = data["w_fstuwt"].to_numpy(float)
    total = np.bincount(school, weights=w)
    unit = np.bincount(school, weights=data["wnrschbw"].to_numpy(float)) / np.bincount(school)
    if scale == "size":
        row, unit_factor = w * (np.bincount(school) / total)[school], 1.0
    elif scale == "effective":
        row, unit_factor = w * (total / np.bincount(school, weights=w * w))[school], 1.0
    else:
        row, unit_factor = None, total / np.bincount(school)  # rows weigh 1: no row weights at all
    if row is None:
        assert model.weighting.row is None
    else:
        np.testing.assert_allclose(model.weighting.row, row, rtol=1e-12)
    np.testing.assert_allclose(model.weighting.unit[0], unit * unit_factor, rtol=1e-12)
    assert model.weighting.sampling and model.weighting.vce == "robust"


def test_weight_of_a_level_without_random_effects_moves_to_the_level_below(spec_dir):
    text = """\
name: w
data: {path: data/pisa2000.csv}
levels:
  - {name: school, id: id_school, pweight: wnrschbw}
  - {name: region, id: reg, pweight: wr}
responses:
  - {name: isei, family: gaussian}
fixed: "isei ~ female"
random:
  - {level: school, terms: [1]}
"""
    data = pd.read_csv(spec_dir / "data" / "pisa2000.csv")
    data["reg"] = data["id_school"] % 5
    data["wr"] = 1.0 + data["reg"]
    data.to_csv(spec_dir / "data" / "pisa2000.csv", index=False)
    model = _model(spec_dir, text)
    school = model.levels[0].codes
    expected = np.zeros(model.levels[0].n_units)
    expected[school] = (data["wnrschbw"] * data["wr"]).to_numpy()
    np.testing.assert_allclose(model.weighting.unit[0], expected, rtol=1e-12)
    assert model.weighting.row is None and set(model.weighting.unit) == {0}


def test_unweighted_model_with_default_vce_compiles_no_weighting(spec_dir):
    text = PISA.replace("weights: {pweight: w_fstuwt, pwscale: SCALE}\n", "").replace(", pweight: wnrschbw", "")
    assert _model(spec_dir, text).weighting is None
