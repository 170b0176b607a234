"""Link functions: the map between the linear predictor ``nu`` and the mean.

Every link exposes the inverse link (the mean as a function of ``nu``) and its
first two derivatives, which is what fitted values and the Gaussian family need.

The links used by binary and cumulative (ordinal) models -- logit, probit and
cloglog -- have an inverse that is a continuous CDF ``F`` on the real line.
Those models are written in terms of ``log F`` and ``log(1 - F)`` and of
log-probabilities of intervals, so that quadrature nodes far in the tails
(``|nu|`` of 30-40) still give finite, accurate log-likelihoods and derivatives
instead of ``log(0)`` or catastrophic cancellation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmrun.families.special import sc

FloatArray = NDArray[np.float64]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_SQRT_HALF = np.sqrt(0.5)
_LOG_HALF = np.log(0.5)
# Below this value of u the cloglog curvature uses its series (see _cloglog_curvature).
_CLOGLOG_SERIES_BELOW = 1e-2
# Above this value of u every cloglog tail quantity has underflowed to zero.
_CLOGLOG_U_MAX = 1e4


def _as_float(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _log1mexp(d: FloatArray) -> FloatArray:
    """log(1 - exp(d)) for d <= 0, accurate both near 0 and far below it (Maechler 2012)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(d > _LOG_HALF, np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def _cloglog_curvature(u: FloatArray) -> FloatArray:
    """Second derivative in x of log(1 - exp(-u)) with u = exp(x).

    Equals q (1 - u / (1 - exp(-u))) with q = u / expm1(u). The bracket loses all
    its digits for small u (the far lower tail of cloglog), where it is replaced
    by its Bernoulli-number series -(u/2 + u^2/12 - u^4/720).
    """
    u = np.minimum(u, _CLOGLOG_U_MAX)
    q = 1.0 / sc.exprel(u)
    small = u < _CLOGLOG_SERIES_BELOW
    series = -(u / 2.0 + u**2 / 12.0 - u**4 / 720.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        direct = 1.0 - 1.0 / sc.exprel(-u)
    return q * np.where(small, series, direct)


class IntervalLogProb(NamedTuple):
    """log P(a < X <= b) for X ~ F, and its derivatives.

    ``d_lower``/``d_upper`` are the partial derivatives in ``a`` and ``b``;
    ``d_shift``/``d2_shift`` are the first and second derivatives in ``t`` of
    log P(a + t < X <= b + t). With ``a = kappa_lo - nu`` and ``b = kappa_hi - nu``
    the derivatives in ``nu`` are ``-d_shift`` and ``d2_shift``. ``d_shift`` is
    computed directly rather than as ``d_lower + d_upper``, which can cancel.
    Derivatives are None when not requested.
    """

    ll: FloatArray
    d_lower: FloatArray | None
    d_upper: FloatArray | None
    d_shift: FloatArray | None
    d2_shift: FloatArray | None


class Link(ABC):
    """A link function g with mean = g^{-1}(nu); instances are stateless singletons."""

    name: ClassVar[str]

    @abstractmethod
    def link(self, mu: ArrayLike) -> FloatArray:
        """nu = g(mu): the linear predictor that gives mean ``mu``."""

    @abstractmethod
    def inverse(self, nu: ArrayLike) -> FloatArray:
        """mu = g^{-1}(nu): the mean (probability for CDF links)."""

    @abstractmethod
    def d_inverse(self, nu: ArrayLike) -> FloatArray:
        """d mu / d nu."""

    @abstractmethod
    def d2_inverse(self, nu: ArrayLike) -> FloatArray:
        """d^2 mu / d nu^2."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class IdentityLink(Link):
    """mu = nu."""

    name = "identity"

    def link(self, mu: ArrayLike) -> FloatArray:
        return _as_float(mu).copy()

    def inverse(self, nu: ArrayLike) -> FloatArray:
        return _as_float(nu).copy()

    def d_inverse(self, nu: ArrayLike) -> FloatArray:
        return np.ones_like(_as_float(nu))

    def d2_inverse(self, nu: ArrayLike) -> FloatArray:
        return np.zeros_like(_as_float(nu))


class LogLink(Link):
    """mu = exp(nu)."""

    name = "log"

    def link(self, mu: ArrayLike) -> FloatArray:
        return np.log(_as_float(mu))

    def inverse(self, nu: ArrayLike) -> FloatArray:
        return np.exp(_as_float(nu))

    def d_inverse(self, nu: ArrayLike) -> FloatArray:
        return np.exp(_as_float(nu))

    def d2_inverse(self, nu: ArrayLike) -> FloatArray:
        return np.exp(_as_float(nu))


class CdfLink(Link):
    """A link whose inverse is a continuous CDF F (so mu is a probability).

    Besides the mean-scale functions it gives the log-CDF, the log-survival
    function and their derivatives, which binary and ordinal likelihoods use.
    """

    @abstractmethod
    def log_cdf(self, x: ArrayLike) -> FloatArray:
        """log F(x)."""

    @abstractmethod
    def log_sf(self, x: ArrayLike) -> FloatArray:
        """log(1 - F(x))."""

    @abstractmethod
    def dlog_cdf(self, x: ArrayLike) -> FloatArray:
        """d/dx log F(x) = f(x) / F(x)."""

    @abstractmethod
    def d2log_cdf(self, x: ArrayLike) -> FloatArray:
        """d^2/dx^2 log F(x)."""

    @abstractmethod
    def dlog_sf(self, x: ArrayLike) -> FloatArray:
        """d/dx log(1 - F(x)) = -f(x) / (1 - F(x))."""

    @abstractmethod
    def d2log_sf(self, x: ArrayLike) -> FloatArray:
        """d^2/dx^2 log(1 - F(x))."""

    @abstractmethod
    def log_pdf(self, x: ArrayLike) -> FloatArray:
        """log f(x) for finite x."""

    @abstractmethod
    def dlog_pdf(self, x: ArrayLike) -> FloatArray:
        """d/dx log f(x) for finite x."""

    def log_interval(self, a: ArrayLike, b: ArrayLike, order: int = 2) -> IntervalLogProb:
        """log(F(b) - F(a)) for a < b (either may be infinite), with derivatives up to ``order``.

        The difference is taken on the side of the distribution where it does
        not cancel: from the CDF when the interval is in the lower half, from
        the survival function when it lies in the upper tail.
        """
        a, b = _as_float(a), _as_float(b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_cdf_b = self.log_cdf(b)
            log_sf_a = self.log_sf(a)
            lower = log_cdf_b + _log1mexp(self.log_cdf(a) - log_cdf_b)
            upper = log_sf_a + _log1mexp(self.log_sf(b) - log_sf_a)
        ll = np.where(a > 0.0, upper, lower)
        if order < 1:
            return IntervalLogProb(ll, None, None, None, None)
        w_a, g_a = self._density_ratio(a, ll)
        w_b, g_b = self._density_ratio(b, ll)
        d_shift = w_b - w_a
        d2 = w_b * g_b - w_a * g_a - d_shift**2 if order >= 2 else None
        return IntervalLogProb(ll, -w_a, w_b, d_shift, d2)

    def _density_ratio(self, x: FloatArray, ll: FloatArray) -> tuple[FloatArray, FloatArray]:
        """f(x) / P and d log f / dx, both set to 0 at an infinite bound (where f = 0)."""
        finite = np.isfinite(x)
        xf = np.where(finite, x, 0.0)
        with np.errstate(over="ignore"):
            w = np.where(finite, np.exp(self.log_pdf(xf) - ll), 0.0)
        return w, np.where(finite, self.dlog_pdf(xf), 0.0)


class LogitLink(CdfLink):
    """Logistic CDF: mu = 1 / (1 + exp(-nu))."""

    name = "logit"

    def link(self, mu: ArrayLike) -> FloatArray:
        return sc.logit(_as_float(mu))

    def inverse(self, nu: ArrayLike) -> FloatArray:
        return sc.expit(_as_float(nu))

    def d_inverse(self, nu: ArrayLike) -> FloatArray:
        x = _as_float(nu)
        return sc.expit(x) * sc.expit(-x)

    def d2_inverse(self, nu: ArrayLike) -> FloatArray:
        x = _as_float(nu)
        return sc.expit(x) * sc.expit(-x) * (sc.expit(-x) - sc.expit(x))

    def log_cdf(self, x: ArrayLike) -> FloatArray:
        return sc.log_expit(_as_float(x))

    def log_sf(self, x: ArrayLike) -> FloatArray:
        return sc.log_expit(-_as_float(x))

    def dlog_cdf(self, x: ArrayLike) -> FloatArray:
        return sc.expit(-_as_float(x))

    def d2log_cdf(self, x: ArrayLike) -> FloatArray:
        return -self.d_inverse(x)

    def dlog_sf(self, x: ArrayLike) -> FloatArray:
        return -sc.expit(_as_float(x))

    def d2log_sf(self, x: ArrayLike) -> FloatArray:
        return -self.d_inverse(x)

    def log_pdf(self, x: ArrayLike) -> FloatArray:
        x = _as_float(x)
        return sc.log_expit(x) + sc.log_expit(-x)

    def dlog_pdf(self, x: ArrayLike) -> FloatArray:
        x = _as_float(x)
        return sc.expit(-x) - sc.expit(x)

    def log_interval(self, a: ArrayLike, b: ArrayLike, order: int = 2) -> IntervalLogProb:
        """Exact factorisation F(b) - F(a) = F(b) (1 - F(a)) (1 - exp(a - b)): no cancellation anywhere."""
        a, b = _as_float(a), _as_float(b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ll = self.log_cdf(b) + self.log_sf(a) + _log1mexp(a - b)
            if order < 1:
                return IntervalLogProb(ll, None, None, None, None)
            gap = 1.0 / np.expm1(b - a)
        d_lower = -sc.expit(a) - gap
        d_upper = sc.expit(-b) + gap
        d_shift = sc.expit(-b) - sc.expit(a)
        d2 = -(self.d_inverse(a) + self.d_inverse(b)) if order >= 2 else None
        return IntervalLogProb(ll, d_lower, d_upper, d_shift, d2)


class ProbitLink(CdfLink):
    """Standard normal CDF: mu = Phi(nu)."""

    name = "probit"

    def link(self, mu: ArrayLike) -> FloatArray:
        return sc.ndtri(_as_float(mu))

    def inverse(self, nu: ArrayLike) -> FloatArray:
        return sc.ndtr(_as_float(nu))

    def d_inverse(self, nu: ArrayLike) -> FloatArray:
        return np.exp(self.log_pdf(nu))

    def d2_inverse(self, nu: ArrayLike) -> FloatArray:
        x = _as_float(nu)
        return -x * np.exp(self.log_pdf(x))

    @staticmethod
    def _mills(x: FloatArray) -> FloatArray:
        """Inverse Mills ratio phi(x) / Phi(x), accurate in both tails via erfcx."""
        with np.errstate(divide="ignore", over="ignore"):
            return _SQRT_2_OVER_PI / sc.erfcx(-x * _SQRT_HALF)

    def log_cdf(self, x: ArrayLike) -> FloatArray:
        return sc.log_ndtr(_as_float(x))

    def log_sf(self, x: ArrayLike) -> FloatArray:
        return sc.log_ndtr(-_as_float(x))

    def dlog_cdf(self, x: ArrayLike) -> FloatArray:
        return self._mills(_as_float(x))

    def d2log_cdf(self, x: ArrayLike) -> FloatArray:
        x = _as_float(x)
        lam = self._mills(x)
        return -lam * (x + lam)

    def dlog_sf(self, x: ArrayLike) -> FloatArray:
        return -self._mills(-_as_float(x))

    def d2log_sf(self, x: ArrayLike) -> FloatArray:
        x = _as_float(x)
        lam = self._mills(-x)
        return -lam * (lam - x)

    def log_pdf(self, x: ArrayLike) -> FloatArray:
        x = _as_float(x)
        return -0.5 * x**2 - _LOG_SQRT_2PI

    def dlog_pdf(self, x: ArrayLike) -> FloatArray:
        return -_as_float(x)


class CloglogLink(CdfLink):
    """Complementary log-log (Gumbel-min) CDF: mu = 1 - exp(-exp(nu))."""

    name = "cloglog"

    @staticmethod
    def _exp(x: ArrayLike) -> FloatArray:
        """exp(x), quietly inf above x ~ 709 where 1 - F = exp(-exp(x)) has underflowed anyway."""
        with np.errstate(over="ignore"):
            return np.exp(_as_float(x))

    def link(self, mu: ArrayLike) -> FloatArray:
        return np.log(-np.log1p(-_as_float(mu)))

    def inverse(self, nu: ArrayLike) -> FloatArray:
        return -np.expm1(-self._exp(nu))

    def d_inverse(self, nu: ArrayLike) -> FloatArray:
        return np.exp(self.log_pdf(nu))

    def d2_inverse(self, nu: ArrayLike) -> FloatArray:
        x = _as_float(nu)
        density = np.exp(self.log_pdf(x))
        with np.errstate(invalid="ignore"):
            return np.where(density == 0.0, 0.0, density * self.dlog_pdf(x))

    def log_cdf(self, x: ArrayLike) -> FloatArray:
        x = _as_float(x)
        with np.errstate(divide="ignore", over="ignore"):
            u = np.exp(x)
            # log(u * exprel(-u)) keeps the lower tail finite where 1 - exp(-u) underflows.
            return np.where(x > 0.0, np.log(-np.expm1(-u)), x + np.log(sc.exprel(-u)))

    def log_sf(self, x: ArrayLike) -> FloatArray:
        return -self._exp(x)

    def dlog_cdf(self, x: ArrayLike) -> FloatArray:
        with np.errstate(over="ignore"):
            return 1.0 / sc.exprel(np.exp(_as_float(x)))

    def d2log_cdf(self, x: ArrayLike) -> FloatArray:
        with np.errstate(over="ignore"):
            return _cloglog_curvature(np.exp(_as_float(x)))

    def dlog_sf(self, x: ArrayLike) -> FloatArray:
        return -self._exp(x)

    def d2log_sf(self, x: ArrayLike) -> FloatArray:
        return -self._exp(x)

    def log_pdf(self, x: ArrayLike) -> FloatArray:
        x = _as_float(x)
        return x - self._exp(x)

    def dlog_pdf(self, x: ArrayLike) -> FloatArray:
        return 1.0 - self._exp(x)

    def log_interval(self, a: ArrayLike, b: ArrayLike, order: int = 2) -> IntervalLogProb:
        """Exact factorisation F(b) - F(a) = (1 - F(a)) F(log D), D = exp(b) - exp(a): no cancellation."""
        a, b = _as_float(a), _as_float(b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_d = b + _log1mexp(a - b)
            ll = self.log_sf(a) + self.log_cdf(log_d)
            if order < 1:
                return IntervalLogProb(ll, None, None, None, None)
            q = self.dlog_cdf(log_d)
            d_lower = self.dlog_sf(a) - q / np.expm1(b - a)
            d_upper = q / -np.expm1(a - b)
        d_shift = self.dlog_sf(a) + q
        d2 = self.d2log_sf(a) + self.d2log_cdf(log_d) if order >= 2 else None
        return IntervalLogProb(ll, d_lower, d_upper, d_shift, d2)


LINKS: dict[str, Link] = {
    link.name: link for link in (IdentityLink(), LogLink(), LogitLink(), ProbitLink(), CloglogLink())
}


def get_link(name: str) -> Link:
    """The link called ``name`` (identity, log, logit, probit, cloglog)."""
    try:
        return LINKS[name]
    except KeyError:
        raise ValueError(f"unknown link {name!r}; expected one of: {', '.join(LINKS)}") from None
