"""Latent variables of units the fit has not seen (new data), in the flagship's structure eta_general =
B eta_district + zeta_general: an unseen person in a fitted district carries B times the district's
prediction, with variance sd(general)^2 + B^2 sd_post(district)^2; in an unseen district, zero with the prior
variance sd(general)^2 + B^2 sd(district)^2. The extreme factor (no B) of an unseen person: 0 and sd(extreme)."""

from __future__ import annotations

import numpy as np

from mlmrun.pipeline import prepare
from mlmrun.postest.predict import per_row_latent
from mlmrun.predict import LevelPrediction
from tests.conftest import SPECS


def test_unseen_units_get_zero_disturbances_and_keep_their_fitted_ancestors() -> None:
    model = prepare(SPECS / "abortion.yaml").model
    pt = model.partable
    values = pt.start_values
    chosen = {"B(general<-general_district)": 0.8, "sd(general)@person": 1.5, "sd(extreme)@person": 2.0,
              "sd(general_district)@district": 0.6}
    for name, v in chosen.items():
        values[pt.index(name)] = v
    person, district = model.levels[0], model.levels[1]
    rng = np.random.default_rng(5)
    preds = [LevelPrediction("person", list(person.labels), ["general", "extreme"],
                             rng.normal(size=(person.n_units, 2)), rng.uniform(0.5, 1, (person.n_units, 2))),
             LevelPrediction("district", list(district.labels), ["general_district"],
                             rng.normal(size=(district.n_units, 1)), rng.uniform(0.1, 0.3, (district.n_units, 1)))]
    p_idx, d_idx = person.codes.copy(), district.codes.copy()
    p_idx[:50] = -1            # unseen persons in fitted districts
    p_idx[50:80] = d_idx[50:80] = -1  # unseen persons in unseen districts
    mean, sd = per_row_latent(model, values, preds, {"person": p_idx, "district": d_idx})
    order = [lat.name for lat in model.latent]
    g, e, gd = order.index("general"), order.index("extreme"), order.index("general_district")
    seen = slice(80, None)
    np.testing.assert_array_equal(mean[seen, g], preds[0].mean[person.codes[seen], 0])
    np.testing.assert_array_equal(sd[seen, gd], preds[1].sd[district.codes[seen], 0])
    district_eb, district_sd = preds[1].mean[district.codes[:50], 0], preds[1].sd[district.codes[:50], 0]
    np.testing.assert_allclose(mean[:50, g], 0.8 * district_eb, rtol=1e-12)
    np.testing.assert_allclose(sd[:50, g], np.sqrt(1.5**2 + 0.8**2 * district_sd**2), rtol=1e-12)
    np.testing.assert_allclose(mean[:50, e], 0.0, atol=0)
    np.testing.assert_allclose(sd[:50, e], 2.0, rtol=1e-12)
    np.testing.assert_allclose(mean[50:80, [g, gd]], 0.0, atol=0)
    np.testing.assert_allclose(sd[50:80, g], np.sqrt(1.5**2 + 0.8**2 * 0.6**2), rtol=1e-12)
    np.testing.assert_allclose(sd[50:80, gd], 0.6, rtol=1e-12)
