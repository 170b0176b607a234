"""Predictions of discrete latent variables (NPMLE mass points, latent classes) against Bayes' rule written here.

For unit j with prior point probabilities p_jk and conditional likelihoods L_jk = prod_i f(y_i | nu_ik),
the posterior is w_jk = p_jk L_jk / sum_l p_jl L_jl; the EB mean of a mass point's latent variable is
sum_k w_jk e_k (SD under w), `mu` = sum_k w_jk E[y | nu_ik] and `mu_marginal` = sum_k p_jk E[y | nu_ik].
The densities, the centring of the mass points and the multinomial logit of the class probabilities are
written from the model definition, reading only the estimates from the parameter table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from scipy.stats import binom

import mlmrun
from mlmrun import cli
from tests.discrete.data import class_data

ROOT = Path(__file__).resolve().parents[2]


def bayes(prior: np.ndarray, loglik_rows: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Posterior point probabilities per unit from per-row log densities (n, K) and the units' priors (units, K)."""
    n_units = prior.shape[0]
    ll = np.zeros_like(prior)
    for k in range(prior.shape[1]):
        ll[:, k] = np.bincount(unit, weights=loglik_rows[:, k], minlength=n_units)
    a = np.log(prior) + ll
    a -= a.max(axis=1, keepdims=True)
    return np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)


def test_mass_point_predictions_follow_bayes_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    fit = mlmrun.fit("specs/cbpp_npmle.yaml")
    par = dict(zip(fit.params["name"], fit.params["estimate"], strict=True))
    data = pd.read_csv(ROOT / "specs" / "data" / "cbpp.csv")
    rows = fit.predict()
    data = data.iloc[rows["row"].to_numpy() - 1].reset_index(drop=True)
    xb = par["Intercept"] + np.array([par.get(f"C(period)[T.{p}]", 0.0) for p in data["period"]])
    p2 = expit(par["logit2(mass)@herd"])
    prob = np.array([1.0 - p2, p2])
    raw = np.array([par["loc1(_cons)@herd"], par["loc2(_cons)@herd"]])
    e = raw - prob @ raw  # mean-zero masses
    herds, unit = np.unique(data["herd"].to_numpy(), return_inverse=True)
    nu = xb[:, None] + e[None, :]
    dens = binom.logpmf(data["incidence"].to_numpy()[:, None], data["size"].to_numpy()[:, None], expit(nu))
    w = bayes(np.tile(prob, (len(herds), 1)), dens, unit)
    mean, sd = w @ e, np.sqrt(w @ e**2 - (w @ e) ** 2)
    mu_k = data["size"].to_numpy()[:, None] * expit(nu)
    checks = {
        "eb_mean(_cons)@herd": mean[unit], "eb_sd(_cons)@herd": sd[unit],
        "p(class=1)@herd": w[unit, 0], "p(class=2)@herd": w[unit, 1],
        "xb": xb, "eta": xb + mean[unit], "mu": np.sum(w[unit] * mu_k, axis=1), "mu_marginal": mu_k @ prob,
    }
    checks["resid"] = data["incidence"].to_numpy() - checks["mu"]
    p_hat = checks["mu"] / data["size"].to_numpy()
    checks["resid_pearson"] = checks["resid"] / np.sqrt(data["size"].to_numpy() * p_hat * (1 - p_hat))
    for column, want in checks.items():
        assert np.max(np.abs(rows[column].to_numpy() - want)) < 1e-6, column
    assert np.max(np.abs(rows["mu"] - rows["mu_marginal"])) > 0.5  # the posterior moves the fit
    units = fit.ranef()
    assert units["unit"].tolist() == list(pd.unique(data["herd"]))
    order = np.searchsorted(herds, units["unit"].to_numpy())
    assert np.max(np.abs(units["eb_mean(_cons)@herd"].to_numpy() - mean[order])) < 1e-6
    assert np.max(np.abs(units["p(class=2)@herd"].to_numpy() - w[order, 1])) < 1e-6


LCA = {
    "name": "lca2",
    "data": {"path": "lca2.csv"},
    "levels": [{"name": "person", "id": "person"}],
    "responses": [{"name": "y", "family": "binomial"}],
    "fixed": "y ~ 0",
    "latent": [{"name": "class", "level": "person", "classes": 2, "loadings": {"by": "item"}}],
    "structural": {"Gamma": {"class": {"x": "free"}}},
}


def test_latent_class_probabilities_follow_bayes_rule_with_covariates(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    alpha = np.array([[-1.2, -1.0, -1.5, -0.8, -1.1], [1.3, 1.0, 1.4, 0.9, 1.2]])
    frame = class_data(300, 5, 20261130, alpha, np.array([0.0, 0.3]), np.array([0.0, 0.9]))
    fit = mlmrun.fit(LCA, data=frame)
    par = dict(zip(fit.params["name"], fit.params["estimate"], strict=True))
    items = sorted(frame["item"].unique())
    logit_item = np.array([[par[f"class{c}({i})@person"] for i in items] for c in (1, 2)])
    persons, unit = np.unique(frame["person"].to_numpy(), return_inverse=True)
    x = frame.groupby("person")["x"].first().to_numpy()
    p2 = expit(par["logit2(class)@person"] + par["Gamma(class2<-x)"] * x)
    prior = np.column_stack([1.0 - p2, p2])
    item = np.searchsorted(items, frame["item"].to_numpy())
    pk = expit(logit_item[:, item].T)  # (n, 2): P(y = 1 | class k)
    y = frame["y"].to_numpy()[:, None]
    w = bayes(prior, y * np.log(pk) + (1 - y) * np.log1p(-pk), unit)
    rows = fit.predict()
    assert rows["row"].tolist() == list(range(1, len(frame) + 1))
    for k in (1, 2):
        assert np.max(np.abs(rows[f"p(class={k})@person"].to_numpy() - w[unit, k - 1])) < 1e-6
    assert np.max(np.abs(rows["mu"].to_numpy() - np.sum(w[unit] * pk, axis=1))) < 1e-6
    assert np.max(np.abs(rows["mu_marginal"].to_numpy() - np.sum(prior[unit] * pk, axis=1))) < 1e-6
    assert np.max(np.abs(rows["resid"].to_numpy() - (y[:, 0] - np.sum(w[unit] * pk, axis=1)))) < 1e-6
    units = fit.ranef()
    assert len(units) == len(persons) and "eb_mean(class)@person" not in units.columns
    assert np.max(np.abs(units["p(class=1)@person"].to_numpy() - w[:, 0])) < 1e-6


def test_discrete_models_refuse_modes_and_new_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    spec = ROOT / "specs" / "cbpp_npmle.yaml"
    assert cli.main(["fit", str(spec), "--out", str(tmp_path / "fit"), "--quiet"]) == 0
    results = str(tmp_path / "fit" / "results.json")
    assert cli.main(["predict", str(spec), "--results", results, "--out", str(tmp_path / "m.csv"), "--eb", "mode"]) == 2
    assert "--eb mode" in capsys.readouterr().err
    new = tmp_path / "new.csv"
    pd.read_csv(ROOT / "specs" / "data" / "cbpp.csv").head(5).to_csv(new, index=False)
    assert cli.main(["predict", str(spec), "--results", results, "--out", str(tmp_path / "n.csv"),
                     "--data", str(new)]) == 2
    assert "discrete latent" in capsys.readouterr().err
    assert cli.main(["predict", str(spec), "--results", results, "--out", str(tmp_path / "r.csv"), "--quiet"]) == 0
    assert "p(class=2)@herd" in pd.read_csv(tmp_path / "r.csv").columns


def test_normal_latent_variables_below_a_discrete_level_are_refused(tmp_path: Path) -> None:
    from mlmrun.postest.units import unit_predictions
    from mlmrun.postest.usage import UsageError
    from mlmrun.results import FitResult
    from tests.discrete.data import compiled, three_level_data
    from tests.discrete.test_discrete_over_normal import SPEC

    model = compiled(tmp_path, SPEC, three_level_data(20, 5))
    values = model.partable.frame["value"].to_numpy(dtype=float)
    fit = FitResult(model=model, values=values, free=model.partable.pack(values), cov_free=None, loglik=0.0,
                    method="ML", integration={}, converged=True, iterations=0, n_evaluations=0, fit_seconds=0.0,
                    warnings=(), extras={})
    with pytest.raises(UsageError, match="normal latent variables at other"):
        unit_predictions(fit, "mean")


def test_a_discrete_level_below_normal_latent_variables_is_refused(tmp_path: Path) -> None:
    from mlmrun.postest.units import unit_predictions
    from mlmrun.postest.usage import UsageError
    from mlmrun.results import FitResult
    from tests.discrete.data import compiled
    from tests.discrete.test_discrete_under_normal import SPEC, person_points_data

    model = compiled(tmp_path, SPEC.replace("POINTS", "8"), person_points_data(20, 3))
    values = model.partable.frame["value"].to_numpy(dtype=float)
    fit = FitResult(model=model, values=values, free=model.partable.pack(values), cov_free=None, loglik=0.0,
                    method="ML", integration={}, converged=True, iterations=0, n_evaluations=0, fit_seconds=0.0,
                    warnings=(), extras={})
    with pytest.raises(UsageError, match="normal latent variables at other"):
        unit_predictions(fit, "mean")


def test_predict_from_results_of_an_auto_fit_uses_the_fitted_number_of_points(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`discrete: auto` compiles one point and grows it; reading the fit back takes results.json's point count,
    and the posterior probabilities are those the fit recorded (`class_posterior`, 6 significant digits)."""
    import json
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "specs" / "data" / "cbpp.csv", "cbpp.csv")
    text = (ROOT / "specs" / "cbpp_npmle.yaml").read_text()
    Path("auto.yaml").write_text(text.replace("discrete: 2", "discrete: auto").replace("data/cbpp.csv", "cbpp.csv"))
    assert cli.main(["fit", "auto.yaml", "--out", "fit", "--quiet"]) == 0
    doc = json.loads(Path("fit/results.json").read_text())
    K = doc["discrete"]["points"]
    assert K >= 2
    assert cli.main(["predict", "auto.yaml", "--results", "fit/results.json", "--out", "rows.csv",
                     "--by-unit", "units.csv", "--quiet"]) == 0
    units = pd.read_csv("units.csv")
    recorded = dict(zip(doc["class_posterior"]["units"], doc["class_posterior"]["probabilities"], strict=True))
    got = units[[f"p(class={k})@herd" for k in range(1, K + 1)]].to_numpy()
    want = np.array([recorded[str(u)] for u in units["label"]])
    assert np.max(np.abs(got - want)) < 1e-5


ORDINAL = {
    "name": "ord",
    "data": {"path": "ord.csv"},
    "levels": [{"name": "person", "id": "person"}],
    "responses": [{"name": "y", "family": "ordinal"}],
    "fixed": "y ~ 0 + z",
    "latent": [{"name": "f", "level": "person", "loadings": {"by": "item", "fix": {"a": 1}},
                "distribution": {"discrete": 2}}],
}


def test_mass_points_of_a_factor_with_loadings_on_ordinal_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loadings multiply the points (nu = z b + lambda_item e_k); cumulative logit P(y <= c) = expit(cut_c - nu).
    The deviance residual uses the posterior-weighted probability of the observed category."""
    from tests.discrete.data import ordinal_data

    monkeypatch.chdir(tmp_path)
    frame = ordinal_data(300, 4)
    fit = mlmrun.fit(ORDINAL, data=frame)
    par = dict(zip(fit.params["name"], fit.params["estimate"], strict=True))
    p2 = expit(par["logit2(mass)@person"])
    prob = np.array([1.0 - p2, p2])
    raw = np.array([par["loc1(f)@person"], par["loc2(f)@person"]])
    e = raw - prob @ raw
    lam = frame["item"].map({i: par[f"loading(f->{i})"] for i in ("a", "b", "c")}).to_numpy()
    nu = (par["z"] * frame["z"].to_numpy())[:, None] + lam[:, None] * e[None, :]
    cuts = np.array([-np.inf, par["cut1"], par["cut2"], np.inf])
    probs = np.stack([expit(cuts[c + 1] - nu) - expit(cuts[c] - nu) for c in range(3)], axis=2)  # (n, K, 3)
    y = frame["y"].to_numpy()
    persons, unit = np.unique(frame["person"].to_numpy(), return_inverse=True)
    w = bayes(np.tile(prob, (len(persons), 1)), np.log(probs[np.arange(len(y)), :, y]), unit)
    rows = fit.predict()
    mean = w @ e
    assert np.max(np.abs(rows["eb_mean(f)@person"].to_numpy() - mean[unit])) < 1e-6
    assert np.max(np.abs(rows["eb_sd(f)@person"].to_numpy() - np.sqrt(w @ e**2 - mean**2)[unit])) < 1e-6
    assert np.max(np.abs(rows["eta"].to_numpy() - (par["z"] * frame["z"].to_numpy() + lam * mean[unit]))) < 1e-6
    post_probs = np.einsum("ik,ikc->ic", w[unit], probs)
    mu = post_probs @ np.arange(3.0)
    assert np.max(np.abs(rows["mu"].to_numpy() - mu)) < 1e-6
    assert np.max(np.abs(rows["mu_marginal"].to_numpy() - np.einsum("k,ikc->ic", prob, probs) @ np.arange(3.0))) < 1e-6
    deviance = np.sign(y - mu) * np.sqrt(-2.0 * np.log(post_probs[np.arange(len(y)), y]))
    assert np.max(np.abs(rows["resid_deviance"].to_numpy() - deviance)) < 1e-6
