"""Composite links: a mean that is a sum of inverse links of several linear predictors (gllamm's composite()).

    mu_i = g^{-1}(nu_i) + sum_k h_k^{-1}(zeta_ik),

nu the model's linear predictor (fixed part, random effects, latent
variables), zeta_k = D_k gamma_k further linear predictors with their own
formulas and links h_k (fixed effects only), given to the family as per-row
parameter columns (families/row_params.py). The application is a response
with two (or more) additive sources, such as counts from a subject-specific
process plus a background rate with its own covariates (additive excess-rate
models), which a single link cannot express.

Families: ``composite_poisson`` (columns zeta_1..zeta_K; term links log or
logit, so the mean stays positive) and ``composite_gaussian`` (sigma, then
zeta_1..zeta_K; term links log, logit or identity).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from scipy import special as sc

from mlmrun.families.counts import _validate_counts
from mlmrun.families.families import _LOG_SQRT_2PI, Curvature, Derivs, Family, FloatArray, _response, _rows
from mlmrun.families.links import Link, get_link
from mlmrun.families.row_params import columns, full, stack


class Composite(Family):
    """Base of the composite-link families: the term links are part of the family (compared and hashed with it)."""

    term_links: ClassVar[tuple[str, ...]]
    __slots__ = ("_terms",)

    def __init__(self, link: str | None = None, terms: tuple[str, ...] = ("log",)) -> None:
        super().__init__(link)
        bad = [t for t in terms if t not in self.term_links]
        if not terms or bad:
            raise ValueError(f"composite terms of the {self.name} family need links among "
                             f"{', '.join(self.term_links)}, got {list(terms)}")
        object.__setattr__(self, "_terms", tuple(get_link(t) for t in terms))

    @property
    def terms(self) -> tuple[str, ...]:
        """Links of the added linear predictors."""
        return tuple(t.name for t in self._terms)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link!r}, terms={self.terms!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Composite) and (self.name, self.link, self.terms) == (other.name, other.link, other.terms)

    def __hash__(self) -> int:
        return hash((self.name, self.link, self.terms))

    def _added(self, zetas: list[FloatArray]) -> tuple[FloatArray, list[FloatArray]]:
        """sum_k h_k^{-1}(zeta_k) and each term's derivative in its zeta."""
        links: tuple[Link, ...] = self._terms
        total = sum(t.inverse(z) for t, z in zip(links, zetas, strict=True))
        return total, [t.d_inverse(z) for t, z in zip(links, zetas, strict=True)]


class CompositePoisson(Composite):
    """Poisson counts with mean exp(nu) + sum_k h_k^{-1}(zeta_k)."""

    name = "composite_poisson"
    allowed_links = ("log",)
    default_link = "log"
    term_links = ("log", "logit")
    __slots__ = ()

    def n_params(self, n_categories: int | None = None) -> int:
        return len(self._terms)

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        _validate_counts(y, self.name)

    def _parts(self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None) -> tuple:
        """Worked in logs, log mu = logaddexp(nu, log added), so wild trial values of nu give -inf, never nan."""
        nu = np.asarray(nu, dtype=np.float64)
        y1 = np.asarray(y, dtype=np.float64)
        zetas = columns(params, nu.shape[0], nu.ndim, len(self._terms), self.name)
        added, slopes = self._added(zetas)
        with np.errstate(divide="ignore", over="ignore"):
            log_mu = np.logaddexp(nu, np.log(added))
            mu = np.exp(log_mu)
            inv_mu = np.exp(-log_mu)
        return nu, y1, _rows(y1, nu.ndim), log_mu, mu, inv_mu, slopes

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, y1, y, log_mu, mu, _, _ = self._parts(y, nu, params)
        ll = y * log_mu - mu - _rows(sc.gammaln(y1 + 1.0), nu.ndim)
        if order < 1:
            return ll, None, None
        frac = np.exp(nu - log_mu)  # exp(nu) / mu, in [0, 1]
        with np.errstate(over="ignore"):
            d1 = y * frac - np.exp(nu)
        return ll, d1, (d1 - y * frac**2 if order >= 2 else None)

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, _, y, _, _, inv_mu, slopes = self._parts(y, nu, params)
        return stack([(y * inv_mu - 1.0) * s for s in slopes], nu.shape)

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """With f = exp(nu) / mu (df/dnu = f (1 - f)): d2 = d1 - y f^2, d3 = d2 - 2 y f^2 (1 - f).

        zeta_k moves mu by its slope h_k', so df/dzeta_k = -f h_k' / mu and
        d d2/d zeta_k = -y f (1 - 2 f) h_k' / mu.
        """
        nu, _, y, log_mu, _, inv_mu, slopes = self._parts(y, nu, params)
        frac = np.exp(nu - log_mu)
        with np.errstate(over="ignore"):
            curv = y * frac - np.exp(nu) - y * frac**2
        third = curv - 2.0 * y * frac**2 * (1.0 - frac)
        return third, stack([-y * frac * (1.0 - 2.0 * frac) * inv_mu * s for s in slopes], nu.shape)

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """d1 = y f - exp(nu) with df/dzeta_k = -f h_k' / mu."""
        nu, _, y, log_mu, _, inv_mu, slopes = self._parts(y, nu, params)
        frac = np.exp(nu - log_mu)
        return stack([-y * frac * inv_mu * s for s in slopes], nu.shape)

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        nu = np.asarray(nu, dtype=np.float64)
        return np.exp(nu) + self._added(columns(params, nu.shape[0], nu.ndim, len(self._terms), self.name))[0]


class CompositeGaussian(Composite):
    """Normal response with mean g^{-1}(nu) + sum_k h_k^{-1}(zeta_k) and residual SD sigma (first column)."""

    name = "composite_gaussian"
    allowed_links = ("identity", "log")
    default_link = "identity"
    term_links = ("log", "logit", "identity")
    __slots__ = ()

    def n_params(self, n_categories: int | None = None) -> int:
        return 1 + len(self._terms)

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        _response(y, self.name)

    def _parts(self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None) -> tuple:
        nu = np.asarray(nu, dtype=np.float64)
        cols = columns(params, nu.shape[0], nu.ndim, 1 + len(self._terms), self.name)
        added, slopes = self._added(cols[1:])
        resid = _rows(np.asarray(y, dtype=np.float64), nu.ndim) - self._link.inverse(nu) - added
        return nu, cols[0], resid, slopes

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, sigma, resid, _ = self._parts(y, nu, params)
        var = sigma**2
        ll = -_LOG_SQRT_2PI - np.log(sigma) - 0.5 * resid**2 / var
        if order < 1:
            return ll, None, None
        m1 = self._link.d_inverse(nu)
        d1 = resid * m1 / var
        if order < 2:
            return ll, d1, None
        return ll, d1, (resid * self._link.d2_inverse(nu) - m1**2) / var

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, sigma, resid, slopes = self._parts(y, nu, params)
        d_sigma = ((resid / sigma) ** 2 - 1.0) / sigma
        return stack([d_sigma] + [resid / sigma**2 * s for s in slopes], nu.shape)

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """As the gaussian: d3 = (r m3 - 3 m1 m2) / sigma^2, d d2/d sigma = -2 d2 / sigma; r moves by -h_k' with zeta_k."""
        nu, sigma, resid, slopes = self._parts(y, nu, params)
        link = self._link
        m1, m2 = link.d_inverse(nu), link.d2_inverse(nu)
        var = sigma**2
        third = (resid * link.d3_inverse(nu) - 3.0 * m1 * m2) / var
        d_sigma = -2.0 * (resid * m2 - m1**2) / (var * sigma)
        return full(third, nu.shape), stack([d_sigma] + [-s * m2 / var for s in slopes], nu.shape)

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """d1 = r m1 / sigma^2: d/d sigma = -2 d1 / sigma, d/d zeta_k = -h_k' m1 / sigma^2."""
        nu, sigma, resid, slopes = self._parts(y, nu, params)
        m1 = self._link.d_inverse(nu)
        var = sigma**2
        return stack([-2.0 * resid * m1 / (var * sigma)] + [-s * m1 / var for s in slopes], nu.shape)

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        nu = np.asarray(nu, dtype=np.float64)
        cols = columns(params, nu.shape[0], nu.ndim, 1 + len(self._terms), self.name)
        return self._link.inverse(nu) + self._added(cols[1:])[0]
