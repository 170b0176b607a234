"""Issue 10: each mixed spec, with its random effects switched off (SDs fixed at 0), is exactly the peer's fixed fit."""

from __future__ import annotations

import pytest

from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference, loglik_tolerance
from tests.reference.test_glmm_reference import fitted_text

pytestmark = pytest.mark.reference


@pytest.mark.parametrize(("spec", "off", "file"), [
    ("multinomial_region", '{"sd(B)@region": 0, "sd(C)@region": 0, "corr(C,B)@region": 0}', "multinomial_sim__mlogit_fixed"),
    ("rankings_slope", '{"sd(price)@resp": 0}', "rankings_sim__exploded_logit_fixed"),
    ("wine_thresholds_judge", '{"sd(_cons)@judge": 0}', "wine__clm_nominal_contact"),
    ("wine_scale_judge", '{"sd(_cons)@judge": 0}', "wine__clm_scale_temp"),
])
def test_mixed_spec_without_its_random_effects_is_the_peer_fixed_fit(spec: str, off: str, file: str) -> None:
    text = (SPECS / f"{spec}.yaml").read_text().replace("data/", "DATA/")
    text = text.replace("check_points: [20, 30]", "check_points: []")
    fit = fitted_text(text + f"constraints:\n  fix: {off}\n")
    target = load_reference(file, "results", "loglik")
    assert_close(f"{spec} without random effects", fit.loglik, target, abs_tol=loglik_tolerance(target))
