"""The discrete-level likelihood's analytic gradient (and EM's Q gradient) against central finite differences.

Covers every parameter kind the gradient maps: fixed part, loadings, raw
locations through the mean-zero centring, softmax logits, class Gamma,
ordinal thresholds and gaussian residual SDs; at random parameter vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.quadrature.discrete import DiscreteObjective
from tests.conftest import SPECS
from tests.discrete.data import class_data, compiled, gaussian_data, ordinal_data

CBPP = (SPECS / "cbpp_npmle.yaml").read_text().replace("data/cbpp.csv", "data.csv").replace("discrete: 2", "discrete: 3")

LCA = """\
name: lca
data: {path: data.csv}
levels: [{name: person, id: person}]
responses: [{name: y, family: binomial}]
fixed: "y ~ 0"
latent:
  - {name: class, level: person, classes: 3, loadings: {by: item}}
structural: {Gamma: {class: {x: free}}}
"""

ORDINAL = """\
name: ord
data: {path: data.csv}
levels: [{name: person, id: person}]
responses: [{name: y, family: ordinal}]
fixed: "y ~ 0 + z"
latent:
  - {name: f, level: person, loadings: {by: item, fix: {a: 1}}, distribution: {discrete: 3}}
"""

GAUSS = """\
name: gauss
data: {path: data.csv}
levels: [{name: unit, id: unit}]
responses: [{name: y, family: gaussian}]
fixed: "y ~ x"
random: [{level: unit, terms: [1], distribution: {discrete: 3}}]
"""


def _model(name: str, folder: Path) -> CompiledModel:
    if name == "cbpp":
        import pandas as pd

        return compiled(folder, CBPP, pd.read_csv(SPECS / "data" / "cbpp.csv"))
    if name == "lca":
        alpha = np.array([[-1.0, 1.0, 0.5, -0.5], [1.5, 1.0, -1.0, 0.0], [0.0, -1.5, 1.0, 1.0]])
        return compiled(folder, LCA, class_data(60, 4, 3, alpha, np.array([0.0, 0.3, -0.2]), np.array([0.0, 0.8, -0.5])))
    if name == "ordinal":
        return compiled(folder, ORDINAL, ordinal_data(50, 4))
    return compiled(folder, GAUSS, gaussian_data(40, 5))


def _random_point(model: CompiledModel, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pt = model.partable
    x = pt.pack(pt.start_values) + rng.normal(scale=0.4, size=pt.n_free)
    return x


def _central(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for j in range(len(x)):
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        g[j] = (f(up) - f(down)) / (2 * h)
    return g


@pytest.mark.parametrize("name", ["cbpp", "lca", "ordinal", "gaussian"])
def test_loglik_gradient_matches_finite_differences(name: str, tmp_path: Path) -> None:
    model = _model(name, tmp_path)
    obj = DiscreteObjective(model)
    for seed in (1, 2):
        x = _random_point(model, seed)
        analytic = obj.evaluate(x).gradient
        numeric = _central(lambda y: obj.evaluate(y, gradient=False).loglik, x)
        assert np.allclose(analytic, numeric, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(numeric).max())), \
            dict(zip(model.partable.free_names(), np.round(analytic - numeric, 8), strict=True))


@pytest.mark.parametrize("name", ["cbpp", "lca"])
def test_em_objective_gradient_matches_finite_differences(name: str, tmp_path: Path) -> None:
    model = _model(name, tmp_path)
    obj = DiscreteObjective(model)
    x = _random_point(model, 7)
    weights = obj.evaluate(_random_point(model, 8), gradient=False).posterior
    analytic = obj.evaluate(x, weights=weights).gradient
    numeric = _central(lambda y: obj.evaluate(y, weights=weights, gradient=False).value, x)
    assert np.allclose(analytic, numeric, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(numeric).max()))
    # at the weights' own point, Q and the log likelihood share their gradient (Fisher identity)
    x8 = _random_point(model, 8)
    assert np.allclose(obj.evaluate(x8, weights=weights).gradient, obj.evaluate(x8).gradient, atol=1e-8)


def test_bernoulli_fast_path_equals_the_binomial_kernel() -> None:
    from mlmrun.likelihood.quadrature.discrete import BernoulliLogit
    from mlmrun.likelihood.quadrature.kernels import binomial_logit

    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.4).astype(float)
    nu = rng.normal(scale=8.0, size=(500, 3))
    ours = BernoulliLogit(y).derivs(nu.copy(), 1)
    ref = binomial_logit(y, None)(nu.copy(), 1)
    assert np.allclose(ours[0], ref[0], rtol=1e-13, atol=1e-13) and np.allclose(ours[1], ref[1], rtol=1e-13, atol=1e-13)
