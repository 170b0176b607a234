"""The analytic adjoint of the covariance factor L = D chol(R) equals central differences, also next to +-1.

`values_gradient` maps d loglik / d L onto the SD and correlation rows; it used
to difference `block_L` numerically, which stepped across |r| = 1 near the
bound. The analytic form must agree with differences wherever those are valid,
stay finite at a singular R, and give the quadrature likelihood's exact
gradient for a random-effects correlation of 0.9999.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.compile.matrices import block_L, block_L_adjoint
from mlmrun.compile.model import CovBlock
from mlmrun.estimate import estimate
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare
from tests.conftest import write_spec
from tests.likelihood.test_adaptive_gradient import STRUCTURES, make_model


def block(k: int, kind: str = "unstructured") -> tuple[CovBlock, int]:
    """A k x k block whose SDs are rows 0..k-1 and correlations the rows after (values index = row)."""
    n_corr = k * (k - 1) // 2 if kind != "independent" else 0
    return CovBlock(level=0, members=tuple(range(k)), kind=kind, sd_rows=np.arange(k),
                    corr_rows=np.arange(k, k + n_corr)), k + n_corr


def central(blk: CovBlock, values: np.ndarray, gL: np.ndarray, h: float) -> np.ndarray:
    rows = np.concatenate([blk.sd_rows, blk.corr_rows]).astype(int)
    out = []
    for row in rows:
        up, down = values.copy(), values.copy()
        up[row] += h
        down[row] -= h
        out.append(float(np.sum(gL * (block_L(blk, up)[0] - block_L(blk, down)[0]))) / (2 * h))
    return np.array(out)


@pytest.mark.parametrize("corr", [[0.3, -0.2, 0.1], [0.999, 0.5, 0.52], [-0.9995, 0.0, 0.0], [0.0, 0.0, 0.0]])
def test_adjoint_equals_central_differences(corr: list[float]) -> None:
    blk, n = block(3)
    rng = np.random.default_rng(4)
    values = np.concatenate([[0.7, 1.3, 0.4], corr])
    assert block_L(blk, values)[1]
    gL = np.tril(rng.normal(size=(3, 3)))
    np.testing.assert_allclose(block_L_adjoint(blk, values, gL), central(blk, values, gL, 1e-7), rtol=1e-6, atol=1e-6)


def test_single_member_and_independent_blocks() -> None:
    blk, _ = block(1, "independent")
    assert block_L_adjoint(blk, np.array([0.8]), np.array([[2.5]])) == pytest.approx([2.5])
    blk, _ = block(2, "independent")
    gL = np.array([[1.0, 0.0], [3.0, -2.0]])
    np.testing.assert_allclose(block_L_adjoint(blk, np.array([0.5, 2.0]), gL), [1.0, -2.0])


def test_singular_correlation_uses_differences_inside_the_bound() -> None:
    blk, _ = block(2)
    gL = np.array([[0.4, 0.0], [1.5, -0.7]])
    for r in (1.0, -1.0):
        values = np.array([0.9, 1.1, r])
        got = block_L_adjoint(blk, values, gL)
        assert np.all(np.isfinite(got))
        inside = values.copy()
        inside[2] = r * (1 - 1e-12)  # sqrt(1 - r^2) ~ 1.4e-6 away from the limit
        np.testing.assert_allclose(got[:2], block_L_adjoint(blk, inside, gL)[:2], rtol=1e-5)


def test_quadrature_gradient_at_a_correlation_of_0_9999(tmp_path: Path) -> None:
    model = make_model(tmp_path, STRUCTURES["correlated_slope"], "near_one", points=5)
    pt = model.partable
    values = pt.start_values
    values[pt.index("corr(x,_cons)@unit")] = 0.9999
    values[pt.index("sd(_cons)@unit")], values[pt.index("sd(x)@unit")] = 0.8, 0.5
    free = pt.pack(values)
    obj = QuadratureObjective(model, integration_plan(model))
    ad = obj.adapt(free)
    _, grad = obj.frozen(free, ad)
    fd = np.zeros_like(free)
    for j in range(len(free)):
        h = 1e-7
        e = np.zeros_like(free)
        e[j] = h
        fd[j] = (obj.frozen(free + e, ad, False)[0] - obj.frozen(free - e, ad, False)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(fd).max())))


def test_fit_with_a_correlation_at_the_bound_converges(tmp_path: Path) -> None:
    """Random intercept and slope driven by one variable (true correlation 1): the ML correlation is ~1.

    With the numeric derivative of L this fit stopped at r = 1 'not converged', 1.8 below the optimum.
    """
    rng = np.random.default_rng(7)
    unit = np.repeat(np.arange(60), 12)
    x = rng.normal(size=len(unit))
    z = rng.normal(size=60)[unit]
    y = rng.binomial(1, 1 / (1 + np.exp(-(-0.2 + 0.7 * x + z + 0.6 * z * x))))
    (tmp_path / "data").mkdir()
    pd.DataFrame({"unit": unit, "x": x, "y": y}).to_csv(tmp_path / "data" / "corr1.csv", index=False)
    spec = write_spec(tmp_path, """name: corr1
data: {path: data/corr1.csv}
levels: [{name: unit, id: unit}]
responses: [{name: y, family: binomial, link: logit}]
fixed: "y ~ x"
random: [{level: unit, terms: [1, x], covariance: unstructured}]
estimation: {integration: {points: 8}}
""")
    fit = estimate(prepare(spec).model)
    assert fit.converged, fit.warnings
    assert fit.values[fit.model.partable.index("corr(x,_cons)@unit")] > 0.999
    assert fit.loglik == pytest.approx(-440.6718, abs=1e-3)
