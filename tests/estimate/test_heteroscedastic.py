"""Log-linear level-1 heteroscedasticity (`variance:`, gllamm's s()): log sd_i = log sd(Residual) + s_i' alpha.

`variance: "~ C(item)"` reparameterises `variance_by: item` (nlme's varIdent),
so both give the same maximum (-2058.14 on hsced) on the exact path and by
quadrature. A continuous covariate (simulated, log sd = 0.5 x) checks the two
engines against each other, the recovery of alpha and both analytic
gradients against central differences.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.compile.matrices import model_matrices, values_gradient
from mlmrun.errors import SpecError
from mlmrun.estimate import estimate
from mlmrun.estimate.gaussian_fit import Objective
from mlmrun.estimate.gaussian_params import GaussianParams
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import exact_loglik, profiled
from mlmrun.likelihood.gaussian.gradient import profiled_gradient
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare
from tests.conftest import SPECS, write_spec
from tests.likelihood.test_gaussian_gradient import assert_gradient, central
from tests.reference.compare import load_reference

HSCED_LOGLIK = load_reference("hsced__heteroscedastic_ml", "loglik")  # printed to 2 decimals: abs=0.005 below
QUADRATURE = "estimation: {method: ML, exact: false, integration: {points: 20}}\n"

HSCED = """
data: {path: data/hsced.csv}
levels: [{name: id, id: id}]
responses: [{name: y, family: gaussian, variance: "~ C(item)"}]
fixed: "y ~ x"
random: [{level: id, terms: [1]}]
"""

SIMULATED = """
data: {path: data/loglinear.csv}
levels: [{name: g, id: g}]
responses: [{name: y, family: gaussian, variance: "~ x"}]
fixed: "y ~ x"
random: [{level: g, terms: [1]}]
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hsced.csv and a simulated random-intercept data set with log sd = 0.0 + 0.5 x (300 groups x 5 rows)."""
    path = tmp_path_factory.mktemp("hetero")
    (path / "data").mkdir()
    shutil.copy(SPECS / "data" / "hsced.csv", path / "data" / "hsced.csv")
    rng = np.random.default_rng(2024)
    g = np.repeat(np.arange(300), 5)
    x = rng.normal(size=len(g))
    u = rng.normal(0, 0.8, 300)[g]
    y = 1.0 + 0.5 * x + u + np.exp(0.5 * x) * rng.normal(size=len(g))
    pd.DataFrame({"g": g, "x": x, "y": y}).to_csv(path / "data" / "loglinear.csv", index=False)
    return path


def fit(folder: Path, body: str, name: str, extra: str = "estimation: {method: ML}\n"):
    return estimate(prepare(write_spec(folder, f"name: {name}\n{body}{extra}", f"{name}.yaml")).model)


def test_formula_on_item_equals_variance_by_item(folder: Path) -> None:
    """variance: '~ C(item)' is variance_by: item reparameterised: the same ML fit, exactly and by quadrature."""
    by_item = estimate(prepare(SPECS / "hsced.yaml").model)
    assert by_item.loglik == pytest.approx(HSCED_LOGLIK, abs=0.005)
    exact = fit(folder, HSCED, "hsced_exact")
    quad = fit(folder, HSCED, "hsced_quad", QUADRATURE)
    assert exact.integration["method"] == "exact" and quad.integration["method"] != "exact"
    assert exact.extras["profiled_sigma"]
    assert exact.loglik == pytest.approx(by_item.loglik, abs=1e-6)
    assert quad.loglik == pytest.approx(by_item.loglik, abs=1e-6)
    names = by_item.model.partable.names
    sd = {n: by_item.values[i] for i, n in enumerate(names)}
    est = dict(zip(exact.model.partable.names, exact.values, strict=True))
    assert est["sd(Residual)"] == pytest.approx(sd["sd(Residual:item=1)"], rel=1e-5)
    assert est["logsd(Residual:C(item)[T.2])"] == pytest.approx(
        np.log(sd["sd(Residual:item=2)"] / sd["sd(Residual:item=1)"]), abs=1e-5)
    assert "lr_test" in exact.extras and exact.extras["lr_test"]["df"] == 1


def test_continuous_covariate_exact_and_quadrature_agree(folder: Path) -> None:
    exact = fit(folder, SIMULATED, "sim_exact")
    quad = fit(folder, SIMULATED, "sim_quad", QUADRATURE)
    assert exact.converged and quad.converged
    assert exact.loglik == pytest.approx(quad.loglik, abs=1e-6)
    model = exact.model
    assert exact_loglik(model, exact.values) == pytest.approx(exact.loglik, abs=1e-8)
    i = model.partable.index("logsd(Residual:x)")
    alpha, se = exact.values[i], exact.se()[i]
    assert np.isfinite(se) and se > 0
    assert abs(alpha - 0.5) < 3 * se
    assert alpha == pytest.approx(quad.values[i], abs=1e-3)


@pytest.mark.parametrize("reml", [False, True])
def test_exact_gradient_with_loglinear_sd(folder: Path, reml: bool) -> None:
    """Natural coordinates (nothing but beta profiled) and the optimiser's (sigma profiled) vs central differences."""
    spec = write_spec(folder, "name: grad\n" + HSCED.replace('"~ C(item)"', '"~ x + C(item)"'), "grad.yaml")
    model = prepare(spec).model
    pt = model.partable
    design = GaussianDesign(model)
    values = pt.start_values
    values[pt.index("sd(Residual)")] = 0.9
    values[pt.index("sd(_cons)@id")] = 1.1
    values[pt.rows_of("hetero")] = [0.3, -0.4]
    free = pt.pack(values)
    other = np.array([j for j, n in enumerate(pt.free_names()) if n not in model.x_names])

    def loglik(x: np.ndarray) -> float:
        return -0.5 * profiled(design, model_matrices(model, pt.unpack(x)), reml=reml, profile_sigma=False).deviance

    _, grad = profiled_gradient(design, model_matrices(model, values), reml=reml, profile_sigma=False)
    analytic = pt.jacobian(free).T @ values_gradient(model, values, grad)
    assert_gradient(analytic[other], central(loglik, free)[other])

    params = GaussianParams(model)
    assert params.profile_sigma
    obj = Objective(model, design, params, reml=reml)
    phi = params.phi_from_free(free, 0.9)
    dev, g = obj.value_and_grad(phi)
    assert dev == pytest.approx(obj(phi), abs=1e-8)
    assert_gradient(g, central(obj, phi))


def test_quadrature_gradient_with_loglinear_sd(folder: Path) -> None:
    model = prepare(write_spec(folder, "name: qgrad\n" + SIMULATED + QUADRATURE, "qgrad.yaml")).model
    pt = model.partable
    obj = QuadratureObjective(model, integration_plan(model))
    values = pt.start_values
    values[pt.index("sd(Residual)")] = 0.9
    values[pt.index("sd(_cons)@g")] = 0.7
    values[pt.index("logsd(Residual:x)")] = 0.4
    values[pt.index("x")] = 0.5
    free = pt.pack(values)
    ad = obj.adapt(free)
    _, grad = obj.frozen(free, ad)
    fd = central(lambda x: obj.frozen(x, ad, False)[0], free)
    assert_gradient(grad, fd, rtol=1e-5)


@pytest.mark.parametrize("response, message", [
    ('{name: y, family: poisson, variance: "~ x"}', "only for the gaussian family"),
    ('{name: y, family: gaussian, variance_by: item, variance: "~ x"}', "not both"),
    ('{name: y, family: gaussian, variance: "~ x + eval(x)"}', "function 'eval' is not allowed"),
    ('{name: y, family: gaussian, variance: "y ~ x"}', "one-sided"),
    ('{name: y, family: gaussian, variance: "~ 0 + C(item)"}', "collinear with the constant"),
])
def test_variance_spec_errors(folder: Path, response: str, message: str) -> None:
    body = HSCED.replace('[{name: y, family: gaussian, variance: "~ C(item)"}]', f"[{response}]")
    with pytest.raises(SpecError, match=message) as info:
        prepare(write_spec(folder, "name: bad\n" + body, "bad.yaml"))
    assert "responses.0" in str(info.value)
