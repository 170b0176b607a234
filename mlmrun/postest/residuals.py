"""Family variance functions and deviance contributions, for Pearson and deviance residuals.

Conventions are R's `residuals(type = 'pearson' / 'deviance')`: the variance
function without the dispersion (gaussian 1, gamma mu^2), counts on the scale
of the response column (binomial with trials: n p (1 - p)), and the deviance
d_i = 2 (log f(y | saturated) - log f(y | mu)), residual sign(y - mu) sqrt(d_i).
Ordinal responses are category codes 0..K-1: mu is the expected code, the
variance that of the code, and d_i = -2 log P(y_i).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, xlogy

KNOWN = ("gaussian", "binomial", "poisson", "gamma", "ordinal", "nbinom2", "nbinom1", "zip", "zinb2", "zinb1",
         "censored_gaussian", "composite_poisson", "composite_gaussian", "multinomial")
"""Families with Pearson residuals; others (ranking) get mu but missing (NaN) Pearson and deviance residuals.

Deviance residuals are NaN for nbinom1 and the zero-inflated families (no saturated model in R's sense) and
for multinomial rows; censored gaussian rows observed only as an interval have no residual at all.
"""

GAUSSIAN = ("gaussian", "censored_gaussian", "composite_gaussian")
"""Families with a residual SD, hence a standardized residual."""

Extra = tuple[np.ndarray, np.ndarray] | None
"""Ordinal: (variance of the code, P(observed category)); count/censored/composite families: (their per-row
parameter columns, nu); None otherwise."""


def _count_variance(family: str, mu_c: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Variance of the count part (no zero inflation) with mean mu_c."""
    if family in ("nbinom2", "zinb2"):
        return mu_c + mu_c**2 / params[:, 0]
    if family in ("nbinom1", "zinb1"):
        return mu_c * (1.0 + params[:, 0])
    return mu_c.copy()


def variance(family: str, mu: np.ndarray, trials: np.ndarray | None, extra: Extra) -> np.ndarray:
    """Variance function at mu (response-column scale), see Extra for what each family needs."""
    if family in ("gaussian", "censored_gaussian", "composite_gaussian"):
        return np.ones_like(mu)
    if family == "binomial":
        n = np.ones_like(mu) if trials is None else trials
        p = mu / n
        return n * p * (1.0 - p)
    if family in ("poisson", "composite_poisson"):
        return mu.copy()
    if family == "gamma":
        return mu**2
    if family == "multinomial":
        return mu * (1.0 - mu)
    if extra is None:
        return np.full_like(mu, np.nan)
    if family == "ordinal":
        return extra[0]
    if family in ("nbinom2", "nbinom1"):
        return _count_variance(family, mu, extra[0])
    if family in ("zip", "zinb2", "zinb1"):
        params, nu = extra
        mu_c = np.exp(nu)
        keep = expit(-params[:, -1])  # 1 - P(structural zero)
        return keep * (_count_variance(family, mu_c, params) + mu_c**2) - mu**2
    return np.full_like(mu, np.nan)


def deviance(family: str, y: np.ndarray, mu: np.ndarray, trials: np.ndarray | None, extra: Extra) -> np.ndarray:
    """Deviance contribution d_i of every row (>= 0); NaN for families without one."""
    if family in ("gaussian", "censored_gaussian", "composite_gaussian"):
        return (y - mu) ** 2
    if family == "binomial":
        n = np.ones_like(mu) if trials is None else trials
        return 2.0 * (xlogy(y, y / mu) + xlogy(n - y, (n - y) / (n - mu)))
    if family in ("poisson", "composite_poisson"):
        return 2.0 * (xlogy(y, y / mu) - (y - mu))
    if family == "gamma":
        return 2.0 * (-np.log(y / mu) + (y - mu) / mu)
    if family == "ordinal" and extra is not None:
        return -2.0 * np.log(extra[1])
    if family == "nbinom2" and extra is not None:
        theta = extra[0][:, 0]
        return 2.0 * (xlogy(y, y / mu) - (y + theta) * np.log((y + theta) / (mu + theta)))
    return np.full_like(mu, np.nan)
