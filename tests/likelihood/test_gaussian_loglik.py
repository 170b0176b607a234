"""exact_loglik against a dense multivariate-normal density built independently from the model matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlmrun.compile.matrices import model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.gaussian_fit import fit_gaussian
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import exact_loglik, profiled, regression_loglik
from mlmrun.pipeline import prepare
from tests.conftest import SPECS, write_spec


def dense_loglik(model: CompiledModel, values: np.ndarray) -> float:
    """log N(y; mean, V) with V = diag(sigma_i^2) + sum over levels of same-unit blocks C Psi C'.

    c_i = z_i' T (loadings through the structural model), Psi = L L'; the mean
    adds z_i' T Gamma w_i. O(n^2): small models only.
    """
    mats = model_matrices(model, values)
    n = model.n
    z = np.column_stack([lat.Z @ lam if lat.Z.shape[1] else np.zeros(n) for lat, lam in zip(model.latent, mats.lambdas, strict=True)])
    T = mats.T
    c = z @ T
    mean = model.X @ mats.beta + model.offset + np.einsum("im,mc,ic->i", z, T @ mats.Gamma, model.W)
    V = np.diag(mats.scale**2)
    for lvl, L in mats.L.items():
        members = model.latent_at(lvl)
        C = c[:, members]
        codes = model.levels[lvl].codes
        V += (codes[:, None] == codes[None, :]) * (C @ (L @ L.T) @ C.T)
    C = np.linalg.cholesky(V)
    r = np.linalg.solve(C, model.y - mean)
    return float(-0.5 * (n * np.log(2 * np.pi) + 2 * np.sum(np.log(np.diag(C))) + r @ r))


def random_values(model: CompiledModel, seed: int) -> np.ndarray:
    """Arbitrary but valid parameter values for every free row."""
    rng = np.random.default_rng(seed)
    pt = model.partable
    values = pt.start_values
    for i, block in enumerate(pt.frame["block"]):
        if not pt.frame.at[i, "free"]:
            continue
        values[i] = {"fixed": rng.normal(), "sd": rng.uniform(0.3, 2.0), "corr": rng.uniform(-0.4, 0.4),
                     "residual": rng.uniform(0.5, 2.0), "loading": rng.uniform(0.5, 1.5),
                     "B": rng.uniform(-0.8, 0.8), "Gamma": rng.normal(), "hetero": rng.uniform(-0.5, 0.5)}[block]
    return values


@pytest.fixture(scope="module")
def structural_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Gaussian factor model with a free loading, B (person factor on cluster factor) and Gamma."""
    folder = tmp_path_factory.mktemp("structural")
    rng = np.random.default_rng(3)
    rows = []
    loading = {"a": 1.0, "b": 0.8, "c": 1.2}
    for cluster in range(20):
        g = rng.normal(0, np.sqrt(0.5))
        for person in range(8):
            w = rng.normal()
            f = 0.8 * g + 0.5 * w + rng.normal()
            for item, lam in loading.items():
                x = rng.normal()
                rows.append({"cluster": cluster, "person": f"{cluster}-{person}", "item": item, "w": w, "x": x,
                             "y": 0.3 * x + lam * f + rng.normal(0, 0.7)})
    (folder / "data").mkdir()
    pd.DataFrame(rows).to_csv(folder / "data" / "factor.csv", index=False)
    return write_spec(folder, """
name: structural
data: {path: data/factor.csv}
levels: [{name: person, id: person}, {name: cluster, id: cluster}]
responses: [{name: y, family: gaussian, variance_by: item}]
fixed: "y ~ x + C(item)"
latent:
  - {name: f, level: person, loadings: {by: item, fix: {a: 1}}}
  - {name: g, level: cluster, variance: 0.5}
structural:
  B: {f: {g: free}}
  Gamma: {f: {w: free}}
""")


SPEC_CASES = ["pig_intercept", "pig_slope_unstructured", "productivity", "productivity_blocks", "pig_crossed",
              "penicillin", "hsced", "latent_covariates"]


@pytest.mark.parametrize("spec", SPEC_CASES)
def test_exact_loglik_matches_dense_density(spec: str) -> None:
    model = prepare(SPECS / f"{spec}.yaml").model
    values = random_values(model, seed=len(spec))
    assert exact_loglik(model, values) == pytest.approx(dense_loglik(model, values), abs=1e-7)


def test_exact_loglik_with_loadings_b_and_gamma(structural_spec: Path) -> None:
    model = prepare(structural_spec).model
    assert model.B_entries and model.Gamma_entries
    for seed in range(3):
        values = random_values(model, seed)
        assert exact_loglik(model, values) == pytest.approx(dense_loglik(model, values), abs=1e-8)


def test_structural_model_fits_and_reports_its_optimum(structural_spec: Path) -> None:
    model = prepare(structural_spec).model
    fit = fit_gaussian(model)
    assert np.isfinite(fit.loglik)
    assert exact_loglik(model, fit.values) == pytest.approx(fit.loglik, abs=1e-7)
    assert fit.converged, fit.warnings
    assert fit.cov_free is not None and fit.cov_free.shape == (model.partable.n_free,) * 2
    assert np.all(np.isfinite(fit.se()[model.partable.frame["free"].to_numpy() > 0]))
    assert abs(fit.values[model.partable.index("B(f<-g)")] - 0.8) < 0.5


@pytest.mark.parametrize("spec", ["pig_slope_unstructured", "productivity", "hsced", "pig_crossed"])
def test_fitted_loglik_is_the_unprofiled_loglik_at_the_estimates(spec: str) -> None:
    """Profiling beta and sigma must not change the likelihood: l(estimates) == reported maximum."""
    model = prepare(SPECS / f"{spec}.yaml").model
    fit = fit_gaussian(model)
    assert exact_loglik(model, fit.values) == pytest.approx(fit.loglik, abs=1e-8)


def test_profiled_and_unprofiled_sigma_agree_at_the_same_point() -> None:
    model = prepare(SPECS / "pig_slope.yaml").model
    design = GaussianDesign(model)
    values = random_values(model, 1)
    sigma = values[model.partable.index("sd(Residual)")]
    relative = values.copy()
    for r in model.partable.rows_of("sd"):
        relative[r] /= sigma
    relative[model.partable.index("sd(Residual)")] = 1.0
    for reml in (False, True):
        prof = profiled(design, model_matrices(model, relative), reml=reml, profile_sigma=True)
        natural = values.copy()
        for r in model.partable.rows_of("sd"):
            natural[r] = relative[r] * prof.sigma
        natural[model.partable.index("sd(Residual)")] = prof.sigma
        direct = profiled(design, model_matrices(model, natural), reml=reml, profile_sigma=False)
        assert direct.deviance == pytest.approx(prof.deviance, abs=1e-8)
        np.testing.assert_allclose(direct.beta, prof.beta, rtol=1e-10)
        np.testing.assert_allclose(direct.fixed_vcov, prof.fixed_vcov, rtol=1e-8)


def test_regression_loglik_is_ols() -> None:
    model = prepare(SPECS / "pig_intercept.yaml").model
    X, y = model.X, model.y
    rss = float(np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2))
    n, p = X.shape
    assert regression_loglik(model, reml=False) == pytest.approx(-n / 2 * (1 + np.log(2 * np.pi * rss / n)), abs=1e-9)
    reml = -0.5 * ((n - p) * (1 + np.log(2 * np.pi * rss / (n - p))) + np.linalg.slogdet(X.T @ X)[1])
    assert regression_loglik(model, reml=True) == pytest.approx(reml, abs=1e-9)


def test_heteroscedastic_regression_loglik_is_a_maximum() -> None:
    model = prepare(SPECS / "hsced.yaml").model
    ll = regression_loglik(model, reml=False)
    X, y = model.X, model.y
    item = model.equations[0].scale_rows
    for factor in (0.98, 1.02):
        sd = np.where(item == item[0], 1.0, factor)
        best = -np.inf
        for scale in np.linspace(0.8, 1.8, 201):
            w = 1 / (scale * sd) ** 2
            beta = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * y))
            best = max(best, float(np.sum(stats.norm.logpdf(y, X @ beta, scale * sd))))
        assert best <= ll + 1e-6
