"""Fast log-density kernels for the hot loop of quadrature (rows x nodes x configurations).

The family objects (mlmrun/families) are the reference implementation; the
kernels here compute the same full log density and derivatives for the most
common family/link pairs with fewer transcendental calls per element, which
is where nested quadrature spends its time (issue 4's flagship evaluates the
binary logit density at ~10^8 points per likelihood). tests/likelihood checks
them against the families.

Binomial logit with n trials: ll = y nu - n softplus(nu) + log C(n, y), with
softplus(nu) = max(nu, 0) + log(1 + exp(-|nu|)) (no cancellation), d1 = y - n expit(nu),
d2 = -n expit(nu) expit(-nu). One exp and one log per element: exp and log cost ~5 ns each
here (no SIMD exp without AVX-512), every other pass ~0.3 ns; log1p and np.where (branchy)
cost 2-3x more than log and a masked product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from mlmrun.families import Family

Kernel = Callable[..., tuple]
"""kernel(nu, order, rows) -> (ll, d1, d2) for the rows `rows` (slice or index array) of its data."""


def _rows(x: np.ndarray, ndim: int) -> np.ndarray:
    return x.reshape(x.shape[:1] + (1,) * (ndim - 1))


@dataclass(frozen=True)
class LogitCounts:
    """The data of binomial-logit rows: log f = coef + y nu - n log(1 + e^nu) (likelihood/quadrature/separable.py)."""

    y: np.ndarray
    n: np.ndarray
    coef: np.ndarray
    """log C(n, y), or the merged rows' summed coefficients."""


class BinomialLogit:
    """Kernel for binomial (or Bernoulli when trials is None) responses with the logit link.

    `constant` replaces log C(trials, y) for merged rows (rows.py), whose
    coefficient is the sum of the original rows'. `counts` lets quadrature
    use the separable form of likelihood/quadrature/separable.py instead.
    """

    def __init__(self, y: np.ndarray, trials: np.ndarray | None, constant: np.ndarray | None = None) -> None:
        y = np.asarray(y, dtype=float)
        n = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
        coef = gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0) if constant is None else constant
        self.counts = LogitCounts(y, n, np.asarray(coef, dtype=float))

    def __call__(self, nu: np.ndarray, order: int, rows: slice | np.ndarray = slice(None)) -> tuple:
        c = self.counts
        nd = nu.ndim
        yr, nr, cr = _rows(c.y[rows], nd), _rows(c.n[rows], nd), _rows(c.coef[rows], nd)
        t = np.abs(nu)
        np.negative(t, out=t)
        np.exp(t, out=t)  # exp(-|nu|) in (0, 1]: the only exp
        s = t + 1.0
        ll = np.log(s)  # log(1 + t): absolute error <= 1e-16 (log1p is ~2.5x slower)
        ll += np.maximum(nu, 0.0)  # softplus(nu)
        ll *= nr
        np.subtract(cr, ll, out=ll)
        ll += yr * nu
        if order < 1:
            return ll, None, None
        np.reciprocal(s, out=s)  # 1 / (1 + t)
        neg = nu < 0.0
        # expit(nu) = exp(min(nu, 0)) / (1 + t), and exp(min(nu, 0)) is t where nu < 0, else 1: selected by
        # multiplying with the 0/1 mask (exact: a product with 0 or 1, a sum with 0) instead of a second exp
        tn = neg * t
        p = ~neg + tn
        p *= s
        d1 = nr * p
        np.subtract(yr, d1, out=d1)
        if order < 2:
            return ll, d1, None
        t -= tn  # t where nu >= 0, else 0
        t += neg  # exp(min(-nu, 0))
        t *= s  # expit(-nu)
        t *= p
        t *= -nr
        return ll, d1, t


def binomial_logit(y: np.ndarray, trials: np.ndarray | None, constant: np.ndarray | None = None) -> Kernel:
    """Kernel for binomial (or Bernoulli when trials is None) responses with the logit link (`BinomialLogit`)."""
    return BinomialLogit(y, trials, constant)


def poisson_log(y: np.ndarray, count: np.ndarray | None = None, constant: np.ndarray | None = None) -> Kernel:
    """Kernel for Poisson counts with the log link (offsets are already in nu).

    Merged rows (rows.py) carry the summed count y, the number of rows merged
    (`count`, multiplying the mean) and the summed -log y! (`constant`).
    """
    y = np.asarray(y, dtype=float)
    cnt = np.ones_like(y) if count is None else np.asarray(count, dtype=float)
    lgy = gammaln(y + 1.0) if constant is None else -np.asarray(constant, dtype=float)

    def derivs(nu: np.ndarray, order: int, rows: slice | np.ndarray = slice(None)) -> tuple:
        nd = nu.ndim
        yr = _rows(y[rows], nd)
        mu = np.exp(nu)
        if count is not None:
            mu *= _rows(cnt[rows], nd)
        ll = yr * nu
        ll -= mu
        ll -= _rows(lgy[rows], nd)
        if order < 1:
            return ll, None, None
        d1 = yr - mu
        return ll, d1, (-mu if order >= 2 else None)

    return derivs


def merged_binomial(family: Family, y: np.ndarray, trials: np.ndarray, constant: np.ndarray) -> Kernel:
    """Any-link binomial on merged rows: the family's density with its coefficient swapped for `constant`."""
    fix = constant - (gammaln(trials + 1.0) - gammaln(y + 1.0) - gammaln(trials - y + 1.0))

    def derivs(nu: np.ndarray, order: int, rows: slice | np.ndarray = slice(None)) -> tuple:
        ll, d1, d2 = family.loglik_derivs(y[rows], nu, None, trials[rows], order)
        return (ll + _rows(fix[rows], nu.ndim), d1, d2)

    return derivs


def kernel_for(family: Family, y: np.ndarray, trials: np.ndarray | None,
               constant: np.ndarray | None = None) -> Kernel | None:
    """A fast (or merged-row) kernel for this family and link, or None to use the family object itself."""
    if family.name == "binomial" and family.link == "logit":
        return binomial_logit(y, trials, constant)
    if family.name == "poisson" and family.link == "log":
        return poisson_log(y, trials if constant is not None else None, constant)
    if family.name == "binomial" and constant is not None:
        return merged_binomial(family, y, trials, constant)
    return None
