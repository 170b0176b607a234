"""Count families beyond the Poisson: negative binomial (NB2, NB1) and zero-inflated counts.

Parameters come as per-row columns (families/row_params.py), on their natural
scale, like glmmTMB reports them:

- ``nbinom2``: theta (size), Var(y) = mu + mu^2 / theta;
- ``nbinom1``: phi, Var(y) = mu (1 + phi) (size mu / phi);
- ``zip``, ``zinb2``, ``zinb1``: the base family's columns, then zeta = logit P(structural zero),
  a per-row linear predictor of the spec's `zero_inflation:` formula.

All log densities are full (log y! included) so log likelihoods compare with
glmmTMB's. The mean is exp(nu) (log link, offsets already in nu).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from scipy import special as sc

from mlmrun.families.families import Derivs, Family, FloatArray, Poisson, _check, _is_integer, _response, _rows
from mlmrun.families.row_params import columns, stack


def _validate_counts(y: ArrayLike, name: str) -> None:
    y = _response(y, name)
    _check(~_is_integer(y) | (y < 0.0), y, f"{name} response must be non-negative integers (counts)")


class NegBinomial2(Family):
    """NB2 counts with log mean nu and size theta (per row)."""

    name = "nbinom2"
    allowed_links = ("log",)
    default_link = "log"
    __slots__ = ()

    def n_params(self, n_categories: int | None = None) -> int:
        return 1

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        _validate_counts(y, self.name)

    def _terms(self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None) -> tuple[FloatArray, ...]:
        nu = np.asarray(nu, dtype=np.float64)
        y = _rows(np.asarray(y, dtype=np.float64), nu.ndim)
        (theta,) = columns(params, nu.shape[0], nu.ndim, 1, self.name)
        z = nu - np.log(theta)
        return nu, y, theta, z

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, y, theta, z = self._terms(y, nu, params)
        log_p = sc.log_expit(z)  # log mu/(theta + mu)
        log_q = log_p - z  # log theta/(theta + mu)
        ll = sc.gammaln(y + theta) - sc.gammaln(theta) - sc.gammaln(y + 1.0) + theta * log_q + y * log_p
        if order < 1:
            return ll, None, None
        p, q = np.exp(log_p), np.exp(log_q)
        d1 = y * q - theta * p
        return ll, d1, (-(y + theta) * p * q if order >= 2 else None)

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, y, theta, z = self._terms(y, nu, params)
        p, q = sc.expit(z), sc.expit(-z)
        d_theta = sc.digamma(y + theta) - sc.digamma(theta) + sc.log_expit(-z) + p - y * q / theta
        return stack([d_theta], nu.shape)

    def curvature_derivs(self, y, nu, params=None, trials=None) -> tuple[FloatArray, FloatArray | None]:
        """d2 = -(y + theta) p q with p = expit(nu - log theta): d3 = d2 (q - p); theta moves z = nu - log theta by -1/theta.

        So d d2 / d theta = -d3 / theta - p q (the explicit theta of the factor y + theta).
        """
        nu, y, theta, z = self._terms(y, nu, params)
        p, q = sc.expit(z), sc.expit(-z)
        third = -(y + theta) * p * q * np.tanh(-0.5 * z)
        return third, stack([-third / theta - p * q], nu.shape)

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """d(d ll/d nu)/d theta = -d2 / theta - p (z = nu - log theta, and the explicit theta of d1 = y q - theta p)."""
        nu, y, theta, z = self._terms(y, nu, params)
        p, q = sc.expit(z), sc.expit(-z)
        return stack([(y + theta) * p * q / theta - p], nu.shape)

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        return np.exp(np.asarray(nu, dtype=np.float64))


class NegBinomial1(Family):
    """NB1 counts with log mean nu and dispersion phi (per row): Var(y) = mu (1 + phi)."""

    name = "nbinom1"
    allowed_links = ("log",)
    default_link = "log"
    __slots__ = ()

    def n_params(self, n_categories: int | None = None) -> int:
        return 1

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        _validate_counts(y, self.name)

    def _terms(self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None) -> tuple[FloatArray, ...]:
        nu = np.asarray(nu, dtype=np.float64)
        y = _rows(np.asarray(y, dtype=np.float64), nu.ndim)
        (phi,) = columns(params, nu.shape[0], nu.ndim, 1, self.name)
        k = np.exp(np.minimum(nu - np.log(phi), 700.0))  # a guard for wild Newton trials (mu/phi > 1e304)
        g = sc.digamma(y + k) - sc.digamma(k) - np.log1p(phi)
        return nu, y, phi, k, g

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, y, phi, k, g = self._terms(y, nu, params)
        ll = (sc.gammaln(y + k) - sc.gammaln(k) - sc.gammaln(y + 1.0)
              - k * np.log1p(phi) + y * (np.log(phi) - np.log1p(phi)))
        if order < 1:
            return ll, None, None
        d1 = k * g
        if order < 2:
            return ll, d1, None
        return ll, d1, d1 + k * (k * (sc.polygamma(1, y + k) - sc.polygamma(1, k)))  # k^2 alone can overflow

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, y, phi, k, g = self._terms(y, nu, params)
        d_phi = -(k / phi) * g - k / (1.0 + phi) + y / (phi * (1.0 + phi))
        return stack([d_phi], nu.shape)

    def curvature_derivs(self, y, nu, params=None, trials=None) -> tuple[FloatArray, FloatArray | None]:
        """With k = mu / phi (dk/dnu = k): d1 = k g, d2 = k g + k^2 T1, d3 = k g + 3 k^2 T1 + k^3 T2.

        T_j = psi_j(y + k) - psi_j(k). phi enters through k = exp(nu - log phi) and
        through g's -log(1 + phi): d d2 / d phi = -d3 / phi - k / (1 + phi).
        """
        nu, y, phi, k, g = self._terms(y, nu, params)
        t1 = sc.polygamma(1, y + k) - sc.polygamma(1, k)
        t2 = sc.polygamma(2, y + k) - sc.polygamma(2, k)
        third = k * g + k * (k * (3.0 * t1 + k * t2))
        return third, stack([-third / phi - k / (1.0 + phi)], nu.shape)

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """d(d ll/d nu)/d phi = -d2 / phi - k / (1 + phi) (k = exp(nu - log phi), and g's -log(1 + phi))."""
        nu, y, phi, k, g = self._terms(y, nu, params)
        curv = k * g + k * (k * (sc.polygamma(1, y + k) - sc.polygamma(1, k)))
        return stack([-curv / phi - k / (1.0 + phi)], nu.shape)

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        return np.exp(np.asarray(nu, dtype=np.float64))


class ZeroInflated(Family):
    """A count family mixed with a point mass at zero: P(0) = pi + (1 - pi) f(0), P(y > 0) = (1 - pi) f(y).

    pi = expit(zeta), zeta the last parameter column (a per-row linear
    predictor); the base family's parameter columns come first.
    """

    base: ClassVar[Family]
    allowed_links = ("log",)
    default_link = "log"
    __slots__ = ()

    def n_params(self, n_categories: int | None = None) -> int:
        return self.base.n_params() + 1

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        _validate_counts(y, self.name)

    def _split(self, nu: FloatArray, params: ArrayLike | None) -> tuple[FloatArray | None, FloatArray]:
        width = self.n_params()
        cols = columns(params, nu.shape[0], 2, width, self.name)
        zeta = cols[-1].reshape((nu.shape[0],) + (1,) * (nu.ndim - 1))
        base = None if width == 1 else np.concatenate(cols[:-1], axis=1)
        return base, zeta

    def _mix(self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None, order: int) -> tuple:
        """Base density, then on zero rows log(pi + (1 - pi) f0) = log pi + softplus(t), t = log((1 - pi) f0 / pi).

        w = (1 - pi) f0 / P(0) = expit(t) is the posterior probability that a zero came from the count part
        (1 on rows with y > 0); the zeta terms are per row, so only ll0 carries the node axes.
        """
        nu = np.asarray(nu, dtype=np.float64)
        base, zeta = self._split(nu, params)
        ll0, d1, d2 = self.base.loglik_derivs(y, nu, base, None, order)
        log_pi = sc.log_expit(zeta)
        counted = ll0 + (log_pi - zeta)
        zero = _rows(np.asarray(y, dtype=np.float64) == 0.0, nu.ndim)
        t = counted - log_pi
        ll = np.where(zero, log_pi - sc.log_expit(-t), counted)
        w = np.where(zero, sc.expit(t), 1.0)
        return nu, base, zeta, ll, d1, d2, w, zero, np.where(zero, sc.expit(-t), 0.0)

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, _, _, ll, d1, d2, w, _, _ = self._mix(y, nu, params, order)
        if order < 1:
            return ll, None, None
        with np.errstate(invalid="ignore", over="ignore"):
            g1 = w * d1
            g2 = None if order < 2 else w * (d2 + (1.0 - w) * d1**2)
        if not np.isfinite(g1).all():  # w = 0 (a zero far in the count part's tail) with d1 = inf: no contribution
            live = w > 0.0
            g1 = np.where(live, g1, 0.0)
            g2 = None if g2 is None else np.where(live, g2, 0.0)
        return ll, g1, g2

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, base, zeta, _, _, _, w, _, _ = self._mix(y, nu, params, 0)
        d_zeta = (1.0 - w) - sc.expit(zeta)
        parts = []
        if base is not None:
            bs = self.base.param_score(y, nu, base)
            parts = [w * bs[..., j] for j in range(bs.shape[-1])]
        return stack(parts + [d_zeta], nu.shape)

    def curvature_derivs(self, y, nu, params=None, trials=None) -> tuple[FloatArray, FloatArray | None]:
        """Differentiates g2 = w (d2 + v d1^2), v = 1 - w, with dw = w v dt and t = log f0 - zeta on zero rows.

        dt/dnu = d1 and dt/dzeta = -1; dt/dtheta is the base score s, and the base
        parameters also move d1 (c1 = d d1/d theta) and d2 (c2 = d d2/d theta):
        d3 = w d3_base + 3 w v d1 d2 + w v (v - w) d1^3,
        d g2/d zeta = -w v (d2 + (v - w) d1^2),
        d g2/d theta = w c2 + w v (s d2 + (v - w) s d1^2 + 2 d1 c1).
        Rows with y > 0 have w = 1 and keep the base family's derivatives.
        """
        nu, base, zeta, _, d1, d2, w, _, v = self._mix(y, nu, params, 2)
        third_base, c2 = self.base.curvature_derivs(y, nu, base)
        wv, skew = w * v, v - w
        with np.errstate(invalid="ignore", over="ignore"):
            third = w * third_base + wv * d1 * (3.0 * d2 + skew * d1**2)
            d_zeta = -wv * (d2 + skew * d1**2)
            parts = []
            if base is not None:
                s = self.base.param_score(y, nu, base)
                c1 = self.base.cross_derivs(y, nu, base)
                parts = [w * c2[..., j] + wv * (s[..., j] * (d2 + skew * d1**2) + 2.0 * d1 * c1[..., j])
                         for j in range(s.shape[-1])]
        live = w > 0.0  # w = 0 (a zero far in the count part's tail) with d1 = inf: no contribution
        cols = [np.where(live, c, 0.0) for c in parts + [d_zeta]]
        return np.where(live, third, 0.0), stack(cols, nu.shape)

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """g1 = w d1: d g1/d zeta = -w v d1 and d g1/d theta = w v s d1 + w c1 (see curvature_derivs)."""
        nu, base, zeta, _, d1, _, w, _, v = self._mix(y, nu, params, 1)
        wv = w * v
        with np.errstate(invalid="ignore", over="ignore"):
            parts = []
            if base is not None:
                s = self.base.param_score(y, nu, base)
                c1 = self.base.cross_derivs(y, nu, base)
                parts = [wv * s[..., j] * d1 + w * c1[..., j] for j in range(s.shape[-1])]
            cols = parts + [-wv * d1]
        live = w > 0.0
        return stack([np.where(live, c, 0.0) for c in cols], nu.shape)

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        nu = np.asarray(nu, dtype=np.float64)
        _, zeta = self._split(nu, params)
        return sc.expit(-zeta) * np.exp(nu)


class ZIPoisson(ZeroInflated):
    """Zero-inflated Poisson: parameter column zeta only."""

    name = "zip"
    base = Poisson()
    __slots__ = ()


class ZINegBinomial2(ZeroInflated):
    """Zero-inflated NB2: parameter columns (theta, zeta)."""

    name = "zinb2"
    base = NegBinomial2()
    __slots__ = ()


class ZINegBinomial1(ZeroInflated):
    """Zero-inflated NB1: parameter columns (phi, zeta)."""

    name = "zinb1"
    base = NegBinomial1()
    __slots__ = ()
