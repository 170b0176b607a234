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
from scipy.special import xlogy

KNOWN = ("gaussian", "binomial", "poisson", "gamma", "ordinal")
"""Families with residuals; others get mu but missing (NaN) Pearson and deviance residuals."""


def variance(family: str, mu: np.ndarray, trials: np.ndarray | None, code_var: np.ndarray | None) -> np.ndarray:
    """Variance function at mu (response-column scale); `code_var` is the ordinal code's variance."""
    if family == "gaussian":
        return np.ones_like(mu)
    if family == "binomial":
        n = np.ones_like(mu) if trials is None else trials
        p = mu / n
        return n * p * (1.0 - p)
    if family == "poisson":
        return mu.copy()
    if family == "gamma":
        return mu**2
    if family == "ordinal" and code_var is not None:
        return code_var
    return np.full_like(mu, np.nan)


def deviance(family: str, y: np.ndarray, mu: np.ndarray, trials: np.ndarray | None, p_observed: np.ndarray | None
             ) -> np.ndarray:
    """Deviance contribution d_i of every row (>= 0); NaN for families without one."""
    if family == "gaussian":
        return (y - mu) ** 2
    if family == "binomial":
        n = np.ones_like(mu) if trials is None else trials
        return 2.0 * (xlogy(y, y / mu) + xlogy(n - y, (n - y) / (n - mu)))
    if family == "poisson":
        return 2.0 * (xlogy(y, y / mu) - (y - mu))
    if family == "gamma":
        return 2.0 * (-np.log(y / mu) + (y - mu) / mu)
    if family == "ordinal" and p_observed is not None:
        return -2.0 * np.log(p_observed)
    return np.full_like(mu, np.nan)
