"""Predictions read the fitted model, not the engine: a Gaussian model fitted exactly and by quadrature
predicts the same; several levels give one EB column pair per latent variable and one by-unit block per level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from tests.conftest import SPECS, write_spec
from tests.postest_predict.helpers import fit_and_predict


def test_a_gaussian_model_predicts_the_same_fitted_exactly_or_by_adaptive_quadrature(tmp_path: Path) -> None:
    exact_rows, exact_units = fit_and_predict(SPECS / "pig_intercept.yaml", tmp_path / "exact")
    quad_rows, quad_units = fit_and_predict(SPECS / "pig_intercept_quadrature.yaml", tmp_path / "quad")
    assert list(exact_rows.columns) == list(quad_rows.columns)
    for col in ("xb", "eta", "mu", "mu_marginal", "resid", "resid_pearson", "resid_standardized"):
        np.testing.assert_allclose(quad_rows[col], exact_rows[col], rtol=1e-5, atol=1e-5, err_msg=col)
    for col in ("eb_mean(_cons)@pig", "eb_sd(_cons)@pig"):
        np.testing.assert_allclose(quad_units[col], exact_units[col], rtol=1e-4, atol=1e-5, err_msg=col)


def test_every_level_gets_its_eb_columns_and_its_block_of_units(tmp_path: Path) -> None:
    rows, units = fit_and_predict(SPECS / "productivity.yaml", tmp_path)
    data = pd.read_csv(SPECS / "data" / "productivity.csv")
    assert rows["state"].tolist() == data["state"].tolist() and rows["region"].tolist() == data["region"].tolist()
    np.testing.assert_allclose(rows["eta"], rows["xb"] + rows["eb_mean(_cons)@state"] + rows["eb_mean(_cons)@region"],
                               rtol=1e-12)
    assert units.groupby("level", sort=False).size().to_dict() == {"state": 48, "region": 9}
    assert units.loc[units["level"] == "state", "unit"].tolist() == list(dict.fromkeys(data["state"]))
    state_only = units[units["level"] == "state"]
    assert state_only["eb_mean(_cons)@region"].isna().all() and state_only["eb_mean(_cons)@state"].notna().all()


GLM = """\
name: cbpp_glm
data: {path: data/cbpp.csv}
responses:
  - {name: incidence, family: binomial, trials: size}
fixed: "incidence ~ C(period)"
"""


def test_a_model_without_latent_variables_predicts_its_glm_means(spec_dir: Path) -> None:
    rows, units = fit_and_predict(write_spec(spec_dir, GLM), spec_dir)
    data = pd.read_csv(SPECS / "data" / "cbpp.csv")
    np.testing.assert_allclose(rows["mu"], data["size"] * expit(rows["xb"]), rtol=1e-12)
    np.testing.assert_allclose(rows["mu_marginal"], rows["mu"], rtol=1e-12)
    np.testing.assert_allclose(rows["eta"], rows["xb"], rtol=1e-12)
    assert not any(c.startswith("eb_") for c in rows.columns) and units.empty


def test_a_stacked_file_gives_the_wide_row_and_the_item_of_every_prediction(tmp_path: Path) -> None:
    rows, units = fit_and_predict(SPECS / "lsat_2pl.yaml", tmp_path)
    wide = pd.read_csv(SPECS / "data" / "lsat.csv")
    items = ["i1", "i2", "i3", "i4", "i5"]
    assert rows["row"].tolist() == [r for r in range(1, len(wide) + 1) for _ in items]
    assert rows["item"].tolist() == items * len(wide)
    np.testing.assert_allclose(rows["resid"] + rows["mu"], wide[items].to_numpy().ravel(), atol=1e-12)
    assert len(units) == len(wide)
