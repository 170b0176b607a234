"""Observed information by finite differences, and its inverse as a covariance matrix.

Shared by the exact Gaussian and the quadrature estimators. Steps: a scalar
`step` is relative, h_j = step * max(|x_j|, 1); an array gives the absolute
step of every coordinate (use it when coordinates have very different
scales). Central differences throughout, so the error is O(h^2) plus
rounding of order eps * |f| / h^2 (second differences of f) or eps * |g| / h
(differences of an analytic gradient, the more accurate choice when a
gradient exists).

`lr_p_value` is the one p-value rule of the likelihood-ratio tests of both
estimators (against the model without latent variables).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import chdtrc


def _steps(x: np.ndarray, step: float | np.ndarray) -> np.ndarray:
    if np.ndim(step) == 0:
        return float(step) * np.maximum(np.abs(x), 1.0)
    h = np.asarray(step, dtype=float)
    if h.shape != x.shape or np.any(h <= 0):
        raise ValueError("an array step must give one positive step per coordinate")
    return h


def numeric_hessian(f: Callable[[np.ndarray], float], x: np.ndarray, step: float | np.ndarray = 1e-4) -> np.ndarray:
    """Hessian of a scalar function by central second differences (1 + 2d + 2d(d-1) evaluations)."""
    x = np.asarray(x, dtype=float)
    d = len(x)
    h = _steps(x, step)
    f0 = f(x)
    H = np.zeros((d, d))
    plus, minus = np.zeros(d), np.zeros(d)
    for i in range(d):
        e = np.zeros(d)
        e[i] = h[i]
        plus[i], minus[i] = f(x + e), f(x - e)
        H[i, i] = (plus[i] - 2.0 * f0 + minus[i]) / h[i] ** 2
    for i in range(d):
        for j in range(i):
            ei, ej = np.zeros(d), np.zeros(d)
            ei[i], ej[j] = h[i], h[j]
            val = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4.0 * h[i] * h[j])
            H[i, j] = H[j, i] = val
    return H


def hessian_from_gradient(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                          step: float | np.ndarray = 1e-5) -> np.ndarray:
    """Hessian as central differences of a gradient function, symmetrised (2d gradient evaluations)."""
    x = np.asarray(x, dtype=float)
    d = len(x)
    h = _steps(x, step)
    H = np.zeros((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = h[i]
        H[:, i] = (np.asarray(grad(x + e), float) - np.asarray(grad(x - e), float)) / (2.0 * h[i])
    return 0.5 * (H + H.T)


def hessian_forward(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, g0: np.ndarray | None = None,
                    step: float = 1e-6) -> np.ndarray:
    """Hessian as forward differences of a gradient function, symmetrised (d gradients, d + 1 without g0).

    Half the cost of `hessian_from_gradient`, relative error ~sqrt(eps)-ish (1e-6): ample for standard
    errors and quasi-Newton seeds when each gradient is expensive.
    """
    x = np.asarray(x, dtype=float)
    g0 = np.asarray(grad(x) if g0 is None else g0, dtype=float)
    H = np.zeros((len(x), len(x)))
    for j in range(len(x)):
        h = step * max(1.0, abs(x[j]))
        e = np.zeros(len(x))
        e[j] = h
        H[:, j] = (np.asarray(grad(x + e), float) - g0) / h
    return 0.5 * (H + H.T)


def covariance_from_hessian(information: np.ndarray, names: list[str] | None = None,
                            rtol: float = 1e-10) -> tuple[np.ndarray | None, str | None]:
    """Invert the observed information (Hessian of the NEGATIVE log likelihood) into a covariance matrix.

    Returns (covariance, None) when the matrix is positive definite; otherwise
    (None, warning) where the warning names the direction that is flat or
    curved the wrong way, so a user can see which parameter is not identified.
    """
    H = 0.5 * (np.asarray(information, float) + np.asarray(information, float).T)
    if H.size == 0:
        return np.zeros((0, 0)), None
    if not np.all(np.isfinite(H)):
        return None, "the observed information matrix has non-finite entries; standard errors are not available"
    w, V = np.linalg.eigh(H)
    scale = max(float(np.max(np.abs(w))), 1e-300)
    if w[0] <= rtol * scale:
        worst = int(np.argmax(np.abs(V[:, 0])))
        who = names[worst] if names is not None else f"coordinate {worst}"
        return None, (f"the observed information matrix is not positive definite (smallest eigenvalue {w[0]:.3g}, "
                      f"mostly along {who}); standard errors are not available: the model may not be identified "
                      f"or the optimum was not reached")
    cov = (V / w) @ V.T
    return 0.5 * (cov + cov.T), None


LR_ZERO = 1e-6
"""LR statistics at or below this are 0: a variance estimated at its boundary leaves the two log
likelihoods equal up to optimiser and rounding noise (7e-15 seen on a Poisson fit at sd = 0)."""


def lr_p_value(statistic: float, df: int, single_variance: bool) -> float:
    """p-value of an LR statistic for latent-variable parameters, Stata's rule.

    One variance tested on the boundary of its space: the null distribution is the
    50:50 mixture of chi2(0) and chi2(1) (chi-bar-square(01)), so p = 0.5 P(chi2_1 > stat)
    for stat > 0 and p = 1 at stat = 0 (the mixture's point mass at zero; Stata's
    'Prob >= chibar2 = 1.0000'). Several parameters: P(chi2_df > stat), conservative
    because variances sit on the boundary. A statistic of 0 (up to LR_ZERO) gives 1.
    """
    stat = float(statistic)
    if not stat > LR_ZERO:
        return 1.0
    if single_variance:
        return 0.5 * float(chdtrc(1, stat))
    return float(chdtrc(int(df), stat))
