"""Analytic gradient and empirical Bayes of the exact Gaussian path against central differences and dense algebra.

The gradient (likelihood/gaussian/gradient.py) is checked at random parameter
values, ML and REML, on both ways of forming the cross products (raw sums and
row-wise), on: nested random slopes, crossed intercepts, crossed factors with
loadings, free loadings with one residual SD per item (Holzinger-Swineford),
and a factor regressed (B) on a higher-level factor with Gamma. Central
differences with h ~ 1e-5 carry errors of ~1e-9 relative to the deviance
(rounding / h) plus O(h^2), so agreement is asked to 1e-6 relative to the
largest component.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmrun.likelihood.sparse.blocks as sb
from mlmrun.compile.matrices import model_matrices, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate import gaussian_fit
from mlmrun.estimate.gaussian_eb import empirical_bayes
from mlmrun.estimate.gaussian_fit import Objective, fit_gaussian
from mlmrun.estimate.gaussian_params import GaussianParams
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import deviance_at, profiled
from mlmrun.likelihood.gaussian.gradient import deviance_gradient, profiled_gradient
from mlmrun.pipeline import prepare
from tests.conftest import SPECS, write_spec
from tests.likelihood.test_gaussian_loglik import random_values

STRUCTURAL = """
name: structural
data: {path: data/factor.csv}
levels: [{name: person, id: person}, {name: cluster, id: cluster}]
responses: [{name: y, family: gaussian, variance_by: item}]
fixed: "y ~ x + C(item)"
latent:
  - {name: f, level: person, loadings: {by: item, fix: {a: 1}}}
  - {name: g, level: cluster, loadings: {by: item, fix: {a: 1}}}
structural:
  B: {f: {g: free}}
  Gamma: {f: {w: free}}
"""


@pytest.fixture(scope="module")
def structural_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Items loading on a person factor f and a cluster factor g, f regressed on g (B) and on w (Gamma)."""
    folder = tmp_path_factory.mktemp("structural_gradient")
    rng = np.random.default_rng(11)
    rows = []
    for cluster in range(12):
        g = rng.normal(0, 0.7)
        for person in range(6):
            w = rng.normal()
            f = 0.6 * g + 0.5 * w + rng.normal()
            for item, lam in {"a": 1.0, "b": 0.8, "c": 1.2}.items():
                x = rng.normal()
                rows.append({"cluster": cluster, "person": f"{cluster}-{person}", "item": item, "w": w, "x": x,
                             "y": 0.3 * x + lam * f + 0.5 * g + rng.normal(0, 0.7)})
    (folder / "data").mkdir()
    pd.DataFrame(rows).to_csv(folder / "data" / "factor.csv", index=False)
    return write_spec(folder, STRUCTURAL)


LOGLINEAR = """
name: hsced_loglinear
data: {path: data/hsced.csv}
levels: [{name: id, id: id}]
responses: [{name: y, family: gaussian, variance: "~ x + C(item)"}]
fixed: "y ~ x"
random: [{level: id, terms: [1]}]
"""


def load(name: str, structural_spec: Path) -> CompiledModel:
    if name == "hsced_loglinear":
        shutil.copy(SPECS / "data" / "hsced.csv", structural_spec.parent / "data" / "hsced.csv")
        return prepare(write_spec(structural_spec.parent, LOGLINEAR, "hsced_loglinear.yaml")).model
    return prepare(structural_spec if name == "structural" else SPECS / f"{name}.yaml").model


CASES = ["pig_slope_unstructured", "productivity_blocks", "pig_crossed", "kypssim", "holzinger_swineford", "hsced",
         "hsced_loglinear", "latent_covariates", "structural"]
"""Nested random slopes (Cholesky block; identity block in a 3-level nest), crossed intercepts, crossed factors
with loadings, free loadings with item residual SDs, heteroscedastic residuals (per item, and log-linear in
covariates: `variance:`), Gamma, and B across levels."""


def consistent_values(model: CompiledModel, seed: int) -> np.ndarray:
    """Random valid values, with rows constrained equal made equal (the point the free vector describes)."""
    return model.partable.unpack(model.partable.pack(random_values(model, seed)))


def central(f, x: np.ndarray) -> np.ndarray:
    g = np.zeros_like(x)
    for j in range(len(x)):
        h = 1e-5 * max(1.0, abs(x[j]))
        e = np.zeros_like(x)
        e[j] = h
        g[j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def assert_gradient(analytic: np.ndarray, numeric: np.ndarray, rtol: float = 1e-6) -> None:
    scale = max(float(np.max(np.abs(numeric))), 1.0)
    np.testing.assert_allclose(analytic, numeric, atol=rtol * scale, rtol=0)


@pytest.mark.parametrize("raw", [True, False], ids=["raw-sums", "row-wise"])
@pytest.mark.parametrize("case", CASES)
def test_profiled_gradient_matches_central_differences(case: str, raw: bool, structural_spec: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """d loglik / d free (beta profiled, every other free parameter, ML and REML) = central differences."""
    monkeypatch.setattr(GaussianDesign, "_choose_raw", lambda self: raw)
    model = load(case, structural_spec)
    design = GaussianDesign(model)
    pt = model.partable
    beta_free = pt.frame["free"].to_numpy()[model.beta_rows]
    other = np.setdiff1d(np.arange(pt.n_free), beta_free[beta_free > 0] - 1)
    for seed in range(2):
        values = consistent_values(model, seed)
        free = pt.pack(values)
        for reml in (False, True):
            def loglik(x: np.ndarray, reml: bool = reml) -> float:
                return -0.5 * profiled(design, model_matrices(model, pt.unpack(x)), reml=reml,
                                       profile_sigma=False).deviance

            prof, grad = profiled_gradient(design, model_matrices(model, values), reml=reml, profile_sigma=False)
            assert prof.deviance == pytest.approx(-2 * loglik(free), abs=1e-8)
            analytic = pt.jacobian(free).T @ values_gradient(model, values, grad)
            assert_gradient(analytic[other], central(loglik, free)[other])


@pytest.mark.parametrize("case", ["pig_crossed", "holzinger_swineford", "hsced_loglinear", "structural"])
def test_gradient_at_given_beta_includes_beta(case: str, structural_spec: Path) -> None:
    """Nothing profiled (the SE Hessian's function when Gamma is free): every free coordinate, beta included."""
    model = load(case, structural_spec)
    design = GaussianDesign(model)
    pt = model.partable
    values = consistent_values(model, 3)
    free = pt.pack(values)
    deviance, grad = deviance_gradient(design, model_matrices(model, values))
    assert deviance == pytest.approx(deviance_at(design, model_matrices(model, values)), abs=1e-8)
    analytic = pt.jacobian(free).T @ values_gradient(model, values, grad)
    assert_gradient(analytic, central(lambda x: -0.5 * deviance_at(design, model_matrices(model, pt.unpack(x))), free))


@pytest.mark.parametrize("method", ["ML", "REML"])
@pytest.mark.parametrize("case", CASES)
def test_objective_gradient_in_optimiser_coordinates(case: str, method: str, structural_spec: Path) -> None:
    """The optimiser's gradient (profiled sigma, Cholesky coordinates) = central differences of its deviance."""
    model = load(case, structural_spec)
    params = GaussianParams(model)
    obj = Objective(model, GaussianDesign(model), params, reml=method == "REML")
    assert obj.analytic
    rng = np.random.default_rng(len(case))
    values = consistent_values(model, 5)
    phi = params.phi_from_free(model.partable.pack(values), 1.0)
    phi = phi + 0.05 * rng.normal(size=len(phi)) * (~params.sym) + 0.05 * np.abs(phi) * params.sym
    dev, grad = obj.value_and_grad(phi)
    assert dev == pytest.approx(obj(phi), abs=1e-8)
    assert_gradient(grad, central(obj, phi))


def dense_predictions(model: CompiledModel, values: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Posterior means/SDs of eta per unit from dense algebra: u | y ~ N(C A'W r, C), C = (I + A'WA)^-1."""
    mats = model_matrices(model, values)
    n, M = model.n, len(model.latent)
    z = np.column_stack([lat.Z @ lam if lat.Z.shape[1] else np.zeros(n)
                         for lat, lam in zip(model.latent, mats.lambdas, strict=True)])
    T = mats.T
    Lblk = np.zeros((M, M))
    levels = sorted({lat.level for lat in model.latent})
    col0, q = {}, 0
    for lvl in levels:
        members = model.latent_at(lvl)
        Lblk[np.ix_(members, members)] = mats.L[lvl]
        col0[lvl] = q
        q += model.levels[lvl].n_units * len(members)
    G = T @ Lblk
    Q = np.zeros((n, M, q))
    for lvl in levels:
        members = model.latent_at(lvl)
        for j, m in enumerate(members):
            Q[np.arange(n), :, col0[lvl] + model.levels[lvl].codes * len(members) + j] = G[:, m]
    A = np.einsum("im,imq->iq", z, Q)
    base = model.W @ (T @ mats.Gamma).T if model.W.shape[1] else np.zeros((n, M))
    r = model.y - model.offset - model.X @ mats.beta - np.einsum("im,im->i", z, base)
    w = 1.0 / mats.scale**2
    C = np.linalg.inv(np.eye(q) + A.T @ (w[:, None] * A))
    u = C @ (A.T @ (w * r))
    out = {}
    for lvl in levels:
        members = model.latent_at(lvl)
        codes = model.levels[lvl].codes
        first = np.array([np.flatnonzero(codes == g)[0] for g in range(model.levels[lvl].n_units)])
        Qg = Q[first][:, members, :]
        mean = base[first][:, members] + Qg @ u
        var = np.einsum("gmq,qp,gmp->gm", Qg, C, Qg)
        out[model.levels[lvl].name] = (mean, np.sqrt(var))
    return out


@pytest.mark.parametrize("case", ["pig_slope_unstructured", "productivity_blocks", "pig_crossed", "penicillin",
                                  "hsced", "hsced_loglinear", "structural"])
def test_empirical_bayes_matches_dense_posterior(case: str, structural_spec: Path) -> None:
    model = load(case, structural_spec)
    values = consistent_values(model, 7)
    preds, warnings = empirical_bayes(GaussianDesign(model), model_matrices(model, values))
    assert not warnings
    expected = dense_predictions(model, values)
    assert {p.level for p in preds} == set(expected)
    for p in preds:
        mean, sd = expected[p.level]
        np.testing.assert_allclose(p.mean, mean, atol=1e-8)
        np.testing.assert_allclose(p.sd, sd, atol=1e-8)


def test_fit_reports_empirical_bayes_in_the_quadrature_layout(structural_spec: Path) -> None:
    fit = fit_gaussian(prepare(structural_spec).model)
    eb = fit.extras["empirical_bayes"]
    assert set(eb) == {"person", "cluster"}
    assert len(eb["person"]["units"]) == 72 and set(eb["person"]) == {"units", "f"}
    assert len(eb["cluster"]["g"]["mean"]) == 12 and all(s > 0 for s in eb["cluster"]["g"]["sd"])


def test_progress_counts_iterations_across_restarts() -> None:
    seen: list[tuple[int, float]] = []
    fit_gaussian(prepare(SPECS / "kypssim.yaml").model, progress=lambda i, ll: seen.append((i, ll)))
    steps = [i for i, _ in seen]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 5
    assert all(np.isfinite(ll) for _, ll in seen)


def test_sparse_lu_remainder_falls_back_to_central_differences(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a dense remainder there is no selected inverse: numeric gradients, EB means without SDs."""
    reference = fit_gaussian(prepare(SPECS / "pig_crossed.yaml").model)
    monkeypatch.setattr(sb, "DENSE_MAX", 0)
    monkeypatch.setattr(gaussian_fit, "affine_kernel", lambda *args: None)  # the general path's fallback
    fit = fit_gaussian(prepare(SPECS / "pig_crossed.yaml").model)
    assert fit.extras["optimizer"]["method"] == "L-BFGS-B (central-difference gradient)"
    assert fit.loglik == pytest.approx(reference.loglik, abs=1e-6)
    assert any("SDs are not available" in w for w in fit.warnings)
    week = fit.extras["empirical_bayes"]["week"]
    np.testing.assert_allclose(week["_cons"]["mean"], reference.extras["empirical_bayes"]["week"]["_cons"]["mean"],
                               atol=1e-4)
