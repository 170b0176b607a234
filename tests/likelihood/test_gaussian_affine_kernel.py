"""The affine kernel of ordinary LMMs (likelihood/gaussian/affine.py) against the general path and a dense V.

Every shipped linear mixed model of the common class (sigma profiled, no
free loadings, structural paths or residual structures) is fitted through
the kernel; at random points phi its profiled deviance and gradient must be
those of the general pipeline (phi -> free vector -> model matrices ->
system -> adjoint -> phi). Independently, the profiled ML and REML criteria
are computed here from the full n x n marginal covariance
V = sigma^2 (Z Sigma Z' + I), built from the data file itself, with GLS beta
and numpy's slogdet; the kernel's gradient is checked against central
differences of that dense criterion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.gaussian_fit import Objective
from mlmrun.estimate.gaussian_params import GaussianParams, start_values
from mlmrun.likelihood.gaussian import affine
from mlmrun.likelihood.gaussian.affine import Blocked, Dense, OneLevel
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.pipeline import prepare
from tests.conftest import SPECS

KERNEL_SPECS = {
    "sleepstudy": OneLevel, "gcse_slope": OneLevel, "hsb_slope": OneLevel, "pig_intercept": OneLevel,
    "pig_slope": OneLevel, "pig_slope_reml": OneLevel, "pig_slope_unstructured": OneLevel,
    "penicillin": Dense, "pig_crossed": Dense, "productivity": Dense, "productivity_reml": Dense,
    "productivity_blocks": Dense, "scotssec": Blocked,
}
GENERAL_SPECS = ["ovary_ar2", "hsced", "latent_covariates", "holzinger_swineford"]


def objectives(spec: str) -> tuple[CompiledModel, GaussianParams, Objective, Objective, np.ndarray]:
    """The model, its coordinates, the kernel and general objectives, and the start point phi0."""
    model = prepare(SPECS / f"{spec}.yaml").model
    reml = model.spec.estimation.method == "REML"
    design, params = GaussianDesign(model), GaussianParams(model)
    fast = Objective(model, design, params, reml)
    general = Objective(model, GaussianDesign(model), params, reml, use_kernel=False)
    free0, sigma0 = start_values(model, params)
    return model, params, fast, general, params.phi_from_free(free0, sigma0)


def random_points(params: GaussianParams, phi0: np.ndarray, seed: int, count: int = 3) -> list[np.ndarray]:
    """Points around the start, SD coordinates and Cholesky diagonals kept positive."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        phi = phi0 + rng.normal(0.0, 0.5, len(phi0)) * np.maximum(np.abs(phi0), 0.2)
        out.append(np.where(params.sym, np.abs(phi), phi))
    return out


@pytest.mark.parametrize("spec", sorted(KERNEL_SPECS))
def test_kernel_matches_the_general_path_at_random_points(spec: str):
    _, params, fast, general, phi0 = objectives(spec)
    assert fast.kernel is not None and isinstance(fast.kernel.kernel, KERNEL_SPECS[spec])
    assert general.kernel is None
    for phi in random_points(params, phi0, seed=len(spec)):
        dev_f, g_f = fast.value_and_grad(phi)
        dev_g, g_g = general.value_and_grad(phi)
        assert dev_f == pytest.approx(dev_g, rel=1e-10)
        np.testing.assert_allclose(g_f, g_g, rtol=1e-7, atol=1e-7 * np.max(np.abs(g_g)))
        res_f, res_g = fast.fit(phi * 1.01), general.fit(phi * 1.01)
        assert res_f.deviance == pytest.approx(res_g.deviance, rel=1e-10)
        assert res_f.sigma == pytest.approx(res_g.sigma, rel=1e-9)
        np.testing.assert_allclose(res_f.beta, res_g.beta, rtol=1e-8, atol=1e-10 * np.max(np.abs(res_g.beta)))
        np.testing.assert_allclose(res_f.fixed_vcov, res_g.fixed_vcov, rtol=1e-8)


@pytest.mark.parametrize("spec", GENERAL_SPECS)
def test_models_outside_the_affine_class_keep_the_general_path(spec: str):
    _, _, fast, _, _ = objectives(spec)
    assert fast.kernel is None


def _indicators(codes: np.ndarray) -> np.ndarray:
    levels, inverse = np.unique(codes, return_inverse=True)
    return (inverse[:, None] == np.arange(len(levels))[None, :]).astype(float)


def _dense_problem(spec: str) -> tuple[np.ndarray, np.ndarray, callable]:
    """y, X and phi -> (Z, Sigma) built from the data file, phi in the order GaussianParams gives it."""
    if spec == "sleepstudy":
        d = pd.read_csv(SPECS / "data" / "sleepstudy.csv")
        G = _indicators(d["Subject"].to_numpy())
        Z = np.hstack([G, G * d["Days"].to_numpy()[:, None]])
        u = G.shape[1]

        def cov(phi: np.ndarray) -> np.ndarray:
            lam = np.array([[phi[0], 0.0], [phi[1], phi[2]]])  # lme4's theta: lower Cholesky factor by rows
            return np.kron(lam @ lam.T, np.eye(u))
        X = np.column_stack([np.ones(len(d)), d["Days"]])
        return d["Reaction"].to_numpy(float), X, lambda phi: (Z, cov(phi))
    if spec == "penicillin":
        d = pd.read_csv(SPECS / "data" / "penicillin.csv")
        Gp, Gs = _indicators(d["plate"].to_numpy()), _indicators(d["sample"].to_numpy())
        Z = np.hstack([Gp, Gs])
        return (d["diameter"].to_numpy(float), np.ones((len(d), 1)),
                lambda phi: (Z, np.diag(np.r_[np.full(Gp.shape[1], phi[0] ** 2), np.full(Gs.shape[1], phi[1] ** 2)])))
    if spec == "productivity_reml":
        d = pd.read_csv(SPECS / "data" / "productivity.csv")
        Gst, Greg = _indicators(d["state"].to_numpy()), _indicators(d["region"].to_numpy())
        Z = np.hstack([Gst, Greg])
        X = np.column_stack([np.ones(len(d))] + [d[c] for c in ("private", "emp", "hwy", "water", "other", "unemp")])
        return (d["gsp"].to_numpy(float), X,
                lambda phi: (Z, np.diag(np.r_[np.full(Gst.shape[1], phi[0] ** 2), np.full(Greg.shape[1], phi[1] ** 2)])))
    assert spec == "pig_slope_reml"
    d = pd.read_csv(SPECS / "data" / "pig.csv")
    G = _indicators(d["id"].to_numpy())
    Z = np.hstack([G, G * d["week"].to_numpy()[:, None]])
    u = G.shape[1]
    X = np.column_stack([np.ones(len(d)), d["week"]])
    return (d["weight"].to_numpy(float), X,
            lambda phi: (Z, np.diag(np.r_[np.full(u, phi[0] ** 2), np.full(u, phi[1] ** 2)])))


def dense_profiled_deviance(y: np.ndarray, X: np.ndarray, Z: np.ndarray, Sigma: np.ndarray, reml: bool) -> float:
    """-2 (restricted) log likelihood at GLS beta and the maximising sigma^2, from V = sigma^2 (Z Sigma Z' + I)."""
    n, p = X.shape
    V = Z @ Sigma @ Z.T + np.eye(n)
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    quad = float(r @ Vi @ r)
    dof = n - p if reml else n
    sigma2 = quad / dof
    dev = np.linalg.slogdet(V)[1] + n * np.log(sigma2) + quad / sigma2 + dof * np.log(2 * np.pi)
    if reml:  # log|X'V^-1X| with V including sigma^2
        dev += np.linalg.slogdet(XtViX)[1] - p * np.log(sigma2)
    return float(dev)


@pytest.mark.parametrize("spec", ["sleepstudy", "penicillin", "productivity_reml", "pig_slope_reml"])
def test_kernel_deviance_and_gradient_match_a_dense_marginal_likelihood(spec: str):
    model, params, fast, _, phi0 = objectives(spec)
    reml = model.spec.estimation.method == "REML"
    y, X, structure = _dense_problem(spec)

    def dense(phi: np.ndarray) -> float:
        Z, Sigma = structure(phi)
        return dense_profiled_deviance(y, X, Z, Sigma, reml)

    for phi in random_points(params, phi0, seed=7, count=2):
        dev, g = fast.kernel.value_and_grad(phi)
        assert dev.deviance == pytest.approx(dense(phi), rel=1e-9)
        steps = 1e-5 * np.maximum(np.abs(phi), 0.1)
        numeric = np.array([(dense(phi + np.eye(len(phi))[j] * steps[j]) - dense(phi - np.eye(len(phi))[j] * steps[j]))
                            / (2 * steps[j]) for j in range(len(phi))])
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-5 * np.max(np.abs(numeric)))


def test_a_map_the_pipeline_contradicts_is_refused(monkeypatch: pytest.MonkeyPatch):
    """The structural Jacobian is confirmed against the general pipeline; a wrong one keeps the general path."""
    from mlmrun.estimate import gaussian_affine

    structural = gaussian_affine._level_jacobians

    def off_by_a_bit(*args):
        out = structural(*args)
        for D in out.values():
            D *= 1.0 + 1e-9
        return out

    monkeypatch.setattr(gaussian_affine, "_level_jacobians", off_by_a_bit)
    _, _, fast, _, _ = objectives("sleepstudy")
    assert fast.kernel is None


SYNTHETIC = """
name: synthetic
data: {{path: data/synthetic.csv}}
levels:
{levels}
responses:
  - {{name: y, family: gaussian}}
fixed: "{fixed}"
random:
{random}
estimation: {{method: {method}}}
"""


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory):
    """Rows of units g (12) crossed with h (5) and an item level, two slopes x1, x2."""
    folder = tmp_path_factory.mktemp("affine")
    rng = np.random.default_rng(5)
    n = 300
    g, h, item = rng.integers(0, 12, n), rng.integers(0, 5, n), rng.integers(0, 4, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    b = rng.normal(size=(12, 3)) @ np.diag([1.0, 0.5, 0.3])
    y = 1.0 + 0.5 * x1 + b[g, 0] + b[g, 1] * x1 + b[g, 2] * x2 + rng.normal(0, 0.4, 5)[h] + rng.normal(size=n)
    (folder / "data").mkdir()
    pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g, "h": h, "item": item}).to_csv(folder / "data" / "synthetic.csv",
                                                                                  index=False)
    return folder


SYNTHETIC_CASES = {
    "three_unstructured": ("  - {name: g, id: g}", "y ~ x1", "  - {level: g, terms: [1, x1, x2], covariance: unstructured}",
                           OneLevel),
    "no_fixed_effects_reml": ("  - {name: g, id: g}", "y ~ 0", "  - {level: g, terms: [1, x1], covariance: independent}",
                              OneLevel),
    "three_crossed_levels": ("  - {name: g, id: g, crossed: true}\n  - {name: h, id: h, crossed: true}\n"
                             "  - {name: item, id: item, crossed: true}", "y ~ x1 + x2",
                             "  - {level: g, terms: [1, x1], covariance: unstructured}\n  - {level: h, terms: [1]}\n"
                             "  - {level: item, terms: [1]}", Dense),
}


@pytest.mark.parametrize("spec", ["penicillin", "productivity_reml", "pig_crossed"])
def test_blocked_kernel_matches_the_general_path_on_nested_and_crossed_levels(spec: str, monkeypatch):
    """With the dense limit lowered, the first level is eliminated unit by unit (`Blocked`) instead."""
    monkeypatch.setattr(affine, "DENSE_AFFINE_MAX", 12)
    _, params, fast, general, phi0 = objectives(spec)
    assert isinstance(fast.kernel.kernel, Blocked)
    for phi in random_points(params, phi0, seed=2):
        dev_f, g_f = fast.value_and_grad(phi)
        dev_g, g_g = general.value_and_grad(phi)
        assert dev_f == pytest.approx(dev_g, rel=1e-10)
        np.testing.assert_allclose(g_f, g_g, rtol=1e-7, atol=1e-7 * np.max(np.abs(g_g)))


@pytest.mark.parametrize(("case", "dense_max"), [(case, 128) for case in sorted(SYNTHETIC_CASES)]
                         + [("three_crossed_levels", 12)])
def test_kernel_matches_the_general_path_on_other_layouts(case: str, dense_max: int, synthetic_folder, monkeypatch):
    """Also with the dense limit lowered, so that the first of three crossed levels is eliminated unit by unit."""
    from tests.conftest import write_spec

    monkeypatch.setattr(affine, "DENSE_AFFINE_MAX", dense_max)
    levels, fixed, random, kind = SYNTHETIC_CASES[case]
    kind = Blocked if dense_max < 128 else kind
    method = "REML" if case.endswith("reml") else "ML"
    path = write_spec(synthetic_folder, SYNTHETIC.format(levels=levels, fixed=fixed, random=random, method=method),
                      f"{case}.yaml")
    model = prepare(path).model
    design, params = GaussianDesign(model), GaussianParams(model)
    fast = Objective(model, design, params, method == "REML")
    general = Objective(model, GaussianDesign(model), params, method == "REML", use_kernel=False)
    assert isinstance(fast.kernel.kernel, kind)
    free0, sigma0 = start_values(model, params)
    for phi in random_points(params, params.phi_from_free(free0, sigma0), seed=3):
        dev_f, g_f = fast.value_and_grad(phi)
        dev_g, g_g = general.value_and_grad(phi)
        assert dev_f == pytest.approx(dev_g, rel=1e-10)
        np.testing.assert_allclose(g_f, g_g, rtol=1e-7, atol=1e-7 * np.max(np.abs(g_g)))


@pytest.mark.parametrize("spec", ["sleepstudy", "pig_slope_reml"])
def test_one_level_kernel_forms_its_own_grams_when_the_design_keeps_rows(spec: str, monkeypatch):
    """Without the design's raw sums (row-wise cross products) the kernel sums the unit Grams itself."""
    monkeypatch.setattr(GaussianDesign, "_choose_raw", lambda self: False)
    _, params, fast, general, phi0 = objectives(spec)
    assert not fast.design.raw and isinstance(fast.kernel.kernel, OneLevel)
    for phi in random_points(params, phi0, seed=4, count=2):
        dev_f, g_f = fast.value_and_grad(phi)
        dev_g, g_g = general.value_and_grad(phi)
        assert dev_f == pytest.approx(dev_g, rel=1e-10)
        np.testing.assert_allclose(g_f, g_g, rtol=1e-7, atol=1e-7 * np.max(np.abs(g_g)))


@pytest.mark.parametrize("q", [1, 2, 7, 57])
def test_spd_inverse_is_the_inverse_and_log_determinant(q: int) -> None:
    from mlmrun.likelihood.sparse.spd import spd_inverse

    A = np.random.default_rng(q).normal(size=(q, q))
    M = A @ A.T + 0.1 * np.eye(q)
    inv, logdet = spd_inverse(M)
    assert np.allclose(inv @ M, np.eye(q), atol=1e-9) and np.array_equal(inv, inv.T)
    assert logdet == pytest.approx(np.linalg.slogdet(M)[1], rel=1e-12, abs=1e-12)
    M[0, 0] = -1.0
    with pytest.raises(np.linalg.LinAlgError):
        spd_inverse(M)
