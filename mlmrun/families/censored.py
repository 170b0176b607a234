"""Censored gaussian responses (tobit, interval regression) with left, right and interval censoring.

Parameter columns per row (families/row_params.py): sigma (the residual SD),
then the bounds lo and hi of the row's interval. A row with lo == hi is
observed exactly (density of y); otherwise its contribution is
log(Phi((hi - mu)/sigma) - Phi((lo - mu)/sigma)), lo = -inf for left and
hi = +inf for right censoring. The bounds are data: their scores are zero.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlmrun.families.families import Curvature, Derivs, Family, FloatArray, _response, _rows
from mlmrun.families.links import CdfLink, get_link, scaled_interval_curvature, scaled_interval_slopes
from mlmrun.families.row_params import columns, stack

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_PROBIT: CdfLink = get_link("probit")  # type: ignore[assignment]


class CensoredGaussian(Family):
    """y ~ N(nu, sigma^2), observed exactly or only as an interval (lo, hi]."""

    name = "censored_gaussian"
    allowed_links = ("identity",)
    default_link = "identity"
    __slots__ = ()

    def n_params(self, n_categories: int | None = None) -> int:
        return 3

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        _response(y, self.name)

    def _terms(self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None, order: int) -> tuple:
        nu = np.asarray(nu, dtype=np.float64)
        y = _rows(np.asarray(y, dtype=np.float64), nu.ndim)
        sigma, lo, hi = columns(params, nu.shape[0], nu.ndim, 3, self.name)
        exact = lo == hi
        with np.errstate(invalid="ignore"):
            a = np.where(exact, -np.inf, (lo - nu) / sigma)
            b = np.where(exact, np.inf, (hi - nu) / sigma)
        res = _PROBIT.log_interval(a, b, order)
        r = (y - nu) / sigma
        return nu, sigma, exact, a, b, res, r

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, sigma, exact, _, _, res, r = self._terms(y, nu, params, order)
        ll = np.where(exact, -_LOG_SQRT_2PI - np.log(sigma) - 0.5 * r**2, res.ll)
        if order < 1:
            return ll, None, None
        d1 = np.where(exact, r / sigma, -res.d_shift / sigma)
        if order < 2:
            return ll, d1, None
        d2 = np.where(exact, -1.0 / sigma**2, res.d2_shift / sigma**2)
        return ll, d1, d2

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, sigma, exact, a, b, res, r = self._terms(y, nu, params, 1)
        with np.errstate(invalid="ignore"):
            ta = np.where(np.isfinite(a), res.d_lower * a, 0.0)
            tb = np.where(np.isfinite(b), res.d_upper * b, 0.0)
        d_sigma = np.where(exact, (r**2 - 1.0) / sigma, -(ta + tb) / sigma)
        zero = np.zeros(nu.shape)
        return stack([d_sigma, zero, zero], nu.shape)

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """Exact rows: d2 = -1/sigma^2, so d3 = 0 and d d2/d sigma = 2/sigma^3; censored rows as ordinal intervals.

        A censored row's d2 is d2_shift(a, b) / sigma^2 with a, b = (bound - nu) / sigma
        (links.scaled_interval_curvature). The bound columns are data, as in
        param_score: their columns are zero.
        """
        nu, sigma, exact, a, b, _, _ = self._terms(y, nu, params, 0)
        third, d_sigma, _, _ = scaled_interval_curvature(_PROBIT, a, b, sigma)
        third = np.where(exact, 0.0, third)
        d_sigma = np.where(exact, 2.0 / sigma**3, d_sigma)
        zero = np.zeros(nu.shape)
        return third, stack([d_sigma, zero, zero], nu.shape)

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """Exact rows: d1 = r / sigma, so d d1/d sigma = -2 r / sigma^2; censored rows as ordinal intervals; bounds 0."""
        nu, sigma, exact, a, b, _, r = self._terms(y, nu, params, 0)
        d_sigma, _, _ = scaled_interval_slopes(_PROBIT, a, b, sigma)
        zero = np.zeros(nu.shape)
        return stack([np.where(exact, -2.0 * r / sigma**2, d_sigma), zero, zero], nu.shape)

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        """E[y*] = nu: the mean of the uncensored latent response."""
        return np.asarray(nu, dtype=np.float64)
