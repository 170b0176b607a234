"""Small dense symmetric positive definite matrices through LAPACK directly (potrf, potri).

numpy's cholesky and inv cost several times more than the LAPACK calls on
the matrices the likelihoods factor at every evaluation (a few to a few
dozen rows: X'V^-1X, the affine kernel's M, a single residual pattern's
covariance), and inv ignores the symmetry a Cholesky factor gives.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack


def lower_cholesky(M: np.ndarray, what: str = "matrix") -> np.ndarray:
    """Lower Cholesky factor of M (its lower triangle is read); LinAlgError naming `what` where M is not PD."""
    L, info = lapack.dpotrf(M, lower=1, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"{what} is not positive definite")
    return L


def inverse_from_cholesky(L: np.ndarray, what: str = "matrix") -> np.ndarray:
    """The symmetric inverse of L L' from its lower Cholesky factor L; LinAlgError naming `what` where L is singular."""
    inv, info = lapack.dpotri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"{what} could not be inverted")
    return np.tril(inv) + np.tril(inv, -1).T


def spd_inverse(M: np.ndarray, what: str = "matrix") -> tuple[np.ndarray, float]:
    """M^-1 and log|M| of a symmetric positive definite matrix from one Cholesky factor."""
    L = lower_cholesky(M, what)
    return inverse_from_cholesky(L, what), 2.0 * float(np.log(np.diag(L)).sum())
