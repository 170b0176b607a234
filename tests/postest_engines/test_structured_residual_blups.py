"""Predictions of a random-intercept model with AR(2) residuals (specs/ovary_ar2*.yaml) against dense GLS algebra.

Per mare j, V_j = s_u^2 11' + s_e^2 C_j with C_j[a, b] = rho(|t_a - t_b|), the AR(2) autocorrelations
(rho_1 = phi1 / (1 - phi2), rho_k = phi1 rho_(k-1) + phi2 rho_(k-2)). Given the estimates, the BLUP is
u_j = s_u^2 1' V_j^-1 (y_j - X_j b) and its conditional SD sqrt(s_u^2 - s_u^4 1' V_j^-1 1) (given b, as for
independent residuals, lme4's condVar); the conditional fit is X b + u_j and the residual y - X b - u_j. The same
formulas hold after a REML fit (only the estimates differ).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmrun

ROOT = Path(__file__).resolve().parents[2]


def ar2_correlation(phi1: float, phi2: float, lags: np.ndarray) -> np.ndarray:
    """Autocorrelations of a stationary AR(2) at the given non-negative integer lags."""
    rho = np.ones(int(lags.max()) + 1)
    if len(rho) > 1:
        rho[1] = phi1 / (1.0 - phi2)
    for k in range(2, len(rho)):
        rho[k] = phi1 * rho[k - 1] + phi2 * rho[k - 2]
    return rho[lags]


def dense_predictions(params: dict[str, float], data: pd.DataFrame) -> pd.DataFrame:
    """BLUP, its conditional SD, conditional fit and residual per row, from V_j built in full."""
    beta = np.array([params["Intercept"], params["sin1"], params["cos1"]])
    su2, se2 = params["sd(_cons)@mare"] ** 2, params["sd(e)"] ** 2
    out = pd.DataFrame(index=data.index, columns=["u", "u_sd", "fit", "resid"], dtype=float)
    for _, rows in data.groupby("mare", sort=False):
        X = np.column_stack([np.ones(len(rows)), rows["sin1"], rows["cos1"]])
        t = rows["time"].to_numpy(dtype=int)
        C = ar2_correlation(params["phi1"], params["phi2"], np.abs(t[:, None] - t[None, :]))
        V = su2 * np.ones((len(t), len(t))) + se2 * C
        r = rows["follicles"].to_numpy() - X @ beta
        Vinv_r, Vinv_1 = np.linalg.solve(V, r), np.linalg.solve(V, np.ones(len(t)))
        u = su2 * np.sum(Vinv_r)
        out.loc[rows.index, "u"] = u
        out.loc[rows.index, "u_sd"] = np.sqrt(su2 - su2**2 * np.sum(Vinv_1))
        out.loc[rows.index, "fit"] = X @ beta + u
        out.loc[rows.index, "resid"] = rows["follicles"].to_numpy() - X @ beta - u
    return out


@pytest.mark.parametrize("spec", ["ovary_ar2.yaml", "ovary_ar2_reml.yaml"])
def test_ar2_blups_and_conditional_fit_match_dense_gls(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    fit = mlmrun.fit(f"specs/{spec}")
    params = dict(zip(fit.params["name"], fit.params["estimate"], strict=True))
    data = pd.read_csv(ROOT / "specs" / "data" / "ovary.csv")
    rows = fit.predict()
    data = data.iloc[rows["row"].to_numpy() - 1].reset_index(drop=True)
    want = dense_predictions(params, data)
    assert np.max(np.abs(rows["eb_mean(_cons)@mare"] - want["u"])) < 1e-6
    assert np.max(np.abs(rows["eb_sd(_cons)@mare"] - want["u_sd"])) < 1e-6
    assert np.max(np.abs(rows["mu"] - want["fit"])) < 1e-6
    assert np.max(np.abs(rows["resid"] - want["resid"])) < 1e-6
    assert np.max(np.abs(rows["resid_standardized"] - want["resid"] / params["sd(e)"])) < 1e-6
    units = fit.ranef()
    first = data.groupby("mare", sort=False).head(1).index
    assert np.max(np.abs(units["eb_mean(_cons)@mare"].to_numpy() - want.loc[first, "u"].to_numpy())) < 1e-6


def test_predict_from_results_keeps_the_ar2_residual_structure(tmp_path: Path) -> None:
    """`mlmrun predict --results` (the spec compiled again, the estimates read back by name) gives the dense BLUPs."""
    from tests.postest_predict.helpers import fit_and_predict

    spec = ROOT / "specs" / "ovary_ar2.yaml"
    rows, units = fit_and_predict(spec, tmp_path)
    params = {r["name"]: r["estimate"] for r in json.loads((tmp_path / "fit" / "results.json").read_text())["parameters"]}
    data = pd.read_csv(ROOT / "specs" / "data" / "ovary.csv").iloc[rows["row"].to_numpy() - 1].reset_index(drop=True)
    want = dense_predictions(params, data)
    assert np.max(np.abs(rows["eb_mean(_cons)@mare"] - want["u"])) < 1e-6
    assert np.max(np.abs(rows["eb_sd(_cons)@mare"] - want["u_sd"])) < 1e-6
    assert np.max(np.abs(rows["resid"] - want["resid"])) < 1e-6
    assert len(units) == data["mare"].nunique()
