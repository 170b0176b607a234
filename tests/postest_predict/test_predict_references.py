"""`mlmrun predict` against lme4's post-estimation (tests/reference/*__postest_*.json), through the CLI.

pig (lmer, unstructured random slope, ML): BLUPs and conditional SDs per pig, conditional fitted values,
marginal linear predictor, response and Pearson residuals, to 1e-4 relative. cbpp (glmer, AGQ 25):
conditional modes and curvature SDs (`--eb mode`), fitted proportions, the conditional and marginal linear
predictors and residuals; the two fits' estimates agree to about 1e-5, so 1e-4 here too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import SPECS
from tests.postest_predict.helpers import assert_scaled, fit_and_predict
from tests.reference.compare import load_reference

REL = 1e-4


def test_pig_unstructured_slope_blups_fitted_values_and_residuals_match_lmer(tmp_path: Path) -> None:
    rows, units = fit_and_predict(SPECS / "pig_slope_unstructured.yaml", tmp_path)
    ref = load_reference("pig__postest_rs_un_ml", "results")
    assert units["unit"].astype(str).tolist() == ref["unit"]
    assert ref["terms"] == ["(Intercept)", "week"]
    eb = units[["eb_mean(_cons)@pig", "eb_mean(week)@pig"]].to_numpy()
    sd = units[["eb_sd(_cons)@pig", "eb_sd(week)@pig"]].to_numpy()
    for j, term in enumerate(ref["terms"]):
        assert_scaled(f"BLUP {term}", eb[:, j], np.array(ref["eb_mean"])[:, j], REL)
        assert_scaled(f"conditional SD {term}", sd[:, j], np.array(ref["eb_sd"])[:, j], REL)
    assert rows["row"].tolist() == list(range(1, 433))
    assert_scaled("fitted", rows["mu"], ref["fitted_conditional"], REL)
    assert_scaled("conditional linear predictor", rows["eta"], ref["linear_predictor_conditional"], REL)
    assert_scaled("marginal linear predictor", rows["xb"], ref["linear_predictor_marginal"], REL)
    np.testing.assert_allclose(rows["mu_marginal"], rows["xb"], rtol=1e-12)  # identity link
    assert_scaled("response residuals", rows["resid"], ref["residual_response"], REL)
    assert_scaled("Pearson residuals", rows["resid_pearson"], ref["residual_pearson"], REL)
    sigma = (rows["resid"] / rows["resid_standardized"]).to_numpy()
    assert np.ptp(sigma) < 1e-9 * sigma[0]  # one residual SD: standardized = resid / sd(Residual)


def test_cbpp_agq25_conditional_modes_fitted_proportions_and_residuals_match_glmer(tmp_path: Path) -> None:
    rows, units = fit_and_predict(SPECS / "cbpp.yaml", tmp_path, "--eb", "mode")
    ref = load_reference("cbpp__postest_agq25", "results")
    assert units["unit"].astype(str).tolist() == ref["unit"]
    assert_scaled("conditional modes", units["eb_mode(_cons)@herd"], np.array(ref["eb_mean"])[:, 0], REL)
    assert_scaled("curvature SDs", units["eb_sd(_cons)@herd"], np.array(ref["eb_sd"])[:, 0], REL)
    size = pd.read_csv(SPECS / "data" / "cbpp.csv")["size"].to_numpy()
    assert_scaled("fitted proportions", rows["mu"] / size, ref["fitted_conditional"], REL)
    assert_scaled("conditional linear predictor", rows["eta"], ref["linear_predictor_conditional"], REL)
    assert_scaled("marginal linear predictor", rows["xb"], ref["linear_predictor_marginal"], REL)
    assert_scaled("response residuals (proportions)", rows["resid"] / size, ref["residual_response"], REL)
    assert_scaled("Pearson residuals", rows["resid_pearson"], ref["residual_pearson"], REL)
