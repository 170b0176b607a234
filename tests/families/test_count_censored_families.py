"""New families (NB2, NB1, zero-inflated, censored gaussian, composite links): densities against scipy, derivatives against differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlmrun.families import get_family
from mlmrun.families.composite import CompositeGaussian, CompositePoisson

RNG = np.random.default_rng(7)
Y = np.array([0, 0, 1, 2, 5, 0, 13, 3], dtype=float)
NU = RNG.normal(0.5, 0.8, size=(len(Y), 3))


def _params(name: str) -> np.ndarray:
    n = len(Y)
    theta = RNG.uniform(0.5, 6.0, n)
    zeta = RNG.normal(-1.0, 0.7, n)
    return {"nbinom2": theta[:, None], "nbinom1": theta[:, None] / 3, "zip": zeta[:, None],
            "zinb2": np.column_stack([theta, zeta]), "zinb1": np.column_stack([theta / 3, zeta])}[name]


def _reference(name: str, y: np.ndarray, nu: np.ndarray, p: np.ndarray) -> np.ndarray:
    mu = np.exp(nu)
    y = y[:, None]

    def nb2(theta):
        return stats.nbinom.logpmf(y, theta[:, None], theta[:, None] / (theta[:, None] + mu))

    def nb1(phi):
        return stats.nbinom.logpmf(y, mu / phi[:, None], 1.0 / (1.0 + phi[:, None]))

    base = {"nbinom2": lambda: nb2(p[:, 0]), "nbinom1": lambda: nb1(p[:, 0]),
            "zip": lambda: stats.poisson.logpmf(y, mu), "zinb2": lambda: nb2(p[:, 0]),
            "zinb1": lambda: nb1(p[:, 0])}[name]()
    if not name.startswith("zi"):
        return base
    pi = 1.0 / (1.0 + np.exp(-p[:, -1]))[:, None]
    return np.where(y == 0, np.log(pi + (1 - pi) * np.exp(base)), np.log(1 - pi) + base)


COUNT = ["nbinom2", "nbinom1", "zip", "zinb2", "zinb1"]


@pytest.mark.parametrize("name", COUNT)
def test_count_log_density_matches_scipy(name: str) -> None:
    fam, p = get_family(name), _params(name)
    ll, _, _ = fam.loglik_derivs(Y, NU, p)
    np.testing.assert_allclose(ll, _reference(name, Y, NU, p), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", COUNT)
def test_count_probabilities_sum_to_one(name: str) -> None:
    fam, p = get_family(name), _params(name)[:1]
    y = np.arange(400, dtype=float)
    ll, _, _ = fam.loglik_derivs(y, np.full(len(y), 1.2), np.repeat(p, len(y), axis=0))
    assert np.exp(ll).sum() == pytest.approx(1.0, abs=1e-10)


def _check_derivatives(fam, y: np.ndarray, nu: np.ndarray, p: np.ndarray, free_cols: list[int]) -> None:
    h = 1e-6
    ll, d1, d2 = fam.loglik_derivs(y, nu, p)
    up, dup, _ = fam.loglik_derivs(y, nu + h, p)
    dn, ddn, _ = fam.loglik_derivs(y, nu - h, p)
    np.testing.assert_allclose(d1, (up - dn) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d2, (dup - ddn) / (2 * h), rtol=1e-6, atol=1e-7)
    score = fam.param_score(y, nu, p)
    assert score.shape == nu.shape + (p.shape[1],)
    for j in range(p.shape[1]):
        step = np.zeros_like(p)
        step[:, j] = h
        fd = (fam.loglik_derivs(y, nu, p + step, order=0)[0] - fam.loglik_derivs(y, nu, p - step, order=0)[0]) / (2 * h)
        expect = fd if j in free_cols else np.zeros_like(fd)
        np.testing.assert_allclose(score[..., j], expect, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", COUNT)
def test_count_derivatives_match_finite_differences(name: str) -> None:
    p = _params(name)
    _check_derivatives(get_family(name), Y, NU, p, list(range(p.shape[1])))


def _censored_params(y: np.ndarray) -> np.ndarray:
    """Rows: exact, left at y, right at y, interval (y, y + 1.5), exact."""
    kind = np.arange(len(y)) % 5
    lo = np.where(kind == 1, -np.inf, y)
    hi = np.where(kind == 2, np.inf, np.where(kind == 3, y + 1.5, y))
    sigma = RNG.uniform(0.5, 2.0, len(y))
    return np.column_stack([sigma, lo, hi])


YC = RNG.normal(0.0, 1.5, 10)
NUC = RNG.normal(0.0, 1.0, (10, 4))


def test_censored_log_density_matches_scipy() -> None:
    fam, p = get_family("censored_gaussian"), _censored_params(YC)
    ll, _, _ = fam.loglik_derivs(YC, NUC, p)
    s, lo, hi = p[:, :1], p[:, 1:2], p[:, 2:3]
    norm = stats.norm(NUC, s)
    with np.errstate(divide="ignore"):
        interval = np.log(norm.cdf(hi) - norm.cdf(lo))
    censored = np.where(np.isinf(lo), norm.logcdf(hi), np.where(np.isinf(hi), norm.logsf(lo), interval))
    expect = np.where(lo == hi, norm.logpdf(YC[:, None]), censored)
    np.testing.assert_allclose(ll, expect, rtol=1e-10)


def test_censored_far_tail_is_finite() -> None:
    fam = get_family("censored_gaussian")
    p = np.array([[1.0, -np.inf, -40.0], [1.0, 40.0, np.inf]])
    ll, d1, d2 = fam.loglik_derivs(np.array([-40.0, 40.0]), np.zeros(2), p)
    assert np.all(np.isfinite(ll)) and np.all(np.isfinite(d1)) and np.all(np.isfinite(d2))
    assert ll[0] == pytest.approx(stats.norm.logcdf(-40.0), rel=1e-10)


def test_censored_derivatives_match_finite_differences() -> None:
    _check_derivatives(get_family("censored_gaussian"), YC, NUC, _censored_params(YC), [0])


def test_zero_inflated_mean_is_shrunk_by_the_zero_probability() -> None:
    fam = get_family("zip")
    nu, zeta = np.array([0.3, 1.0]), np.array([[-1.0], [0.5]])
    np.testing.assert_allclose(fam.mean(nu, zeta), np.exp(nu) / (1 + np.exp(zeta[:, 0])))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_composite_poisson_mean_is_a_sum_of_inverse_links() -> None:
    fam = CompositePoisson("log", ("log", "logit"))
    zeta = RNG.normal(0.0, 1.0, (len(Y), 2))
    mu = np.exp(NU) + np.exp(zeta[:, :1]) + _expit(zeta[:, 1:])
    ll, _, _ = fam.loglik_derivs(Y, NU, zeta)
    np.testing.assert_allclose(ll, stats.poisson.logpmf(Y[:, None], mu), rtol=1e-12)
    _check_derivatives(fam, Y, NU, zeta, [0, 1])


@pytest.mark.parametrize("link", ["identity", "log"])
def test_composite_gaussian_mean_is_a_sum_of_inverse_links(link: str) -> None:
    fam = CompositeGaussian(link, ("identity", "log"))
    p = np.column_stack([RNG.uniform(0.5, 2.0, len(YC)), RNG.normal(0, 1, (len(YC), 2))])
    base = NUC if link == "identity" else np.exp(NUC)
    mu = base + p[:, 1:2] + np.exp(p[:, 2:3])
    ll, _, _ = fam.loglik_derivs(YC, NUC, p)
    np.testing.assert_allclose(ll, stats.norm.logpdf(YC[:, None], mu, p[:, :1]), rtol=1e-12)
    _check_derivatives(fam, YC, NUC, p, [0, 1, 2])


def test_composite_families_differ_by_their_term_links() -> None:
    assert CompositePoisson("log", ("log",)) != CompositePoisson("log", ("logit",))
    assert CompositePoisson("log", ("log",)) == get_family("composite_poisson")
    with pytest.raises(ValueError, match="need links among log, logit"):
        CompositePoisson("log", ("identity",))
