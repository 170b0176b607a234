"""Gauss-Hermite rules for the standard normal against closed forms, up to hundreds of points.

Independent targets only: E[z^k] = (k - 1)!! for even k (0 for odd k), E[exp(t z)] = exp(t^2 / 2),
positivity and mirror symmetry of the weights, and scipy's own Gauss-Hermite routine (an independent
implementation) for nodes and weights. High moments overflow double precision beyond ~150 points, so
they are compared as logarithms (log-sum-exp of log w + k log|x|).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.special import gammaln, logsumexp, roots_hermitenorm

from mlmrun.likelihood.quadrature.rules import LOG_2PI, gauss_hermite, gauss_hermite_log, product_rule

SIZES = [1, 2, 3, 5, 8, 12, 20, 25, 40, 50, 51, 60, 80, 100, 128, 150, 151, 200, 250]


def log_even_moment(k: int) -> float:
    """log E[z^(2k)] = log (2k - 1)!! = log (2k)! - k log 2 - log k! for z ~ N(0, 1)."""
    return float(gammaln(2 * k + 1) - k * np.log(2.0) - gammaln(k + 1))


def normal_moment(k: int) -> float:
    """E[z^k] for z ~ N(0, 1): 0 for odd k, (k - 1)!! for even k (small k, no overflow)."""
    return 0.0 if k % 2 else float(np.exp(log_even_moment(k // 2)))


@pytest.mark.parametrize("n", SIZES)
def test_every_even_moment_up_to_degree_2n_minus_2_is_exact_in_log_space(n: int) -> None:
    x, log_w = gauss_hermite_log(n)
    log_abs = np.log(np.abs(np.where(x == 0.0, 1.0, x)))
    for k in range(n):
        terms = log_w + 2 * k * log_abs if k else log_w
        if k:
            terms = np.where(x == 0.0, -np.inf, terms)
        assert logsumexp(terms) == pytest.approx(log_even_moment(k), abs=2e-12), f"n={n}, E[z^{2 * k}]"
    # degree 2n misses by exactly n! (the squared norm of the monic He_n the rule's nodes are the roots of):
    # an n-point rule, not more and not fewer
    terms = np.where(x == 0.0, -np.inf, log_w + 2 * n * log_abs)
    target = log_even_moment(n) + np.log1p(-np.exp(gammaln(n + 1) - log_even_moment(n))) if n > 1 else -np.inf
    assert logsumexp(terms) == pytest.approx(target, abs=2e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 20, 60, 80, 100])
def test_odd_moments_vanish_by_symmetry(n: int) -> None:
    x, w = gauss_hermite(n)
    for k in range(1, 2 * n, 2):
        scale = np.sum(w * np.abs(x) ** k)
        assert abs(np.sum(w * x**k)) <= 1e-13 * max(scale, 1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 12, 20, 25])
def test_small_rules_integrate_polynomials_up_to_degree_2n_minus_1(n: int) -> None:
    x, w = gauss_hermite(n)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    for k in range(2 * n):
        scale = np.sum(w * np.abs(x) ** k)
        assert np.sum(w * x**k) == pytest.approx(normal_moment(k), abs=1e-12 * scale)


# the rule's error for exp(t z) is about n! t^(2n) / (2n)!: 2e-24 at n = 60, t = 6, but 2e-3 at n = 30
MGF_CASES = [(n, t) for n in (30, 50, 60, 80, 100, 150, 200, 300) for t in (0.5, 1.0, 2.0, 3.0, 6.0)
             if t <= 3.0 or n >= 60]


@pytest.mark.parametrize(("n", "t"), MGF_CASES)
def test_moment_generating_function_matches_exp_half_t_squared(n: int, t: float) -> None:
    x, log_w = gauss_hermite_log(n)
    assert logsumexp(log_w + t * x) == pytest.approx(0.5 * t * t, abs=1e-12)


@pytest.mark.parametrize("n", [2, 7, 20, 60, 80, 100, 200, 400])
def test_weights_positive_symmetric_and_summing_to_one(n: int) -> None:
    x, log_w = gauss_hermite_log(n)
    assert np.all(np.isfinite(log_w))
    assert np.all(np.diff(x) > 0)
    np.testing.assert_array_equal(x, -x[::-1])
    np.testing.assert_array_equal(log_w, log_w[::-1])
    assert logsumexp(log_w) == pytest.approx(0.0, abs=1e-14)
    # the weights fall monotonically from the centre outwards (the outermost is the lightest)
    half = log_w[: n // 2]
    assert np.all(np.diff(half) > 0)


@pytest.mark.parametrize("n", [10, 40, 60, 80, 120, 150, 200])
def test_nodes_and_weights_agree_with_scipy(n: int) -> None:
    xs, ws = roots_hermitenorm(n)
    x, log_w = gauss_hermite_log(n)
    np.testing.assert_allclose(x, xs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(log_w, np.log(ws) - 0.5 * LOG_2PI, rtol=0, atol=1e-10)


def test_outermost_weight_of_60_and_80_point_rules_matches_christoffel_closed_form() -> None:
    # w_i = n! / (n^2 He_{n-1}(x_i)^2) for N(0, 1); He_{n-1} by the monic recurrence in exact rational
    # arithmetic on the node (a float; only its rounding enters), logged at the end
    for n in (60, 80):
        x, log_w = gauss_hermite_log(n)
        xi = Fraction(float(x[-1]))
        prev, cur = Fraction(1), xi
        for k in range(1, n - 1):
            prev, cur = cur, xi * cur - k * prev
        log_he = math.log(abs(cur.numerator)) - math.log(cur.denominator)
        expected = gammaln(n + 1) - 2 * np.log(n) - 2 * log_he
        assert log_w[-1] == pytest.approx(expected, abs=1e-9)


def test_rule_is_cached_and_read_only() -> None:
    x, w = gauss_hermite(9)
    assert gauss_hermite(9)[0] is x
    with pytest.raises(ValueError):
        x[0] = 1.0
    with pytest.raises(ValueError):
        w[0] = 1.0
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


@pytest.mark.parametrize("tol", [1e-14, 1e-10, 1e-6])
def test_pruning_drops_the_lightest_nodes_with_total_weight_at_most_tol(tol: float) -> None:
    full, pruned = product_rule(20, 2), product_rule(20, 2, tol)
    w_full = np.exp(full.log_weights)
    lost = w_full.sum() - np.exp(pruned.log_weights).sum()
    assert 0.0 <= lost <= tol * (1 + 1e-12)
    assert pruned.size < full.size
    # greedy from the lightest: dropping one more node (the lightest kept) would exceed tol
    assert lost + np.exp(pruned.log_weights.min()) > tol
    kept = {tuple(r) for r in pruned.nodes}
    dropped = np.array([tuple(r) not in kept for r in full.nodes])
    assert w_full[dropped].max() <= np.exp(pruned.log_weights).min()
    assert product_rule(20, 1, tol).size == 20  # one dimension is never pruned
