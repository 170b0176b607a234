"""Link functions: the map between the linear predictor ``nu`` and the mean.

Every link exposes the inverse link (the mean as a function of ``nu``) and its
first three derivatives, which is what fitted values and the Gaussian family need
(the third for exact Laplace gradients).

The links used by binary and cumulative (ordinal) models -- logit, probit and
cloglog -- have an inverse that is a continuous CDF ``F`` on the real line.
Those models are written in terms of ``log F`` and ``log(1 - F)`` and of
log-probabilities of intervals, so that quadrature nodes far in the tails
(``|nu|`` of 30-40) still give finite, accurate log-likelihoods and derivatives
(up to the third, ``interval_curvature``) instead of ``log(0)`` or catastrophic
cancellation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special as sc

FloatArray = NDArray[np.float64]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_SQRT_HALF = np.sqrt(0.5)
_LOG_HALF = np.log(0.5)
# Below this value of u the cloglog curvature uses its series (see _cloglog_curvature).
_CLOGLOG_SERIES_BELOW = 1e-2
# Above this value of u every cloglog tail quantity has underflowed to zero.
_CLOGLOG_U_MAX = 1e4
# Below this x the probit third derivative of log Phi uses the Mills-ratio continued fraction, with this depth
# (full double precision from x = -5 on).
_PROBIT_CF_BELOW = -5.0
_PROBIT_CF_DEPTH = 48


def _as_float(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _log1mexp(d: FloatArray) -> FloatArray:
    """log(1 - exp(d)) for d <= 0, accurate both near 0 and far below it (Maechler 2012)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(d > _LOG_HALF, np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def _mills_fraction(t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """K_1, K_2, K_3 of the continued fraction K_k = k / (t + K_(k+1)) of the normal tail, t >= 5.

    Phi(-t) / phi(t) = 1 / (t + K_1), so with x = -t the inverse Mills ratio is
    lam = t + K_1 and x + lam = K_1, free of the cancellation of x + lam.
    """
    k = np.zeros_like(t)
    found = []
    for depth in range(_PROBIT_CF_DEPTH, 0, -1):
        k = depth / (t + k)
        if depth <= 3:
            found.append(k)
    return found[2], found[1], found[0]


def _cloglog_bracket(u: FloatArray) -> tuple[FloatArray, FloatArray]:
    """q = u / expm1(u) (the first derivative in x of log(1 - exp(-u)), u = exp(x)) and B = 1 - q - u.

    B = 1 - u / (1 - exp(-u)) loses all its digits for small u (the far lower
    tail of cloglog), where it is replaced by its Bernoulli-number series
    -(u/2 + u^2/12 - u^4/720). ``u`` is capped where every tail quantity has underflowed.
    """
    u = np.minimum(u, _CLOGLOG_U_MAX)
    q = 1.0 / sc.exprel(u)
    small = u < _CLOGLOG_SERIES_BELOW
    series = -(u / 2.0 + u**2 / 12.0 - u**4 / 720.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        direct = 1.0 - 1.0 / sc.exprel(-u)
    return q, np.where(small, series, direct)


def _cloglog_curvature(u: FloatArray) -> FloatArray:
    """Second derivative in x of log(1 - exp(-u)) with u = exp(x): q B (see _cloglog_bracket)."""
    q, bracket = _cloglog_bracket(u)
    return q * bracket


def _cloglog_third(u: FloatArray) -> FloatArray:
    """Third derivative in x of log(1 - exp(-u)), u = exp(x): q (B (B - q) - u), from u dq/du = q B and u dB/du = -q B - u."""
    q, bracket = _cloglog_bracket(u)
    return q * (bracket * (bracket - q) - np.minimum(u, _CLOGLOG_U_MAX))


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


class IntervalCurvature(NamedTuple):
    """The curvature of log P(a < X <= b) under a common shift of both bounds, and its derivatives.

    ``d2_shift`` and ``d3_shift`` are the second and third derivatives in ``t`` of
    log P(a + t < X <= b + t); ``d2_lower``/``d2_upper`` are the partial derivatives
    of ``d2_shift`` in ``a`` and in ``b`` (they sum to ``d3_shift``). An infinite
    bound contributes nothing (its partial is 0). With ``a = kappa_lo - nu`` the
    third derivative in ``nu`` is ``-d3_shift``.
    """

    d2_shift: FloatArray
    d3_shift: FloatArray
    d2_lower: FloatArray
    d2_upper: FloatArray


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

    @abstractmethod
    def d3_inverse(self, nu: ArrayLike) -> FloatArray:
        """d^3 mu / d nu^3 (the third-order terms of exact Laplace gradients)."""

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

    def d3_inverse(self, nu: ArrayLike) -> FloatArray:
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

    def d3_inverse(self, nu: ArrayLike) -> FloatArray:
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

    @abstractmethod
    def d2log_pdf(self, x: ArrayLike) -> FloatArray:
        """d^2/dx^2 log f(x) for finite x."""

    @abstractmethod
    def d3log_cdf(self, x: ArrayLike) -> FloatArray:
        """d^3/dx^3 log F(x)."""

    @abstractmethod
    def d3log_sf(self, x: ArrayLike) -> FloatArray:
        """d^3/dx^3 log(1 - F(x))."""

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

    def interval_curvature(self, a: ArrayLike, b: ArrayLike) -> IntervalCurvature:
        """Shift curvature of log(F(b) - F(a)) with its third derivative and its partials in a and b.

        With P = F(b) - F(a), w_x = f(x) / P, g = (log f)', h = (log f)'' and
        D = w_b - w_a (the shift derivative): d2 = w_b g_b - w_a g_a - D^2,
        d3 = w_b (g_b^2 + h_b) - w_a (g_a^2 + h_a) - 3 D d2 - D^3 and
        d d2/db = w_b (g_b^2 + h_b - w_b g_b + w_a g_a - 2 D (g_b - D)),
        d d2/da = -w_a (g_a^2 + h_a + w_a g_a - w_b g_b - 2 D (g_a - D)).
        A one-sided interval uses the link's own log F or log(1 - F) derivatives,
        which avoid the cancellation of these sums in the far tails.
        """
        a, b = _as_float(a), _as_float(b)
        ll = self.log_interval(a, b, order=0).ll
        w_a, g_a = self._density_ratio(a, ll)
        w_b, g_b = self._density_ratio(b, ll)
        h_a = np.where(np.isfinite(a), self.d2log_pdf(np.where(np.isfinite(a), a, 0.0)), 0.0)
        h_b = np.where(np.isfinite(b), self.d2log_pdf(np.where(np.isfinite(b), b, 0.0)), 0.0)
        shift = w_b - w_a
        d2 = w_b * g_b - w_a * g_a - shift**2
        d3 = w_b * (g_b**2 + h_b) - w_a * (g_a**2 + h_a) - 3.0 * shift * d2 - shift**3
        d2_upper = w_b * (g_b**2 + h_b - w_b * g_b + w_a * g_a - 2.0 * shift * (g_b - shift))
        d2_lower = -w_a * (g_a**2 + h_a + w_a * g_a - w_b * g_b - 2.0 * shift * (g_a - shift))
        only_b, only_a = np.isneginf(a) & np.isfinite(b), np.isposinf(b) & np.isfinite(a)
        xb, xa = np.where(only_b, b, 0.0), np.where(only_a, a, 0.0)
        d2 = np.where(only_b, self.d2log_cdf(xb), np.where(only_a, self.d2log_sf(xa), d2))
        third_b, third_a = self.d3log_cdf(xb), self.d3log_sf(xa)
        d3 = np.where(only_b, third_b, np.where(only_a, third_a, d3))
        d2_upper = np.where(only_b, third_b, np.where(only_a, 0.0, d2_upper))
        d2_lower = np.where(only_a, third_a, np.where(only_b, 0.0, d2_lower))
        return IntervalCurvature(d2, d3, d2_lower, d2_upper)

    def interval_slopes(self, a: ArrayLike, b: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """The partials of the shift derivative d_shift of log(F(b) - F(a)) in a and in b (they sum to d2_shift).

        Generic: d d_shift/db = w_b (g_b - D) and d d_shift/da = w_a (D - g_a), D = w_b - w_a;
        a one-sided interval takes the curvature of log F or log(1 - F) at its finite bound.
        """
        a, b = np.broadcast_arrays(_as_float(a), _as_float(b))
        ll = self.log_interval(a, b, order=0).ll
        w_a, g_a = self._density_ratio(a, ll)
        w_b, g_b = self._density_ratio(b, ll)
        shift = w_b - w_a
        only_b, only_a = np.isneginf(a) & np.isfinite(b), np.isposinf(b) & np.isfinite(a)
        xb, xa = np.where(only_b, b, 0.0), np.where(only_a, a, 0.0)
        upper = np.where(only_b, self.d2log_cdf(xb), np.where(only_a, 0.0, w_b * (g_b - shift)))
        lower = np.where(only_a, self.d2log_sf(xa), np.where(only_b, 0.0, w_a * (shift - g_a)))
        return lower, upper

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

    def d2log_pdf(self, x: ArrayLike) -> FloatArray:
        return -2.0 * self.d_inverse(x)

    def d3_inverse(self, nu: ArrayLike) -> FloatArray:
        """p q (1 - 6 p q), p = F(nu), q = 1 - p."""
        pq = self.d_inverse(nu)
        return pq * (1.0 - 6.0 * pq)

    def d3log_cdf(self, x: ArrayLike) -> FloatArray:
        """-p q (q - p), with q - p = tanh(-x/2) (no cancellation near 0)."""
        x = _as_float(x)
        return -self.d_inverse(x) * np.tanh(-0.5 * x)

    def d3log_sf(self, x: ArrayLike) -> FloatArray:
        return self.d3log_cdf(x)

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

    def interval_slopes(self, a: ArrayLike, b: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """From the factorisation: d_shift = (log F)'(b) + (log S)'(a)."""
        a, b = np.broadcast_arrays(_as_float(a), _as_float(b))
        return self.d2log_sf(a), self.d2log_cdf(b)

    def interval_curvature(self, a: ArrayLike, b: ArrayLike) -> IntervalCurvature:
        """From the factorisation: log(1 - exp(a - b)) does not move under a shift, so d2 = (log F)''(b) + (log S)''(a)."""
        a, b = _as_float(a), _as_float(b)
        upper, lower = self.d3log_cdf(b), self.d3log_sf(a)
        return IntervalCurvature(self.d2log_cdf(b) + self.d2log_sf(a), upper + lower, lower, upper)


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

    @staticmethod
    def _far_tail(x: FloatArray, near: FloatArray, far: Callable[..., FloatArray]) -> FloatArray:
        """``near`` with its values below x = -5 replaced by ``far(t, K_1, K_2, K_3)`` of _mills_fraction, t = -x."""
        tail = x < _PROBIT_CF_BELOW
        if not np.any(tail):
            return near
        out = np.array(np.broadcast_to(near, x.shape), dtype=np.float64, copy=True)
        t = -x[tail]
        out[tail] = far(t, *_mills_fraction(t))
        return out

    def d2log_cdf(self, x: ArrayLike) -> FloatArray:
        """-lam (x + lam); below x = -5, where x + lam cancels, -(t + K_1) K_1 (as x + lam = K_1)."""
        x = _as_float(x)
        lam = self._mills(x)
        return self._far_tail(x, -lam * (x + lam), lambda t, k1, k2, k3: -(t + k1) * k1)

    def dlog_sf(self, x: ArrayLike) -> FloatArray:
        return -self._mills(-_as_float(x))

    def d2log_sf(self, x: ArrayLike) -> FloatArray:
        """The curvature of log Phi at -x (see d2log_cdf)."""
        x = _as_float(x)
        lam = self._mills(-x)
        near = -lam * (lam - x)
        return self._far_tail(-x, near, lambda t, k1, k2, k3: -(t + k1) * k1)

    def log_pdf(self, x: ArrayLike) -> FloatArray:
        x = _as_float(x)
        return -0.5 * x**2 - _LOG_SQRT_2PI

    def dlog_pdf(self, x: ArrayLike) -> FloatArray:
        return -_as_float(x)

    def d2log_pdf(self, x: ArrayLike) -> FloatArray:
        return np.full_like(_as_float(x), -1.0)

    def d3_inverse(self, nu: ArrayLike) -> FloatArray:
        x = _as_float(nu)
        return (x**2 - 1.0) * np.exp(self.log_pdf(x))

    def d3log_cdf(self, x: ArrayLike) -> FloatArray:
        """lam ((x + lam)(x + 2 lam) - 1), lam the inverse Mills ratio (lam' = -lam (x + lam)); 0 at x = +-inf.

        Below x = -5 the bracket cancels (it is O(x^-4)); there, with the continued
        fraction of _mills_fraction, it equals lam K_1^2 K_2 (K_3 - K_2) exactly (_log_phi_derivs).
        """
        return self._log_phi_derivs(_as_float(x), 3)[2]

    def d3log_sf(self, x: ArrayLike) -> FloatArray:
        return -self.d3log_cdf(-_as_float(x))

    def _log_phi_derivs(self, x: FloatArray, order: int) -> list[FloatArray]:
        """[L_1, ..., L_order], L_k the k-th derivative of log Phi at x, from one Mills ratio; 0 at x = +-inf."""
        finite = np.isfinite(x)
        x = np.where(finite, x, 0.0)
        lam = self._mills(x)
        out = [lam]
        if order >= 2:
            out.append(self._far_tail(x, -lam * (x + lam), lambda t, k1, k2, k3: -(t + k1) * k1))
        if order >= 3:
            near = lam * ((x + lam) * (x + 2.0 * lam) - 1.0)
            out.append(self._far_tail(x, near, lambda t, k1, k2, k3: (t + k1) * k1**2 * k2 * (k3 - k2)))
        return [np.where(finite, v, 0.0) for v in out]

    def _frame(self, a: ArrayLike, b: ArrayLike
               ) -> tuple[NDArray[np.bool_], FloatArray, FloatArray, FloatArray, FloatArray]:
        """The interval in its lower frame: (flip, A, B, log P, rho).

        log(Phi(b) - Phi(a)) = log(Phi(-a) - Phi(-b)), so an interval with a > 0 is
        mirrored to (A, B) = (-b, -a) (flip: odd shift derivatives change sign). Then
        A <= 0 or B < 0, and log P = log Phi(B) + log(1 - exp(delta)),
        delta = log Phi(A) - log Phi(B) <= 0, rho = 1 / expm1(-delta) = Phi(A) / P: no
        term cancels, in either tail (the generic form's choice of side, in one pass).
        """
        a, b = np.broadcast_arrays(_as_float(a), _as_float(b))
        flip = a > 0.0
        lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_hi = self.log_cdf(hi)
            delta = self.log_cdf(lo) - log_hi
            rho = 1.0 / np.expm1(-delta)
            ll = log_hi + _log1mexp(delta)
        return flip, lo, hi, ll, rho

    def log_interval(self, a: ArrayLike, b: ArrayLike, order: int = 2) -> IntervalLogProb:
        """log P and its derivatives from the lower frame (see _frame), where Phi(B) / P = 1 + rho.

        w_B = L_1(B) (1 + rho) and w_A = L_1(A) rho are the bound partials; with
        e_k = L_k(A) - L_k(B): d1 = L_1(B) - rho e1 = w_B - w_A and
        d2 = L_2(B) - rho (1 + rho) e1^2 - rho e2 (rho' = rho (1 + rho) delta').
        """
        flip, lo, hi, ll, rho = self._frame(a, b)
        if order < 1:
            return IntervalLogProb(ll, None, None, None, None)
        at_lo, at_hi = self._log_phi_derivs(lo, order), self._log_phi_derivs(hi, order)
        w_lo, w_hi = at_lo[0] * rho, at_hi[0] * (1.0 + rho)
        e1 = at_lo[0] - at_hi[0]
        d1 = at_hi[0] - rho * e1
        d2 = None if order < 2 else at_hi[1] - rho * (1.0 + rho) * e1**2 - rho * (at_lo[1] - at_hi[1])
        return IntervalLogProb(ll, np.where(flip, -w_hi, -w_lo), np.where(flip, w_lo, w_hi),
                               np.where(flip, -d1, d1), d2)

    def interval_slopes(self, a: ArrayLike, b: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """In the lower frame (see _frame, log_interval): d d1/dB = L_2(B) (1 + rho) + rho (1 + rho) L_1(B) e1 and
        d d1/dA = -rho (1 + rho) L_1(A) e1 - rho L_2(A); a mirrored interval swaps them (d_shift = -d1, a = -B)."""
        flip, lo, hi, _, rho = self._frame(a, b)
        (la, ca), (lb, cb) = self._log_phi_derivs(lo, 2), self._log_phi_derivs(hi, 2)
        rr, e1 = rho * (1.0 + rho), la - lb
        d_lo = -rr * la * e1 - rho * ca
        d_hi = cb * (1.0 + rho) + rr * lb * e1
        return np.where(flip, d_hi, d_lo), np.where(flip, d_lo, d_hi)

    def interval_curvature(self, a: ArrayLike, b: ArrayLike) -> IntervalCurvature:
        """In the lower frame (see _frame, log_interval), with rr = rho (1 + rho) and s = 1 + 2 rho:

        d3 = L_3(B) - rr s e1^3 - 3 rr e1 e2 - rho e3,
        d d2/dA = -rr s L_1(A) e1^2 - 2 rr e1 L_2(A) - rr L_1(A) e2 - rho L_3(A),
        d d2/dB = L_3(B) + rr s L_1(B) e1^2 + 2 rr e1 L_2(B) + rr L_1(B) e2 + rho L_3(B);
        a mirrored interval changes the sign of d3 and swaps the partials with a sign change.
        """
        flip, lo, hi, _, rho = self._frame(a, b)
        (la, ca, ta), (lb, cb, tb) = self._log_phi_derivs(lo, 3), self._log_phi_derivs(hi, 3)
        rr = rho * (1.0 + rho)
        rrs = rr * (1.0 + 2.0 * rho)
        e1, e2 = la - lb, ca - cb
        d2 = cb - rr * e1**2 - rho * e2
        d3 = tb - rrs * e1**3 - 3.0 * rr * e1 * e2 - rho * (ta - tb)
        d_lo = -rrs * la * e1**2 - 2.0 * rr * e1 * ca - rr * la * e2 - rho * ta
        d_hi = tb + rrs * lb * e1**2 + 2.0 * rr * e1 * cb + rr * lb * e2 + rho * tb
        return IntervalCurvature(d2, np.where(flip, -d3, d3), np.where(flip, -d_hi, d_lo), np.where(flip, -d_lo, d_hi))


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

    def d2log_pdf(self, x: ArrayLike) -> FloatArray:
        return -self._exp(x)

    def d3_inverse(self, nu: ArrayLike) -> FloatArray:
        """f ((1 - u)^2 - u) with u = exp(nu), f the density; 0 where f has underflowed."""
        x = _as_float(nu)
        density = np.exp(self.log_pdf(x))
        u = self._exp(x)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.where(density == 0.0, 0.0, density * ((1.0 - u) ** 2 - u))

    def d3log_cdf(self, x: ArrayLike) -> FloatArray:
        return _cloglog_third(self._exp(x))

    def d3log_sf(self, x: ArrayLike) -> FloatArray:
        return -self._exp(x)

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

    def interval_slopes(self, a: ArrayLike, b: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """From the factorisation: d_shift = (log S)'(a) + (log F)'(log D), D = exp(b) - exp(a)."""
        a, b = np.broadcast_arrays(_as_float(a), _as_float(b))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            curv = self.d2log_cdf(b + _log1mexp(a - b))
            upper = curv / -np.expm1(a - b)
            lower = self.d2log_sf(a) - curv / np.expm1(b - a)
        return lower, upper

    def interval_curvature(self, a: ArrayLike, b: ArrayLike) -> IntervalCurvature:
        """From the factorisation: log D shifts with the bounds, d log D/db = 1/(1 - e^(a-b)), d log D/da = -1/expm1(b - a)."""
        a, b = _as_float(a), _as_float(b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_d = b + _log1mexp(a - b)
            third = self.d3log_cdf(log_d)
            upper = third / -np.expm1(a - b)
            lower = self.d3log_sf(a) - third / np.expm1(b - a)
        d2 = self.d2log_sf(a) + self.d2log_cdf(log_d)
        return IntervalCurvature(d2, self.d3log_sf(a) + third, lower, upper)


def scaled_interval_curvature(link: CdfLink, a: ArrayLike, b: ArrayLike, scale: ArrayLike
                              ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """For ll = log(F(b) - F(a)) with a = (lo - nu)/s, b = (hi - nu)/s: d3 in nu, d d2/d s, and d d2/d lo, d d2/d hi.

    d2 = d2_shift / s^2, so d3 = -d3_shift / s^3, d d2/d hi = d2_upper / s^3,
    d d2/d lo = d2_lower / s^3 and, as da/ds = -a/s, d d2/ds = -(a d2_lower + b d2_upper + 2 d2_shift) / s^3
    (an infinite bound contributes nothing). Returned in the order (d3, d/ds, d/dlo, d/dhi).
    """
    a, b, s = _as_float(a), _as_float(b), _as_float(scale)
    res = link.interval_curvature(a, b)
    cube = s**3
    with np.errstate(invalid="ignore"):
        moved = np.where(np.isfinite(a), a * res.d2_lower, 0.0) + np.where(np.isfinite(b), b * res.d2_upper, 0.0)
    return -res.d3_shift / cube, -(moved + 2.0 * res.d2_shift) / cube, res.d2_lower / cube, res.d2_upper / cube


def scaled_interval_slopes(link: CdfLink, a: ArrayLike, b: ArrayLike, scale: ArrayLike
                           ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """For ll = log(F(b) - F(a)), a = (lo - nu)/s, b = (hi - nu)/s: d(d ll/d nu) in s, lo and hi.

    d ll/d nu = -d_shift / s, so d/d lo = -D_a / s^2, d/d hi = -D_b / s^2 and
    d/ds = (a D_a + b D_b + d_shift) / s^2 (D_a, D_b the interval_slopes; an infinite bound adds nothing).
    """
    a, b, s = _as_float(a), _as_float(b), _as_float(scale)
    lower, upper = link.interval_slopes(a, b)
    shift = link.log_interval(a, b, order=1).d_shift
    square = s**2
    with np.errstate(invalid="ignore"):
        moved = np.where(np.isfinite(a), a * lower, 0.0) + np.where(np.isfinite(b), b * upper, 0.0)
    return (moved + shift) / square, -lower / square, -upper / square


LINKS: dict[str, Link] = {
    link.name: link for link in (IdentityLink(), LogLink(), LogitLink(), ProbitLink(), CloglogLink())
}


def get_link(name: str) -> Link:
    """The link called ``name`` (identity, log, logit, probit, cloglog)."""
    try:
        return LINKS[name]
    except KeyError:
        raise ValueError(f"unknown link {name!r}; expected one of: {', '.join(LINKS)}") from None
