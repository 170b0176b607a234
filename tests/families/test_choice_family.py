"""Choice sets (multinomial and exploded logit): log likelihood from its definition, derivatives by finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logsumexp

from mlmrun.errors import DataError
from mlmrun.families import get_family
from mlmrun.families.choice import ChoiceSets, check_sets

# sets: 0 complete ranking of 4, 1 partial ranking (2 of 4 ranked), 2 a tie at rank 2 (Breslow), 3 multinomial choice
# of 3, 4 a pairwise comparison; rows deliberately not sorted by set.
SET = np.array([0, 1, 0, 2, 1, 0, 3, 2, 1, 0, 3, 2, 4, 1, 3, 2, 4])
RANK = np.array([2, 1, 1, 2, 0, 4, 0, 1, 2, 3, 1, 2, 0, 0, 0, 3, 1])


def direct_loglik(nu: np.ndarray) -> float:
    """Sum over sets and ranked rows of nu_j - log sum over its risk set (ranked at or after j, or unranked)."""
    total = 0.0
    for s in np.unique(SET):
        rows = np.flatnonzero(SET == s)
        for j in rows[RANK[rows] > 0]:
            risk = rows[(RANK[rows] >= RANK[j]) | (RANK[rows] == 0)]
            total += nu[j] - logsumexp(nu[risk])
    return total


def nus(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.5, len(SET))


def test_rows_sum_to_the_exploded_logit_of_every_set() -> None:
    nu = nus(0)
    ll, _, _ = ChoiceSets(RANK, SET).derivs(nu, 0)
    assert ll.sum() == pytest.approx(direct_loglik(nu), rel=1e-13)


def test_pairwise_comparison_is_a_binary_logit() -> None:
    nu = np.array([0.3, -1.1])
    ll, _, _ = ChoiceSets(np.array([0, 1]), np.array([7, 7])).derivs(nu, 0)
    assert ll.sum() == pytest.approx(np.log(expit(nu[1] - nu[0])), rel=1e-13)


def test_row_derivatives_are_the_gradient_and_hessian_diagonal_of_the_set_sum() -> None:
    nu = nus(1)
    sets = ChoiceSets(RANK, SET)
    _, d1, d2 = sets.derivs(nu, 2)
    h = 1e-5
    eye = np.eye(len(nu))
    grad = np.array([(direct_loglik(nu + h * e) - direct_loglik(nu - h * e)) / (2 * h) for e in eye])
    np.testing.assert_allclose(d1, grad, atol=1e-8)
    # the Hessian from differences of the gradient, itself checked against the direct log likelihood just above
    hess = np.array([(sets.derivs(nu + h * e, 1)[1] - sets.derivs(nu - h * e, 1)[1]) / (2 * h) for e in eye])
    np.testing.assert_allclose(d2, np.diag(hess), atol=1e-5)
    rows, stage, p = sets.cross(nu)
    off = np.zeros_like(hess)
    for g in np.unique(stage):
        e = stage == g
        off[np.ix_(rows[e], rows[e])] += np.outer(p[e], p[e]) - np.diag(p[e] ** 2)
    np.testing.assert_allclose(np.diag(d2) + off, hess, atol=1e-5)


def test_blocks_of_whole_sets_and_node_axes_give_the_same_rows() -> None:
    nu = np.stack([nus(2), nus(3), nus(4)], axis=1)[:, :, None]
    sets = ChoiceSets(RANK, SET)
    full = sets.derivs(nu, 2)
    block = np.flatnonzero(np.isin(SET, [1, 3]))
    part = sets.derivs(nu[block], 2, block)
    for a, b in zip(full, part, strict=True):
        np.testing.assert_allclose(a[block], b, rtol=1e-14)
    for k in range(3):
        assert full[0][:, k, 0].sum() == pytest.approx(direct_loglik(nu[:, k, 0]), rel=1e-13)


def test_family_objects_validate_responses_and_compute_the_same_density() -> None:
    nu = nus(5)
    fam = get_family("ranking")
    ll, d1, _ = fam.loglik_derivs(RANK, nu, SET)
    assert ll.sum() == pytest.approx(direct_loglik(nu), rel=1e-13)
    assert fam.param_score(RANK, nu, SET).shape == (len(nu), 0)
    with pytest.raises(DataError, match="must be ranks"):
        fam.validate(np.array([1.0, 0.5]))
    with pytest.raises(DataError, match="1 for the chosen alternative"):
        get_family("multinomial").validate(np.array([1.0, 2.0]))
    probs = get_family("multinomial").mean(nu, SET)
    np.testing.assert_allclose(np.bincount(SET, weights=probs), 1.0, rtol=1e-12)


@pytest.mark.parametrize(("rank", "family", "what"), [
    (np.array([1, 0, 0, 0]), "multinomial", "no chosen alternative or several"),
    (np.array([1, 1, 0, 0]), "multinomial", "no chosen alternative or several"),
    (np.array([1, 0, 0, 0]), "ranking", "ranks no alternative"),
])
def test_sets_without_a_choice_or_with_two_are_refused(rank: np.ndarray, family: str, what: str) -> None:
    with pytest.raises(DataError, match=what):
        check_sets(rank, np.array([0, 0, 1, 1]), family, "responses.0.choice.set", np.array(["a", "a", "b", "b"]))
