"""Closed-form row log densities with three nu-derivatives for the commonest family/link pairs.

The Laplace engine evaluates every row a few times per Newton step; the
family objects (mlmrun/families, the reference) compute many terms the engine
does not need. These kernels give ll, ll', ll'', ll''' for

- binomial/logit with n trials: ll = y nu - n softplus(nu) + log C(n, y),
  p = expit(nu), ll' = y - n p, ll'' = -n p q, ll''' = -n p q (q - p)  (q = 1 - p);
- poisson/log: mu = exp(nu), ll = y nu - mu - log y!, ll' = y - mu, ll'' = ll''' = -mu;
- gaussian/identity with SD sigma: ll = -log(sigma sqrt(2 pi)) - r^2 / (2 sigma^2), r = y - nu,
  ll' = r / sigma^2, ll'' = -1 / sigma^2, ll''' = 0.

tests/laplace/test_laplace_engine_kernels.py checks them against the families.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import gammaln

from mlmrun.families import Family

Kernel = Callable[[np.ndarray, np.ndarray | None, bool], tuple]
"""kernel(nu, params, third) -> (ll, d1, d2, d3 or None) for the equation's rows."""

_HALF_LOG_2PI = 0.5 * float(np.log(2 * np.pi))


def kernel_for(family: Family, y: np.ndarray, trials: np.ndarray | None) -> Kernel | None:
    """The closed-form kernel for this family and link, or None (use the family object)."""
    key = (family.name, family.link)
    y = np.asarray(y, dtype=float)
    if key == ("binomial", "logit"):
        return _binomial_logit(y, trials)
    if key == ("poisson", "log"):
        return _poisson_log(y)
    if key == ("gaussian", "identity"):
        return _gaussian_identity(y)
    return None


def _binomial_logit(y: np.ndarray, trials: np.ndarray | None) -> Kernel:
    binary = trials is None or bool(np.all(np.asarray(trials) == 1))
    n = 1.0 if binary else np.asarray(trials, dtype=float)
    coef = 0.0 if binary else gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)

    def derivs(nu: np.ndarray, params: np.ndarray | None, third: bool) -> tuple:
        e = np.abs(nu)
        np.negative(e, out=e)
        np.exp(e, out=e)  # exp(-|nu|)
        onep = e + 1.0
        big = np.reciprocal(onep)  # expit(|nu|)
        small = e
        small *= big  # expit(-|nu|)
        right = nu >= 0
        p = np.where(right, big, small)
        q = np.where(right, small, big)
        ll = np.log(onep, out=onep)
        ll += np.maximum(nu, 0.0)
        if not binary:
            ll *= n
        np.subtract(y * nu, ll, out=ll)
        if not binary:
            ll += coef
        npq = p * q
        if not binary:
            npq *= n
            p *= n
        d1 = np.subtract(y, p, out=p)
        d3 = None
        if third:
            d3 = np.subtract(q, np.where(right, big, small), out=q)  # q - p (p itself became d1)
            d3 *= npq
            np.negative(d3, out=d3)
        np.negative(npq, out=npq)
        return ll, d1, npq, d3

    return derivs


def _poisson_log(y: np.ndarray) -> Kernel:
    const = -gammaln(y + 1.0)

    def derivs(nu: np.ndarray, params: np.ndarray | None, third: bool) -> tuple:
        mu = np.exp(nu)
        return const + y * nu - mu, y - mu, -mu, (-mu if third else None)

    return derivs


def _gaussian_identity(y: np.ndarray) -> Kernel:
    def derivs(nu: np.ndarray, params: np.ndarray | None, third: bool) -> tuple:
        sigma = np.asarray(params, dtype=float)
        prec = 1.0 / (sigma * sigma)
        r = y - nu
        ll = -np.log(sigma) - _HALF_LOG_2PI - 0.5 * r * r * prec
        return ll, r * prec, -prec * np.ones_like(nu), (np.zeros_like(nu) if third else None)

    return derivs
