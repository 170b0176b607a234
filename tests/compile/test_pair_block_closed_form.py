"""The written-out 2 x 2 covariance factor and its adjoint (compile/matrices.py), the commonest random-slope block.

block_L must equal LAPACK's Cholesky factor of D R D, and block_L_adjoint the
central differences of sum(gL * block_L), for correlations across (-1, 1) and
next to the bounds; at exactly +-1 the general path's one-sided differences
still apply.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.compile.matrices import block_L, block_L_adjoint
from mlmrun.compile.model import CovBlock

PAIR = CovBlock(level=0, members=(0, 1), kind="unstructured", sd_rows=np.array([0, 1]), corr_rows=np.array([2]))


@pytest.mark.parametrize("r", [-0.9999, -0.6, 0.0, 0.25, 0.93, 0.99995])
@pytest.mark.parametrize("sds", [(0.4, 2.5), (1.0, 1.0), (3.1, 0.02)])
def test_pair_factor_is_the_cholesky_factor_and_its_adjoint_the_differences(r: float, sds: tuple[float, float]
                                                                            ) -> None:
    values = np.array([sds[0], sds[1], r])
    L, ok = block_L(PAIR, values)
    D = np.diag(values[:2])
    assert ok
    np.testing.assert_allclose(L, D @ np.linalg.cholesky(np.array([[1.0, r], [r, 1.0]])), rtol=1e-15, atol=0.0)
    gL = np.random.default_rng(int(1000 * (r + 2))).normal(size=(2, 2))
    numeric = []
    for row in range(3):
        h = 1e-7 * (1.0 - abs(r)) if row == 2 and abs(r) > 0.99 else 1e-6
        up, down = values.copy(), values.copy()
        up[row] += h
        down[row] -= h
        numeric.append(float(np.sum(gL * (block_L(PAIR, up)[0] - block_L(PAIR, down)[0]))) / (2 * h))
    np.testing.assert_allclose(block_L_adjoint(PAIR, values, gL), numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("r", [1.0, -1.0])
def test_pair_at_the_bound_keeps_a_semidefinite_factor_and_a_finite_adjoint(r: float) -> None:
    values = np.array([0.5, 2.0, r])
    L, ok = block_L(PAIR, values)
    assert ok
    np.testing.assert_allclose(L @ L.T, np.array([[0.25, r], [r, 4.0]]), atol=1e-12)
    g = block_L_adjoint(PAIR, values, np.array([[1.0, 0.0], [0.5, -2.0]]))
    assert np.all(np.isfinite(g)) and len(g) == 3
