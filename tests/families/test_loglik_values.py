"""Log densities equal scipy.stats' (normalising constants included); shapes and `order` behave."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlmrun.families import ALLOWED_LINKS, get_family, get_link

ALL_COMBOS = [(fam, link) for fam, links in ALLOWED_LINKS.items() for link in links]


def _rows(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape + (1,) * (like.ndim - 1))


@pytest.mark.parametrize("link", ["identity", "log"])
def test_gaussian_matches_norm_logpdf(case_factory, link):
    c = case_factory("gaussian", link, nodes=(3, 2))
    ll, _, _ = c.family.loglik_derivs(c.y, c.nu, c.params)
    mu = get_link(link).inverse(c.nu)
    expected = stats.norm.logpdf(_rows(c.y, c.nu), mu, _rows(c.params, c.nu))
    np.testing.assert_allclose(ll, expected, rtol=1e-12)


def test_gaussian_accepts_column_and_scalar_sigma(case_factory):
    c = case_factory("gaussian", "identity")
    ll, _, _ = c.family.loglik_derivs(c.y, c.nu, c.params)
    ll_col, _, _ = c.family.loglik_derivs(c.y, c.nu, c.params[:, None])
    np.testing.assert_array_equal(ll, ll_col)
    ll_scalar, _, _ = c.family.loglik_derivs(c.y, c.nu, 1.3)
    np.testing.assert_allclose(ll_scalar, stats.norm.logpdf(c.y[:, None], c.nu, 1.3), rtol=1e-12)


@pytest.mark.parametrize("link", ALLOWED_LINKS["binomial"])
@pytest.mark.parametrize("with_trials", [True, False])
def test_binomial_matches_binom_logpmf(case_factory, link, with_trials):
    c = case_factory("binomial", link, binomial_trials=with_trials)
    # keep P(success) away from 1, where a reference computed from p itself loses digits
    nu = np.clip(c.nu, -3.0, 1.0)
    ll, _, _ = c.family.loglik_derivs(c.y, nu, None, c.trials)
    trials = np.ones_like(c.y) if c.trials is None else c.trials
    expected = stats.binom.logpmf(c.y[:, None], trials[:, None], get_link(link).inverse(nu))
    np.testing.assert_allclose(ll, expected, rtol=1e-10)


def test_poisson_matches_poisson_logpmf(case_factory):
    c = case_factory("poisson", "log")
    ll, _, _ = c.family.loglik_derivs(c.y, c.nu)
    np.testing.assert_allclose(ll, stats.poisson.logpmf(c.y[:, None], np.exp(c.nu)), rtol=1e-12)


def test_gamma_matches_gamma_logpdf(case_factory):
    c = case_factory("gamma", "log")
    ll, _, _ = c.family.loglik_derivs(c.y, c.nu, c.params)
    alpha = c.params[:, None]
    expected = stats.gamma.logpdf(c.y[:, None], a=alpha, scale=np.exp(c.nu) / alpha)
    np.testing.assert_allclose(ll, expected, rtol=1e-11)


ORDINAL_CDFS = {"logit": stats.logistic.cdf, "probit": stats.norm.cdf, "cloglog": stats.gumbel_l.cdf}


@pytest.mark.parametrize("link", ALLOWED_LINKS["ordinal"])
def test_ordinal_matches_cdf_differences(case_factory, link):
    c = case_factory("ordinal", link)
    # keep every CDF value away from 1, where the naive difference of CDFs loses digits
    nu = np.clip(c.nu, -0.5, 3.0)
    ll, _, _ = c.family.loglik_derivs(c.y, nu, c.params)
    cuts = np.concatenate(([-np.inf], c.params, [np.inf]))
    codes = c.y.astype(int)
    cdf = ORDINAL_CDFS[link]
    expected = np.log(cdf(cuts[codes + 1][:, None] - nu) - cdf(cuts[codes][:, None] - nu))
    np.testing.assert_allclose(ll, expected, rtol=1e-10)


@pytest.mark.parametrize("link", ALLOWED_LINKS["ordinal"])
def test_ordinal_probabilities_sum_to_one(link):
    fam = get_family("ordinal", link)
    kappa = np.array([-2.0, -1.9, 0.0, 3.0])
    nu = np.concatenate([np.linspace(-40.0, 40.0, 81), [-1.95, 1e-9]]).reshape(-1, 1)
    probs = fam.probabilities(nu, kappa)
    assert probs.shape == (nu.shape[0], 1, kappa.size + 1)
    assert np.all(probs >= 0.0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)
    # each category's probability is exp(ll) of that category
    for k in range(kappa.size + 1):
        ll, _, _ = fam.loglik_derivs(np.full(nu.shape[0], float(k)), nu, kappa, order=0)
        np.testing.assert_allclose(np.exp(ll), probs[..., k], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("link", ALLOWED_LINKS["ordinal"])
def test_ordinal_tails_finite(link):
    fam = get_family("ordinal", link)
    kappa = np.array([-1.0, 0.5, 2.0])
    nu = np.array([-40.0, -30.0, 30.0, 40.0])
    for k in range(4):
        ll, d1, d2 = fam.loglik_derivs(np.full(4, float(k)), nu[:, None], kappa)
        assert np.all(np.isfinite(ll)) and np.all(np.isfinite(d1)) and np.all(np.isfinite(d2))
        assert np.all(d2 <= 0.0)  # all three cumulative links are log-concave


@pytest.mark.parametrize("fam,link", ALL_COMBOS)
@pytest.mark.parametrize("nodes", [(), (4,), (2, 3)])
def test_shapes_and_order(case_factory, fam, link, nodes):
    c = case_factory(fam, link, nodes=nodes)
    n_params = c.family.n_params(4 if fam == "ordinal" else None)
    ll, d1, d2 = c.family.loglik_derivs(c.y, c.nu, c.params, c.trials)
    assert ll.shape == d1.shape == d2.shape == c.nu.shape
    assert c.family.param_score(c.y, c.nu, c.params, c.trials).shape == c.nu.shape + (n_params,)
    ll0, n1, n2 = c.family.loglik_derivs(c.y, c.nu, c.params, c.trials, order=0)
    assert n1 is None and n2 is None
    np.testing.assert_array_equal(ll0, ll)
    ll1, d1_1, none2 = c.family.loglik_derivs(c.y, c.nu, c.params, c.trials, order=1)
    assert none2 is None
    np.testing.assert_array_equal(d1_1, d1)


@pytest.mark.parametrize("link", ALLOWED_LINKS["binomial"])
def test_binary_tails_finite_and_concave(link):
    fam = get_family("binomial", link)
    nu = np.array([[-40.0, -30.0, 30.0, 40.0]] * 2)
    ll, d1, d2 = fam.loglik_derivs(np.array([0.0, 1.0]), nu)
    assert np.all(np.isfinite(ll)) and np.all(np.isfinite(d1)) and np.all(np.isfinite(d2))
    assert np.all(d2 <= 0.0)


def test_means():
    nu = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(get_family("binomial", "probit").mean(nu), stats.norm.cdf(nu))
    np.testing.assert_allclose(get_family("poisson").mean(nu), np.exp(nu))
    np.testing.assert_allclose(get_family("gamma").mean(nu, 2.0), np.exp(nu))
    np.testing.assert_allclose(get_family("gaussian").mean(nu, 1.0), nu)
    fam = get_family("ordinal", "logit")
    kappa = np.array([-0.5, 0.5])
    probs = fam.probabilities(nu, kappa)
    np.testing.assert_allclose(fam.mean(nu, kappa), probs @ np.arange(3.0))
    # E[y] = sum_k P(y > k)
    np.testing.assert_allclose(fam.mean(nu, kappa), stats.logistic.sf(kappa[None, :] - nu[:, None]).sum(axis=1))
