"""OrdinalRows (per-row thresholds and latent scale): derivatives against finite differences, reduction to Ordinal."""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.families import get_family
from mlmrun.families.ordinal_rows import OrdinalRows

LINKS = ("logit", "probit", "cloglog")


def case(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 rows with 4 categories, nu over 3 nodes, per-row increasing thresholds and scales."""
    rng = np.random.default_rng(seed)
    n = 12
    cuts = np.sort(rng.normal(0.0, 1.5, (n, 3)), axis=1) + np.array([0.0, 0.3, 0.6])
    scale = np.exp(rng.normal(0.0, 0.4, n))
    y = np.arange(n) % 4
    nu = rng.normal(0.0, 1.0, (n, 3))
    return y.astype(float), nu, np.column_stack([cuts, scale])


@pytest.mark.parametrize("link", LINKS)
def test_nu_derivatives_match_finite_differences(link: str) -> None:
    fam, (y, nu, params) = OrdinalRows(link), case(1)
    ll, d1, d2 = fam.loglik_derivs(y, nu, params)
    h = 1e-6
    up, dn = fam.loglik_derivs(y, nu + h, params, order=1), fam.loglik_derivs(y, nu - h, params, order=1)
    np.testing.assert_allclose(d1, (up[0] - dn[0]) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d2, (up[1] - dn[1]) / (2 * h), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("link", LINKS)
def test_threshold_and_scale_scores_match_finite_differences(link: str) -> None:
    fam, (y, nu, params) = OrdinalRows(link), case(2)
    score = fam.param_score(y, nu, params)
    assert score.shape == nu.shape + (4,)
    h = 1e-6
    for j in range(4):
        up, dn = params.copy(), params.copy()
        up[:, j] += h
        dn[:, j] -= h
        fd = (fam.loglik_derivs(y, nu, up, order=0)[0] - fam.loglik_derivs(y, nu, dn, order=0)[0]) / (2 * h)
        np.testing.assert_allclose(score[..., j], fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("link", LINKS)
def test_unit_scale_and_shared_thresholds_give_the_plain_ordinal_family(link: str) -> None:
    y, nu, _ = case(3)
    kappa = np.array([-1.0, 0.2, 1.5])
    params = np.column_stack([np.tile(kappa, (len(y), 1)), np.ones(len(y))])
    ours = OrdinalRows(link).loglik_derivs(y, nu, params)
    plain = get_family("ordinal", link).loglik_derivs(y, nu, kappa)
    for a, b in zip(ours, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("link", LINKS)
def test_scale_divides_the_latent_distance_to_each_threshold(link: str) -> None:
    """P(y = k) = F((kappa_k - nu)/s) - F((kappa_{k-1} - nu)/s), computed here from the link's CDF."""
    y, nu, params = case(4)
    F = get_family("binomial", link).link_function.inverse
    cuts = np.column_stack([np.full(len(y), -np.inf), params[:, :3], np.full(len(y), np.inf)])
    k = y.astype(int)
    s = params[:, 3:]
    r = np.arange(len(y))
    direct = F((cuts[r, k + 1][:, None] - nu) / s) - F((cuts[r, k][:, None] - nu) / s)
    ours = np.exp(OrdinalRows(link).loglik_derivs(y, nu, params, order=0)[0])
    np.testing.assert_allclose(ours, direct, rtol=1e-9, atol=1e-13)  # direct differences lose digits in far tails
    probs = OrdinalRows(link).probabilities(nu, params)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)
