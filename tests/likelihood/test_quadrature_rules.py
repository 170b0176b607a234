"""Gauss-Hermite rules for the standard normal: exactness, symmetry, product rules and pruning."""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.likelihood.quadrature import LOG_2PI, gauss_hermite, product_rule


def normal_moment(k: int) -> float:
    """E[x^k] for x ~ N(0, 1): 0 for odd k, (k - 1)!! for even k."""
    return 0.0 if k % 2 else float(np.prod(np.arange(k - 1.0, 0.0, -2.0))) if k else 1.0


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 12, 20, 25])
def test_rule_integrates_polynomials_up_to_degree_2n_minus_1(n: int) -> None:
    x, w = gauss_hermite(n)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    for k in range(2 * n):
        scale = np.sum(w * np.abs(x) ** k)  # rounding of the sum is relative to this
        assert np.sum(w * x**k) == pytest.approx(normal_moment(k), abs=1e-12 * scale)
    # degree 2n is not integrated exactly (for n >= 1): the rule is no better than it should be
    assert abs(np.sum(w * x ** (2 * n)) - normal_moment(2 * n)) > 1e-6


def test_rule_is_symmetric_cached_and_read_only() -> None:
    x, w = gauss_hermite(9)
    np.testing.assert_array_equal(x, -x[::-1])
    np.testing.assert_array_equal(w, w[::-1])
    assert gauss_hermite(9)[0] is x
    with pytest.raises(ValueError):
        x[0] = 1.0
    with pytest.raises(ValueError):
        gauss_hermite(0)


def test_product_rule_integrates_products_of_moments() -> None:
    rule = product_rule(6, 3)
    assert rule.size == 6**3 and rule.dim == 3
    w = np.exp(rule.log_weights)
    x = rule.nodes
    assert np.sum(w * x[:, 0] ** 2 * x[:, 1] ** 4 * x[:, 2] ** 6) == pytest.approx(1 * 3 * 15, rel=1e-10)
    assert np.sum(w * x[:, 0] * x[:, 1] ** 2) == pytest.approx(0.0, abs=1e-12)
    log_phi = -0.5 * np.sum(x**2, axis=1) - 1.5 * LOG_2PI
    np.testing.assert_allclose(rule.log_ratio, rule.log_weights - log_phi)


def test_pruning_drops_only_negligible_mass() -> None:
    full, pruned = product_rule(20, 2), product_rule(20, 2, 1e-10)
    assert pruned.size < 0.7 * full.size
    lost = 1.0 - np.exp(pruned.log_weights).sum()
    assert 0.0 <= lost < 1e-8
    assert np.sum(np.exp(pruned.log_weights) * pruned.nodes[:, 0] ** 2) == pytest.approx(1.0, abs=1e-8)
    assert product_rule(20, 1, 1e-10).size == 20  # one dimension is never pruned
