"""The exact Gaussian estimator: metamorphic checks, boundary fits, parameterisation and inference helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.estimate.gaussian_fit import fit_gaussian
from mlmrun.estimate.gaussian_params import GaussianParams
from mlmrun.estimate.gaussian_se import FORWARD_ABOVE, gradient_hessian
from mlmrun.estimate.inference import covariance_from_hessian, hessian_from_gradient, numeric_hessian
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult
from tests.conftest import SPECS, write_spec
from tests.reference.compare import load_reference

PIG_SLOPE = """
name: pig_check
data: {{path: data/{csv}}}
levels: [{{name: pig, id: id{crossed}}}{week_level}]
responses: [{{name: weight, family: gaussian}}]
fixed: "weight ~ {x}"
random: [{{level: pig, terms: [1, {x}], covariance: unstructured}}{week_random}]
estimation: {{method: {method}}}
"""


def pig_spec(folder: Path, csv: str = "pig.csv", x: str = "week", method: str = "ML", crossed: bool = False) -> Path:
    text = PIG_SLOPE.format(
        csv=csv, x=x, method=method, crossed=", crossed: true" if crossed else "",
        week_level=", {name: wk, id: week, crossed: true}" if crossed else "",
        week_random=", {level: wk, terms: [1]}" if crossed else "")
    return write_spec(folder, text, name=f"{csv}-{x}-{method}-{crossed}.yaml")


def value(fit: FitResult, name: str) -> float:
    return float(fit.values[fit.model.partable.index(name)])


@pytest.mark.parametrize("method", ["ML", "REML"])
@pytest.mark.parametrize("crossed", [False, True])
def test_row_order_does_not_matter(spec_dir: Path, method: str, crossed: bool) -> None:
    frame = pd.read_csv(spec_dir / "data" / "pig.csv")
    frame.sample(frac=1.0, random_state=7).to_csv(spec_dir / "data" / "pig_shuffled.csv", index=False)
    a = fit_gaussian(prepare(pig_spec(spec_dir, method=method, crossed=crossed)).model)
    b = fit_gaussian(prepare(pig_spec(spec_dir, "pig_shuffled.csv", method=method, crossed=crossed)).model)
    assert b.loglik == pytest.approx(a.loglik, abs=1e-7)
    np.testing.assert_allclose(b.values, a.values, rtol=2e-5, atol=1e-7)


def test_rescaling_a_covariate_rescales_its_coefficients_only(spec_dir: Path) -> None:
    frame = pd.read_csv(spec_dir / "data" / "pig.csv")
    frame["day"] = 7.0 * frame["week"]
    frame.to_csv(spec_dir / "data" / "pig_days.csv", index=False)
    weeks = fit_gaussian(prepare(pig_spec(spec_dir)).model)
    days = fit_gaussian(prepare(pig_spec(spec_dir, "pig_days.csv", x="day")).model)
    assert days.loglik == pytest.approx(weeks.loglik, abs=1e-7)
    assert value(days, "day") == pytest.approx(value(weeks, "week") / 7, rel=1e-6)
    assert value(days, "sd(day)@pig") == pytest.approx(value(weeks, "sd(week)@pig") / 7, rel=1e-4)
    assert value(days, "corr(day,_cons)@pig") == pytest.approx(value(weeks, "corr(week,_cons)@pig"), abs=1e-4)
    assert value(days, "sd(Residual)") == pytest.approx(value(weeks, "sd(Residual)"), rel=1e-6)


def test_zero_group_variance_gives_a_boundary_fit_with_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    group = np.repeat(np.arange(30), 8)
    x = rng.normal(size=len(group))
    e = rng.normal(size=len(group))
    e -= (np.bincount(group, weights=e) / 8)[group]  # residual group means exactly 0: the ML variance is 0
    (tmp_path / "data").mkdir()
    pd.DataFrame({"g": group, "x": x, "y": 1.0 + 0.5 * x + e}).to_csv(tmp_path / "data" / "flat.csv", index=False)
    spec = write_spec(tmp_path, """
name: flat
data: {path: data/flat.csv}
levels: [{name: grp, id: g}]
responses: [{name: y, family: gaussian}]
fixed: "y ~ x"
random: [{level: grp, terms: [1]}]
""")
    fit = fit_gaussian(prepare(spec).model)
    assert fit.converged
    assert value(fit, "sd(_cons)@grp") == 0.0
    assert "sd(_cons)@grp is at the boundary (0): singular fit" in fit.warnings
    lr = fit.extras["lr_test"]
    assert lr["kind"] == "chibar2" and lr["chi2"] == pytest.approx(0.0, abs=1e-6) and lr["p"] == 1.0


def test_progress_is_called_with_increasing_iterations() -> None:
    calls: list[tuple[int, float]] = []
    fit_gaussian(prepare(SPECS / "sleepstudy.yaml").model, lambda it, ll: calls.append((it, ll)))
    assert calls and [it for it, _ in calls] == list(range(1, len(calls) + 1))
    assert calls[-1][1] == pytest.approx(load_reference("sleepstudy__rs_ml", "results", "loglik"), abs=1e-5)


def test_cholesky_coordinates_round_trip() -> None:
    model = prepare(SPECS / "gcse_slope.yaml").model
    params = GaussianParams(model)
    assert params.profile_sigma and len(params.chol) == 1 and params.n_phi == 3
    phi = np.array([0.4, -0.05, 0.02])
    free = params.free_vector(phi, sigma=2.0)
    np.testing.assert_allclose(params.phi_from_free(free, sigma=2.0), phi, atol=1e-10)
    sd = free[params.chol[0].sd_idx]
    np.testing.assert_allclose(sd, 2.0 * np.array([0.4, np.hypot(0.05, 0.02)]))


def test_heteroscedastic_residuals_are_optimised_directly() -> None:
    params = GaussianParams(prepare(SPECS / "hsced.yaml").model)
    assert not params.profile_sigma and params.plain_kind.count("residual") == 2


def test_numeric_hessian_and_gradient_hessian_of_a_quadratic() -> None:
    A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, -0.2], [0.5, -0.2, 2.0]])
    b = np.array([1.0, -2.0, 0.5])
    x0 = np.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(numeric_hessian(lambda x: 0.5 * x @ A @ x + b @ x, x0), A, atol=1e-5)
    np.testing.assert_allclose(hessian_from_gradient(lambda x: A @ x + b, x0), A, atol=1e-8)
    np.testing.assert_allclose(numeric_hessian(lambda x: np.sum(np.exp(x)), x0, np.full(3, 1e-4)),
                               np.diag(np.exp(x0)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("d", [3, 15])
def test_gradient_hessian_central_and_forward(d: int) -> None:
    """Central differences up to FORWARD_ABOVE coordinates, forward (one gradient each, g0 reused) beyond."""
    rng = np.random.default_rng(d)
    Q = rng.normal(size=(d, d))
    A = Q @ Q.T + d * np.eye(d)
    x0 = rng.normal(size=d)
    calls = []

    def grad(x: np.ndarray) -> np.ndarray:
        calls.append(1)
        return A @ x + np.exp(x)

    steps = np.full(d, 1e-5)
    H = gradient_hessian(grad, x0, steps, g0=grad(x0))
    np.testing.assert_allclose(H, A + np.diag(np.exp(x0)), rtol=1e-6, atol=1e-6)
    assert len(calls) == 1 + (2 * d if d <= FORWARD_ABOVE else d)


def test_covariance_from_hessian() -> None:
    H = np.array([[2.0, 0.5], [0.5, 1.0]])
    cov, warning = covariance_from_hessian(H)
    assert warning is None
    np.testing.assert_allclose(cov, np.linalg.inv(H))
    cov, warning = covariance_from_hessian(np.array([[1.0, 1.0], [1.0, 1.0]]), ["sd(a)", "sd(b)"])
    assert cov is None and "not positive definite" in warning and "sd(" in warning
    cov, warning = covariance_from_hessian(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    assert cov is None and "non-finite" in warning


def test_singular_unstructured_fit_flags_the_correlation_and_keeps_other_ses(tmp_path: Path) -> None:
    """No slope variance in the data: the slope SD or the correlation goes to its boundary (lme4: singular fit)."""
    rng = np.random.default_rng(2)
    group = np.repeat(np.arange(40), 10)
    x = rng.normal(size=len(group))
    y = 1.0 + 0.5 * x + rng.normal(0, 1.0, 40)[group] + rng.normal(size=len(group))
    (tmp_path / "data").mkdir()
    pd.DataFrame({"g": group, "x": x, "y": y}).to_csv(tmp_path / "data" / "d.csv", index=False)
    spec = write_spec(tmp_path, """
name: singular
data: {path: data/d.csv}
levels: [{name: grp, id: g}]
responses: [{name: y, family: gaussian}]
fixed: "y ~ x"
random: [{level: grp, terms: [1, x], covariance: unstructured}]
""")
    fit = fit_gaussian(prepare(spec).model)
    assert fit.converged
    assert any("at the boundary" in w and "singular fit" in w for w in fit.warnings)
    se = fit.se()
    pt = fit.model.partable
    assert np.isnan(se[pt.index("corr(x,_cons)@grp")])
    assert np.all(np.isfinite(se[[pt.index("x"), pt.index("sd(_cons)@grp"), pt.index("sd(Residual)")]]))


@pytest.mark.parametrize("spec", ["productivity_blocks", "sleepstudy", "hsced"])
def test_free_vector_is_the_partable_packing_of_the_values(spec: str) -> None:
    fit = fit_gaussian(prepare(SPECS / f"{spec}.yaml").model)
    np.testing.assert_allclose(fit.free, fit.model.partable.pack(fit.values), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fit.model.partable.unpack(fit.free), fit.values, rtol=1e-12, atol=1e-12)
    assert fit.cov_free.shape == (fit.model.partable.n_free,) * 2
    assert np.all(np.isfinite(fit.cov_free))
