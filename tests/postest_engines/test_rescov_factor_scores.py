"""Factor scores of CFA models with residual covariances (moments engine) against dense Gaussian conditioning.

Per child with item vector y (9 items), Sigma = Lambda Phi Lambda' + Theta where Theta carries the residual
variances and the free residual covariance; E[eta | y] = Phi Lambda' Sigma^-1 (y - mu) and
Var[eta | y] = Phi - Phi Lambda' Sigma^-1 Lambda Phi (SD 0 where that is negative, a Heywood case). Built
here from the parameter table by name; the per-row fit is mu_item + Lambda_item E[eta | y].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import mlmrun

ROOT = Path(__file__).resolve().parents[2]
ITEMS = [f"x{k}" for k in range(1, 10)]
FACTORS = ["visual", "textual", "speed"]


def dense_scores(params: dict[str, float], wide: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E[eta | y], SD[eta | y], mu + Lambda E[eta | y]) per child, children in the rows of `wide`."""
    lam = np.zeros((9, 3))
    for f, factor in enumerate(FACTORS):
        for i, item in enumerate(ITEMS):
            lam[i, f] = params.get(f"loading({factor}->{item})", 0.0)
    sd = np.array([params[f"sd({f})@child"] for f in FACTORS])
    corr = np.eye(3)
    for a in range(3):
        for b in range(a):
            corr[a, b] = corr[b, a] = params[f"corr({FACTORS[a]},{FACTORS[b]})@child"]
    phi = corr * np.outer(sd, sd)
    theta = np.diag([np.sign(params[f"sd(Residual:test={x})"]) * params[f"sd(Residual:test={x})"] ** 2 for x in ITEMS])
    for name, value in params.items():
        if name.startswith("cov(Residual:"):
            a, b = (ITEMS.index(x) for x in name[len("cov(Residual:"):-1].split(","))
            theta[a, b] = theta[b, a] = value
    sigma = lam @ phi @ lam.T + theta
    mu = np.array([params[f"C(test)[{x}]"] for x in ITEMS])
    gain = np.linalg.solve(sigma, lam @ phi).T
    mean = (wide[ITEMS].to_numpy() - mu) @ gain.T
    var = np.diag(phi - gain @ lam @ phi)
    return mean, np.sqrt(np.clip(var, 0.0, None))[None, :].repeat(len(wide), axis=0), mu + mean @ lam.T


def variant_spec() -> dict:
    """The shipped model without the cross-loading and with a residual covariance x2 ~~ x3 (no Heywood case)."""
    spec = yaml.safe_load((ROOT / "specs" / "holzinger_swineford_rescov.yaml").read_text())
    spec["data"]["path"] = "specs/data/holzinger_swineford.csv"
    spec["latent"][0]["loadings"]["only"] = ["x1", "x2", "x3"]
    spec["residual_covariances"]["pairs"] = [["x2", "x3"]]
    return spec


@pytest.mark.parametrize("which", ["shipped", "variant"])
def test_factor_scores_use_the_residual_covariance(which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    fit = mlmrun.fit("specs/holzinger_swineford_rescov.yaml" if which == "shipped" else variant_spec())
    params = dict(zip(fit.params["name"], fit.params["estimate"], strict=True))
    wide = pd.read_csv(ROOT / "specs" / "data" / "holzinger_swineford.csv")
    mean, sd, fitted = dense_scores(params, wide)
    units = fit.ranef()
    assert units["unit"].tolist() == wide["id"].tolist()
    for f, factor in enumerate(FACTORS):
        assert np.max(np.abs(units[f"eb_mean({factor})@child"].to_numpy() - mean[:, f])) < 1e-6
        assert np.max(np.abs(units[f"eb_sd({factor})@child"].to_numpy() - sd[:, f])) < 1e-6
    rows = fit.predict()
    child = pd.Index(wide["id"]).get_indexer(rows["id"])
    item = pd.Index(ITEMS).get_indexer(rows["test"])
    assert np.max(np.abs(rows["mu"].to_numpy() - fitted[child, item])) < 1e-6
    y = wide[ITEMS].to_numpy()[child, item]
    assert np.max(np.abs(rows["resid"].to_numpy() - (y - fitted[child, item]))) < 1e-6


def test_predict_from_results_reads_a_heywood_fit_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped fit has a negative residual variance (x8); `predict --results` reads it back on the natural
    scale and gives the dense factor scores of the file's estimates."""
    from mlmrun import cli

    monkeypatch.chdir(ROOT)
    spec = "specs/holzinger_swineford_rescov.yaml"
    assert cli.main(["fit", spec, "--out", str(tmp_path / "fit"), "--quiet"]) == 0
    results = tmp_path / "fit" / "results.json"
    params = {r["name"]: r["estimate"] for r in json.loads(results.read_text())["parameters"]}
    assert params["sd(Residual:test=x8)"] < 0
    assert cli.main(["predict", spec, "--results", str(results), "--out", str(tmp_path / "rows.csv"),
                     "--by-unit", str(tmp_path / "units.csv"), "--quiet"]) == 0
    wide = pd.read_csv(ROOT / "specs" / "data" / "holzinger_swineford.csv")
    mean, sd, _ = dense_scores(params, wide)
    units = pd.read_csv(tmp_path / "units.csv")
    for f, factor in enumerate(FACTORS):
        assert np.max(np.abs(units[f"eb_mean({factor})@child"].to_numpy() - mean[:, f])) < 1e-6
        assert np.max(np.abs(units[f"eb_sd({factor})@child"].to_numpy() - sd[:, f])) < 1e-6
