"""The Wald chi2 of the fixed part (all fixed effects but the constant) for every engine.

Stata's `mixed weight week || id:` prints Wald chi2(1) = 25337.49 (tests/reference/pig__ri_ml.json);
the exact engine and the quadrature engine must both give it. A GLMM (cbpp, three period contrasts)
gets chi2(3) = b' V^-1 b with V the fixed effects' covariance (off-diagonal terms included), recomputed here.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2 as chi2_dist

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.conftest import SPECS
from tests.reference.compare import assert_close, load_reference


@pytest.mark.parametrize("spec", ["pig_intercept", "pig_intercept_quadrature"])
def test_wald_chi2_matches_stata_on_both_engines(spec):
    fit = estimate(prepare(SPECS / f"{spec}.yaml").model)
    wald = fit.extras["wald"]
    assert wald["df"] == 1 and wald["vce"] == "oim"
    assert_close("Wald chi2(1)", wald["chi2"], load_reference("pig__ri_ml", "other", "Wald chi2(1)"), sig_digits=5)
    assert wald["p"] == pytest.approx(chi2_dist.sf(wald["chi2"], 1), abs=1e-300)


def test_wald_chi2_of_a_glmm_is_the_quadratic_form_of_its_fixed_effects():
    fit = estimate(prepare(SPECS / "cbpp.yaml").model)
    model = fit.model
    J = model.partable.jacobian(fit.free)[model.beta_rows]
    V = J @ fit.cov_free @ J.T
    tested = [j for j, name in enumerate(model.x_names) if name != "Intercept"]
    b = fit.values[model.beta_rows][tested]
    expected = float(b @ np.linalg.solve(V[np.ix_(tested, tested)], b))
    wald = fit.extras["wald"]
    assert wald["df"] == 3
    assert wald["chi2"] == pytest.approx(expected, rel=1e-9)
    assert wald["p"] == pytest.approx(chi2_dist.sf(expected, 3), rel=1e-9)
