"""Analytic derivatives in nu and in the family parameters agree with central differences."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mlmrun.families import ALLOWED_LINKS, get_family

ALL_COMBOS = [(fam, link) for fam, links in ALLOWED_LINKS.items() for link in links
              if fam not in ("multinomial", "ranking")]  # rows of a choice set are coupled: test_choice_family.py
STEP = 1e-5
RTOL = 1e-6
ATOL = 1e-7


def central_diff(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, step: float = STEP) -> np.ndarray:
    """(f(x + h) - f(x - h)) / 2h, elementwise."""
    return (f(x + step) - f(x - step)) / (2.0 * step)


def agrees(numeric: np.ndarray, analytic: np.ndarray) -> bool:
    """Whether a central-difference derivative matches the analytic one to difference accuracy."""
    return bool(np.all(np.isfinite(analytic))) and np.allclose(numeric, analytic, rtol=RTOL, atol=ATOL)


def check_nu_derivatives(family, y, nu, params=None, trials=None) -> None:
    _, d1, d2 = family.loglik_derivs(y, nu, params, trials)
    num_d1 = central_diff(lambda v: family.loglik_derivs(y, v, params, trials, order=0)[0], nu)
    num_d2 = central_diff(lambda v: family.loglik_derivs(y, v, params, trials, order=1)[1], nu)
    assert agrees(num_d1, d1), np.max(np.abs(num_d1 - d1))
    assert agrees(num_d2, d2), np.max(np.abs(num_d2 - d2))


@pytest.mark.parametrize("fam,link", ALL_COMBOS)
@pytest.mark.parametrize("seed", [0, 1])
def test_nu_derivatives(case_factory, fam, link, seed):
    c = case_factory(fam, link, seed=seed, nodes=(2, 3))
    check_nu_derivatives(c.family, c.y, c.nu, c.params, c.trials)


@pytest.mark.parametrize("link", ALLOWED_LINKS["binomial"])
def test_bernoulli_nu_derivatives(case_factory, link):
    c = case_factory("binomial", link, binomial_trials=False)
    check_nu_derivatives(c.family, c.y, c.nu, None, None)


TAIL_NU = np.array([-40.0, -30.0, -12.0, 12.0, 30.0, 40.0])


@pytest.mark.parametrize("link", ALLOWED_LINKS["binomial"])
def test_binary_tail_derivatives(link):
    fam = get_family("binomial", link)
    y = np.array([0.0, 1.0])
    nu = np.tile(TAIL_NU, (2, 1))
    check_nu_derivatives(fam, y, nu)


@pytest.mark.parametrize("link", ALLOWED_LINKS["ordinal"])
def test_ordinal_tail_derivatives(link):
    fam = get_family("ordinal", link)
    kappa = np.array([-1.0, 0.5, 2.0])
    y = np.arange(4.0)
    check_nu_derivatives(fam, y, np.tile(TAIL_NU, (4, 1)), kappa)


def test_binary_tail_curvature_is_relatively_accurate():
    """Where d2 is tiny, it keeps its relative accuracy (no cancellation to 0 or to the wrong sign)."""
    y = np.array([0.0, 1.0])
    nu = np.array([[30.0, 40.0], [-30.0, -40.0]])
    # logit: d2 = -p (1 - p), symmetric in the tail
    _, _, d2 = get_family("binomial", "logit").loglik_derivs(y, nu)
    tail = np.exp(-np.array([30.0, 40.0]))
    np.testing.assert_allclose(d2, np.tile(-tail / (1.0 + tail) ** 2, (2, 1)), rtol=1e-12)
    # cloglog, y = 1 in the lower tail: log p = log(1 - exp(-u)), u = e^nu, d2 = -u/2 - u^2/12 + O(u^4)
    _, _, d2 = get_family("binomial", "cloglog").loglik_derivs(np.array([1.0]), np.array([[-30.0, -40.0]]))
    u = np.exp(np.array([-30.0, -40.0]))
    np.testing.assert_allclose(d2[0], -u / 2.0 - u**2 / 12.0, rtol=1e-12)


def test_cloglog_curvature_continuous_at_series_switch():
    """The series and direct forms of the cloglog curvature agree where they meet."""
    fam = get_family("binomial", "cloglog")
    nu = np.log(1e-2) + np.array([-1e-9, 1e-9])
    _, _, d2 = fam.loglik_derivs(np.array([1.0]), nu[None, :])
    np.testing.assert_allclose(d2[0, 0], d2[0, 1], rtol=1e-7)


@pytest.mark.parametrize("fam,link", [(f, lk) for f in ("gaussian", "gamma") for lk in ALLOWED_LINKS[f]])
def test_per_row_param_score(case_factory, fam, link):
    c = case_factory(fam, link, nodes=(2, 3))
    score = c.family.param_score(c.y, c.nu, c.params)
    assert score.shape == c.nu.shape + (1,)
    # each row's ll depends on that row's parameter only, so one shift of all rows gives every partial
    numeric = central_diff(lambda p: c.family.loglik_derivs(c.y, c.nu, p, order=0)[0], c.params)
    assert agrees(numeric, score[..., 0])


@pytest.mark.parametrize("link", ALLOWED_LINKS["ordinal"])
@pytest.mark.parametrize("tail", [False, True])
def test_ordinal_threshold_score(case_factory, link, tail):
    c = case_factory("ordinal", link, nodes=(2, 3))
    nu = c.nu * 12.0 if tail else c.nu
    score = c.family.param_score(c.y, nu, c.params)
    assert score.shape == nu.shape + (c.params.size,)
    for k in range(c.params.size):
        bump = np.eye(c.params.size)[k]
        numeric = central_diff(lambda t, e=bump: c.family.loglik_derivs(c.y, nu, c.params + t * e, order=0)[0], 0.0)
        assert agrees(numeric, score[..., k]), k


@pytest.mark.parametrize("fam,link", [("binomial", "logit"), ("poisson", "log")])
def test_parameter_free_families_have_empty_score(case_factory, fam, link):
    c = case_factory(fam, link)
    assert c.family.param_score(c.y, c.nu, None, c.trials).shape == c.nu.shape + (0,)


def test_checks_bite(case_factory):
    """The comparison used above rejects derivatives that are off by 1e-3."""
    c = case_factory("gaussian", "log", nodes=(2, 3))
    fam, y, nu, sigma = c.family, c.y, c.nu, c.params
    _, d1, d2 = fam.loglik_derivs(y, nu, sigma)
    num_d1 = central_diff(lambda v: fam.loglik_derivs(y, v, sigma, order=0)[0], nu)
    num_d2 = central_diff(lambda v: fam.loglik_derivs(y, v, sigma, order=1)[1], nu)
    assert agrees(num_d1, d1) and agrees(num_d2, d2)
    assert not agrees(num_d1, d1 + 1e-3)
    assert not agrees(num_d2, d2 + 1e-3)
    assert not agrees(num_d1, d1 * (1.0 + 1e-3))
    score = fam.param_score(y, nu, sigma)[..., 0]
    num_score = central_diff(lambda p: fam.loglik_derivs(y, nu, p, order=0)[0], sigma)
    assert agrees(num_score, score)
    assert not agrees(num_score, score + 1e-3)
    assert not agrees(num_d1, np.where(np.arange(d1.size).reshape(d1.shape) == 5, np.nan, d1))
