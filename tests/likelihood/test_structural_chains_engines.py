"""B chains of length two with Gamma: both engines agree, and the quadrature gradient is exact there.

With a single B entry (I - B)^-1 = I + B exactly, so structural-model code
that only handles one link passes every test built on one; a chain
f <- g <- h with covariates acting on the middle variable is the smallest
case where (I - B)^-1, T' and Gamma's path through T all matter. For a
gaussian response adaptive quadrature is exact (the posterior is normal), so
the quadrature engine must reproduce the exact engine's likelihood, and the
Fisher-identity gradient must match central differences with B far from 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlmrun.likelihood.gaussian.deviance import exact_loglik
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from tests.likelihood.test_adaptive_gradient import check_gradient, make_model, random_free

CHAIN = """
levels:
  - {{name: unit, id: id2}}
  - {{name: top, id: id3}}
responses:
  - {response}
fixed: "{y} ~ 0 + C(item)"
latent:
  - {{name: f, level: unit, loadings: {{by: item, fix: {{a: 1}}}}}}
  - {{name: g, level: unit, variance: 1}}
  - {{name: h, level: top, variance: 1}}
structural:
  B: {{f: {{g: free}}, g: {{h: free}}}}
  Gamma: {{g: {{w: free}}}}
"""


def chain_body(family: str) -> str:
    if family == "gaussian":
        return CHAIN.format(response="{name: yg, family: gaussian}", y="yg")
    return CHAIN.format(response="{name: ybin, family: binomial, link: logit}", y="ybin")


def test_chain_model_has_a_chain_and_a_gamma():
    """Guard for the tests below: the compiled model really has f <- g <- h and Gamma on g."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp), chain_body("gaussian"), "chain_guard", points=3)
    assert len(model.B_entries) == 2 and model.w_names


@pytest.mark.parametrize("seed", [0, 1])
def test_quadrature_reproduces_the_exact_likelihood_with_a_b_chain(tmp_path: Path, seed: int) -> None:
    model = make_model(tmp_path, chain_body("gaussian"), "chain_gauss", points=3)
    free = random_free(model, seed)
    obj = QuadratureObjective(model, integration_plan(model))
    ll_quad, _ = obj.readapted(free)
    ll_exact = exact_loglik(model, model.partable.unpack(free))
    assert np.isfinite(ll_exact)
    assert ll_quad == pytest.approx(ll_exact, abs=1e-7)


def test_quadrature_gradient_with_a_b_chain_and_gamma(tmp_path: Path) -> None:
    check_gradient(make_model(tmp_path, chain_body("binomial"), "chain_bin", points=3), seeds=(0, 1))


def test_exact_gradient_with_a_b_chain_and_gamma(tmp_path: Path) -> None:
    """Exact engine: d log L at given beta (nothing profiled) against central differences, B far from 0."""
    from mlmrun.compile.matrices import model_matrices, values_gradient
    from mlmrun.likelihood.gaussian.design import GaussianDesign
    from mlmrun.likelihood.gaussian.deviance import deviance_at
    from mlmrun.likelihood.gaussian.gradient import deviance_gradient

    model = make_model(tmp_path, chain_body("gaussian"), "chain_exact", points=3)
    design = GaussianDesign(model)
    pt = model.partable
    for seed in (0, 1):
        free = random_free(model, seed)
        values = pt.unpack(free)
        _, grad = deviance_gradient(design, model_matrices(model, values))
        assert grad is not None
        analytic = pt.jacobian(free).T @ values_gradient(model, values, grad)
        fd = np.zeros_like(free)
        for j in range(len(free)):
            h = 1e-5 * max(1.0, abs(free[j]))
            e = np.zeros_like(free)
            e[j] = h
            up = -0.5 * deviance_at(design, model_matrices(model, pt.unpack(free + e)))
            down = -0.5 * deviance_at(design, model_matrices(model, pt.unpack(free - e)))
            fd[j] = (up - down) / (2 * h)
        np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(fd).max())),
                                   err_msg=str(pt.free_names()))


TWO_AT_EACH_LEVEL = """
levels:
  - {name: unit, id: id2}
  - {name: top, id: id3}
responses:
  - {name: yg, family: gaussian}
fixed: "yg ~ x"
random:
  - {level: unit, terms: [1, x], covariance: unstructured}
  - {level: top, terms: [1, x], covariance: unstructured}
"""


@pytest.mark.parametrize("seed", [0, 1])
def test_quadrature_reproduces_the_exact_likelihood_with_two_latent_variables_per_level(tmp_path: Path,
                                                                                        seed: int) -> None:
    """Normalising constants of levels with q = 2 (lowest and above): exact for a gaussian response."""
    model = make_model(tmp_path, TWO_AT_EACH_LEVEL, "two_per_level", points=3)
    free = random_free(model, seed)
    ll_quad, _ = QuadratureObjective(model, integration_plan(model)).readapted(free)
    assert ll_quad == pytest.approx(exact_loglik(model, model.partable.unpack(free)), abs=1e-7)
