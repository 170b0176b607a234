"""Response families: the conditional density of y given the linear predictor nu.

Each family gives the full log density (normalising constants included, so
log-likelihoods compare with other software), its first two derivatives in
``nu`` (what adaptive quadrature and Newton steps need) and its derivatives in
the family's own parameters on their natural scale (residual SD, gamma shape,
ordinal thresholds). For exact Laplace gradients, ``curvature_derivs`` adds the
third derivative in ``nu`` and the curvature's derivative in those parameters
(choice families, whose rows are coupled, refuse). Everything is vectorised over observations and over any
number of trailing quadrature-node axes of ``nu``: ``y``, ``trials`` and per-row
parameters are broadcast against ``nu`` along its first axis.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special as sc

from mlmrun.errors import DataError
from mlmrun.families.links import CdfLink, IntervalCurvature, IntervalLogProb, Link, get_link

FloatArray = NDArray[np.float64]
Derivs = tuple[FloatArray, FloatArray | None, FloatArray | None]
Curvature = tuple[FloatArray, FloatArray | None]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_SHOWN_ROWS = 5


def _rows(x: FloatArray, ndim: int) -> FloatArray:
    """View a per-row array of shape (n,) with trailing unit axes so it broadcasts against nu."""
    return x.reshape(x.shape[:1] + (1,) * (ndim - 1))


def _per_row(params: ArrayLike | None, n: int, ndim: int, what: str) -> FloatArray:
    """A per-row family parameter given as a scalar, (n,) or (n, 1), shaped to broadcast against nu."""
    if params is None:
        raise ValueError(f"{what} must be given as params")
    p = np.asarray(params, dtype=np.float64)
    if p.ndim > 0:
        p = p.reshape(-1)
    try:
        p = np.broadcast_to(p, (n,))
    except ValueError:
        raise ValueError(
            f"{what} must be a scalar or have one value per row ({n}), got shape {np.shape(params)}"
        ) from None
    return _rows(p, ndim)


def _times(w: FloatArray, v: FloatArray) -> FloatArray:
    """w * v with 0 * (+-inf) taken as 0: a zero count contributes nothing even where a term overflows."""
    with np.errstate(invalid="ignore"):
        return np.where(w == 0.0, 0.0, w * v)


def _full(x: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """x materialised with nu's shape (constant terms broadcast to every node)."""
    return x if x.shape == shape else np.array(np.broadcast_to(x, shape))


def _check(bad: NDArray[np.bool_], values: FloatArray, problem: str, label: str = "y") -> None:
    """Raise DataError naming the problem, how many rows have it and the first few of them."""
    if not bad.any():
        return
    idx = np.flatnonzero(bad)
    shown = ", ".join(f"{i} ({label}={values[i]:g})" for i in idx[:_SHOWN_ROWS])
    more = ", ..." if idx.size > _SHOWN_ROWS else ""
    raise DataError(f"{problem}: {idx.size} of {bad.size} rows do not; first rows (0-based): {shown}{more}")


def _bad_shape(what: str, must: str, shape: tuple[int, ...]) -> DataError:
    """The error for a response or trials array of the wrong shape (a caller's mistake; compile passes 1-D slices)."""
    return DataError(f"{what} must {must}, got shape {shape}")


def _not_numeric(what: str, dtype: np.dtype) -> DataError:
    """The error for a response or trials array of a non-numeric dtype (one message for both)."""
    return DataError(f"{what} must be numeric, got dtype {dtype}")


def _response(y: ArrayLike, family: str) -> FloatArray:
    """y as a 1-D float array, rejecting wrong shapes, non-numeric types and non-finite values."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise _bad_shape(f"{family} response", "be one-dimensional", arr.shape)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise _not_numeric(f"{family} response", arr.dtype)
    arr = arr.astype(np.float64)
    _check(~np.isfinite(arr), arr, f"{family} response must be finite (no NaN or inf)")
    return arr


def _is_integer(x: FloatArray) -> NDArray[np.bool_]:
    return np.equal(np.floor(x), x)


def _to_thresholds(codes: NDArray[np.intp], n_thresholds: int, at_upper: FloatArray, at_lower: FloatArray
                   ) -> FloatArray:
    """Per-row derivatives in a row's upper and lower bound spread onto the thresholds: shape nu.shape + (K-1,)."""
    k = np.arange(n_thresholds)
    node_axes = (1,) * (at_upper.ndim - 1)
    # kappa_k is the upper bound of category k and the lower bound of category k+1.
    is_upper = (codes[:, None] == k).reshape(codes.shape + node_axes + k.shape)
    is_lower = (codes[:, None] == k + 1).reshape(codes.shape + node_axes + k.shape)
    return np.where(is_upper, at_upper[..., None], 0.0) + np.where(is_lower, at_lower[..., None], 0.0)


class Family(ABC):
    """A response distribution paired with a link; immutable, compared by (name, link).

    Subclasses set ``name``, ``allowed_links`` and ``default_link``.
    """

    name: ClassVar[str]
    allowed_links: ClassVar[tuple[str, ...]]
    default_link: ClassVar[str]

    __slots__ = ("_link",)

    def __init__(self, link: str | None = None) -> None:
        link = self.default_link if link is None else link
        if link not in self.allowed_links:
            raise ValueError(
                f"link {link!r} is not available for the {self.name} family; "
                f"allowed links: {', '.join(self.allowed_links)}"
            )
        object.__setattr__(self, "_link", get_link(link))

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @property
    def link(self) -> str:
        """Name of the link function."""
        return self._link.name

    @property
    def link_function(self) -> Link:
        """The link function object (inverse link and its derivatives)."""
        return self._link

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Family) and (self.name, self.link) == (other.name, other.link)

    def __hash__(self) -> int:
        return hash((self.name, self.link))

    def n_params(self, n_categories: int | None = None) -> int:
        """Number of family parameters (0 unless overridden)."""
        return 0

    @abstractmethod
    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        """Raise DataError if ``y`` (and ``trials``) cannot come from this family.

        ``trials`` is used by the binomial family only and ignored elsewhere.
        """

    @abstractmethod
    def loglik_derivs(
        self,
        y: ArrayLike,
        nu: ArrayLike,
        params: ArrayLike | None = None,
        trials: ArrayLike | None = None,
        order: int = 2,
    ) -> Derivs:
        """(ll, d ll/d nu, d^2 ll/d nu^2), each shaped like ``nu``; derivatives above ``order`` are None.

        ``ll`` is the full log density log f(y | nu, params). ``y`` (and ``trials``,
        per-row ``params``) have shape (n,) and are broadcast along nu's first axis.
        """

    @abstractmethod
    def param_score(
        self,
        y: ArrayLike,
        nu: ArrayLike,
        params: ArrayLike | None = None,
        trials: ArrayLike | None = None,
    ) -> FloatArray:
        """d ll / d (family parameters on their natural scale), shape ``nu.shape + (n_params,)``."""

    def curvature_derivs(
        self,
        y: ArrayLike,
        nu: ArrayLike,
        params: ArrayLike | None = None,
        trials: ArrayLike | None = None,
    ) -> Curvature:
        """(d^3 ll/d nu^3 shaped like ``nu``, d(d^2 ll/d nu^2)/d params shaped ``nu.shape + (n_params,)``).

        The parameter derivatives are on the natural scale param_score uses (one
        column per parameter score column), None for a family without parameters.
        An exact Laplace gradient differentiates the curvature at the mode through
        the mode (third derivative) and in the family's own parameters.
        """
        raise NotImplementedError(f"the {self.name} family does not give third derivatives in nu (curvature_derivs)")

    def cross_derivs(
        self,
        y: ArrayLike,
        nu: ArrayLike,
        params: ArrayLike | None = None,
        trials: ArrayLike | None = None,
    ) -> FloatArray | None:
        """d^2 ll / (d nu d params): the slope in nu of param_score, shape ``nu.shape + (n_params,)``; None without
        parameters. It moves the mode with the family's parameters in an exact Laplace gradient."""
        raise NotImplementedError(f"the {self.name} family does not give d^2 ll/(d nu d params) (cross_derivs)")

    @abstractmethod
    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        """E[y | nu] for predictions (a probability for binomial, per trial)."""


class Gaussian(Family):
    """Normal response, y ~ N(g^{-1}(nu), sigma^2); the parameter is sigma (per row, for heteroscedastic models)."""

    name = "gaussian"
    allowed_links = ("identity", "log")
    default_link = "identity"
    __slots__ = ()

    def n_params(self, n_categories: int | None = None) -> int:
        return 1

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        _response(y, self.name)

    def _terms(self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None) -> tuple[FloatArray, ...]:
        nu = np.asarray(nu, dtype=np.float64)
        y = _rows(np.asarray(y, dtype=np.float64), nu.ndim)
        sigma = _per_row(params, nu.shape[0], nu.ndim, "sigma")
        return nu, y, sigma, y - self._link.inverse(nu)

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, y, sigma, resid = self._terms(y, nu, params)
        var = sigma**2
        ll = -_LOG_SQRT_2PI - np.log(sigma) - 0.5 * resid**2 / var
        if order < 1:
            return ll, None, None
        m1 = self._link.d_inverse(nu)
        d1 = resid * m1 / var
        if order < 2:
            return ll, d1, None
        d2 = (resid * self._link.d2_inverse(nu) - m1**2) / var
        return ll, d1, d2

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, y, sigma, resid = self._terms(y, nu, params)
        d_sigma = ((resid / sigma) ** 2 - 1.0) / sigma
        return _full(d_sigma, nu.shape)[..., None]

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """d3 = (r m3 - 3 m1 m2) / sigma^2, m_k the k-th derivative of the inverse link and r = y - mu.

        d2 scales as sigma^-2, so d d2 / d sigma = -2 d2 / sigma.
        """
        nu, y, sigma, resid = self._terms(y, nu, params)
        link = self._link
        m1, m2 = link.d_inverse(nu), link.d2_inverse(nu)
        var = sigma**2
        curv = (resid * m2 - m1**2) / var
        third = (resid * link.d3_inverse(nu) - 3.0 * m1 * m2) / var
        return _full(third, nu.shape), _full(-2.0 * curv / sigma, nu.shape)[..., None]

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """d1 = r m1 / sigma^2, so d d1/d sigma = -2 d1 / sigma."""
        nu, y, sigma, resid = self._terms(y, nu, params)
        return _full(-2.0 * resid * self._link.d_inverse(nu) / sigma**3, nu.shape)[..., None]

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        return self._link.inverse(nu)


class Binomial(Family):
    """Binomial count of successes out of ``trials`` (Bernoulli 0/1 when trials is None), P(success) = F(nu)."""

    name = "binomial"
    allowed_links = ("logit", "probit", "cloglog")
    default_link = "logit"
    __slots__ = ()

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        y = _response(y, self.name)
        if trials is None:
            _check((y != 0.0) & (y != 1.0), y, "binomial response without trials must be 0 or 1")
            return
        t = np.asarray(trials)
        if t.shape != y.shape:
            raise _bad_shape("binomial trials", f"have one value per row ({y.size})", t.shape)
        if not np.issubdtype(t.dtype, np.number):
            raise _not_numeric("binomial trials", t.dtype)
        t = t.astype(np.float64)
        _check(~np.isfinite(t) | ~_is_integer(t) | (t < 1.0), t, "binomial trials must be integers >= 1", "trials")
        _check(~_is_integer(y) | (y < 0.0), y, "binomial response must be non-negative integers (success counts)")
        _check(y > t, y, "binomial response must not exceed its trials")

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        link: CdfLink = self._link  # type: ignore[assignment]
        nu = np.asarray(nu, dtype=np.float64)
        y1 = np.asarray(y, dtype=np.float64)
        y = _rows(y1, nu.ndim)
        if trials is None:
            failures = 1.0 - y
            log_coef = 0.0
        else:
            t1 = np.asarray(trials, dtype=np.float64)
            failures = _rows(t1 - y1, nu.ndim)
            log_coef = _rows(sc.gammaln(t1 + 1.0) - sc.gammaln(y1 + 1.0) - sc.gammaln(t1 - y1 + 1.0), nu.ndim)
        ll = _times(y, link.log_cdf(nu)) + _times(failures, link.log_sf(nu)) + log_coef
        if order < 1:
            return ll, None, None
        d1 = _times(y, link.dlog_cdf(nu)) + _times(failures, link.dlog_sf(nu))
        if order < 2:
            return ll, d1, None
        d2 = _times(y, link.d2log_cdf(nu)) + _times(failures, link.d2log_sf(nu))
        return ll, d1, d2

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        return np.zeros(np.shape(nu) + (0,))

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """y times the third derivative of log F plus (trials - y) times that of log(1 - F); no parameters."""
        link: CdfLink = self._link  # type: ignore[assignment]
        nu = np.asarray(nu, dtype=np.float64)
        y1 = np.asarray(y, dtype=np.float64)
        t1 = np.ones_like(y1) if trials is None else np.asarray(trials, dtype=np.float64)
        third = _times(_rows(y1, nu.ndim), link.d3log_cdf(nu)) + _times(_rows(t1 - y1, nu.ndim), link.d3log_sf(nu))
        return _full(third, nu.shape), None

    def cross_derivs(self, y, nu, params=None, trials=None) -> None:
        """No parameters."""
        return None

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        return self._link.inverse(nu)


class Poisson(Family):
    """Poisson count with log mean nu (offsets are added to nu by the caller)."""

    name = "poisson"
    allowed_links = ("log",)
    default_link = "log"
    __slots__ = ()

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        y = _response(y, self.name)
        _check(~_is_integer(y) | (y < 0.0), y, "poisson response must be non-negative integers")

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu = np.asarray(nu, dtype=np.float64)
        y1 = np.asarray(y, dtype=np.float64)
        y = _rows(y1, nu.ndim)
        mu = np.exp(nu)
        ll = y * nu - mu - _rows(sc.gammaln(y1 + 1.0), nu.ndim)
        if order < 1:
            return ll, None, None
        d1 = y - mu
        return ll, d1, (-mu if order >= 2 else None)

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        return np.zeros(np.shape(nu) + (0,))

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """d3 = -exp(nu); no parameters."""
        with np.errstate(over="ignore"):
            return -np.exp(np.asarray(nu, dtype=np.float64)), None

    def cross_derivs(self, y, nu, params=None, trials=None) -> None:
        """No parameters."""
        return None

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        return np.exp(np.asarray(nu, dtype=np.float64))


class Gamma(Family):
    """Gamma response with log mean nu and shape alpha (per row): Var(y) = mu^2 / alpha."""

    name = "gamma"
    allowed_links = ("log",)
    default_link = "log"
    __slots__ = ()

    def n_params(self, n_categories: int | None = None) -> int:
        return 1

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        y = _response(y, self.name)
        _check(y <= 0.0, y, "gamma response must be strictly positive")

    def _terms(self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None) -> tuple[FloatArray, ...]:
        nu = np.asarray(nu, dtype=np.float64)
        y = _rows(np.asarray(y, dtype=np.float64), nu.ndim)
        alpha = _per_row(params, nu.shape[0], nu.ndim, "gamma shape")
        return nu, y, alpha, y * np.exp(-nu)

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, y, alpha, ratio = self._terms(y, nu, params)
        log_y = np.log(y)
        ll = alpha * (np.log(alpha) - nu - ratio) + (alpha - 1.0) * log_y - sc.gammaln(alpha)
        if order < 1:
            return ll, None, None
        d1 = alpha * (ratio - 1.0)
        return ll, d1, (-alpha * ratio if order >= 2 else None)

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, y, alpha, ratio = self._terms(y, nu, params)
        d_alpha = np.log(alpha * y) + 1.0 - nu - ratio - sc.digamma(alpha)
        return d_alpha[..., None]

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """d2 = -alpha y e^-nu, so d3 = alpha y e^-nu and d d2 / d alpha = -y e^-nu."""
        nu, y, alpha, ratio = self._terms(y, nu, params)
        return alpha * ratio, -ratio[..., None]

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """d1 = alpha (y e^-nu - 1), so d d1/d alpha = y e^-nu - 1."""
        nu, y, alpha, ratio = self._terms(y, nu, params)
        return (ratio - 1.0)[..., None]

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        return np.exp(np.asarray(nu, dtype=np.float64))


class Ordinal(Family):
    """Cumulative-link ordinal response coded 0..K-1: P(y <= k) = F(kappa_k - nu).

    The parameters are the K-1 increasing thresholds kappa, shared by all rows;
    nu carries no intercept (ordinal package / Stata ologit convention).
    """

    name = "ordinal"
    allowed_links = ("logit", "probit", "cloglog")
    default_link = "logit"
    __slots__ = ()

    def n_params(self, n_categories: int | None = None) -> int:
        if n_categories is None or n_categories < 2:
            raise ValueError(f"the ordinal family needs n_categories >= 2, got {n_categories}")
        return n_categories - 1

    def validate(self, y: ArrayLike, trials: ArrayLike | None = None) -> None:
        y = _response(y, self.name)
        _check(~_is_integer(y) | (y < 0.0), y, "ordinal response must be integer category codes 0..K-1")
        n_cat = int(y.max()) + 1 if y.size else 0
        if n_cat < 2:
            raise DataError(f"ordinal response needs at least 2 categories, found {n_cat}; check data.filter "
                            "and the column, or use another family")
        counts = np.bincount(y.astype(np.intp), minlength=n_cat)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise DataError(
                f"ordinal response codes must be 0..{n_cat - 1} with every category observed; "
                f"{empty.size} empty categor{'y' if empty.size == 1 else 'ies'}: {', '.join(map(str, empty))}; "
                "drop empty categories from `categories:` or merge them with a neighbour"
            )

    @staticmethod
    def _thresholds(params: ArrayLike | None) -> FloatArray:
        if params is None:
            raise ValueError("the ordinal family needs its thresholds as params")
        kappa = np.asarray(params, dtype=np.float64).reshape(-1)
        if kappa.size < 1 or not np.all(np.isfinite(kappa)) or np.any(np.diff(kappa) <= 0.0):
            raise ValueError(f"ordinal thresholds must be finite and strictly increasing, got {kappa}")
        return kappa

    def _bounds(
        self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray, FloatArray, FloatArray]:
        """nu, codes, thresholds and the bounds a = kappa_{y-1} - nu, b = kappa_y - nu of each row's interval."""
        nu = np.asarray(nu, dtype=np.float64)
        kappa = self._thresholds(params)
        cuts = np.concatenate(([-np.inf], kappa, [np.inf]))
        codes = np.asarray(y).astype(np.intp)
        if codes.size and (codes.min() < 0 or codes.max() > kappa.size):
            raise ValueError(f"ordinal codes must lie in 0..{kappa.size} for {kappa.size} thresholds")
        lower = _rows(cuts[codes], nu.ndim) - nu
        upper = _rows(cuts[codes + 1], nu.ndim) - nu
        return nu, codes, kappa, lower, upper

    def _interval(
        self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None, order: int
    ) -> tuple[FloatArray, NDArray[np.intp], FloatArray, IntervalLogProb]:
        """log P(y | nu) from its bounds a = kappa_{y-1} - nu, b = kappa_y - nu."""
        link: CdfLink = self._link  # type: ignore[assignment]
        nu, codes, kappa, lower, upper = self._bounds(y, nu, params)
        return nu, codes, kappa, link.log_interval(lower, upper, order)

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, _, _, res = self._interval(y, nu, params, order)
        if order < 1:
            return res.ll, None, None
        return res.ll, -res.d_shift, (res.d2_shift if order >= 2 else None)

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, codes, kappa, res = self._interval(y, nu, params, 1)
        return _to_thresholds(codes, kappa.size, res.d_upper, res.d_lower)

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """d2 = d2_shift(a, b) with a, b = kappa - nu: d3 = -d3_shift; kappa_y moves b, kappa_{y-1} moves a."""
        link: CdfLink = self._link  # type: ignore[assignment]
        nu, codes, kappa, lower, upper = self._bounds(y, nu, params)
        res: IntervalCurvature = link.interval_curvature(lower, upper)
        return -res.d3_shift, _to_thresholds(codes, kappa.size, res.d2_upper, res.d2_lower)

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """d1 = -d_shift(a, b): kappa_y moves b, kappa_{y-1} moves a (the link's interval_slopes)."""
        link: CdfLink = self._link  # type: ignore[assignment]
        nu, codes, kappa, lower, upper = self._bounds(y, nu, params)
        at_lower, at_upper = link.interval_slopes(lower, upper)
        return _to_thresholds(codes, kappa.size, -at_upper, -at_lower)

    def probabilities(self, nu: ArrayLike, params: ArrayLike) -> FloatArray:
        """P(y = k | nu) for every category k, shape ``nu.shape + (K,)``."""
        link: CdfLink = self._link  # type: ignore[assignment]
        nu = np.asarray(nu, dtype=np.float64)[..., None]
        cuts = np.concatenate(([-np.inf], self._thresholds(params), [np.inf]))
        return np.exp(link.log_interval(cuts[:-1] - nu, cuts[1:] - nu, order=0).ll)

    def mean(self, nu: ArrayLike, params: ArrayLike | None = None) -> FloatArray:
        """Expected category code sum_k k P(y = k | nu)."""
        probs = self.probabilities(nu, params)
        return probs @ np.arange(probs.shape[-1], dtype=np.float64)
