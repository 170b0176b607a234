"""Wald chi2 test of the fixed part: all fixed effects but the constant are zero (Stata's header line).

chi2 = b' V^-1 b over the free fixed effects other than the intercept, V their
covariance as the SEs use it (robust when the vce is robust; on the exact
Gaussian path the GLS covariance), df their number (the rank of V when
constraints make it singular), p = P(chi2_df > chi2). With robust SEs the
statistic from the model-based covariance is recorded too: Stata's xtmixed
(version 12) printed that one, its successor mixed prints the robust one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import chdtrc

from mlmrun.results import FitResult

CONSTANT = "Intercept"


def _tested(fit: FitResult) -> np.ndarray:
    """Positions in model.beta_rows of the free fixed effects other than the constant."""
    model = fit.model
    free = model.partable.column("free")[model.beta_rows]
    return np.array([j for j, name in enumerate(model.x_names) if name != CONSTANT and free[j] > 0], dtype=int)


def fixed_covariance(fit: FitResult) -> np.ndarray | None:
    """Covariance of all fixed effects (beta_rows order): the exact path's GLS one, else J cov_free J'."""
    model = fit.model
    k = len(model.beta_rows)
    vcov = fit.extras.get("fixed_vcov")
    if vcov is not None and np.shape(vcov) == (k, k):
        return np.asarray(vcov, dtype=float)
    if fit.cov_free is None:
        return None
    J = model.partable.jacobian(fit.free)[model.beta_rows]
    return J @ fit.cov_free @ J.T


def _statistic(b: np.ndarray, V: np.ndarray) -> tuple[float, int] | None:
    if not np.all(np.isfinite(V)):
        return None
    w, U = np.linalg.eigh(0.5 * (V + V.T))
    keep = w > 1e-12 * max(float(np.max(np.abs(w), initial=0.0)), 1e-300)
    if not keep.any():
        return None
    proj = U[:, keep].T @ b
    return float(np.sum(proj * proj / w[keep])), int(keep.sum())


def wald_test(fit: FitResult) -> dict[str, Any] | None:
    """{chi2, df, p, vce[, chi2_model_based, p_model_based]}, or None when no fixed effect besides the
    constant is free or no covariance is available."""
    idx = _tested(fit)
    V = fixed_covariance(fit)
    if not len(idx) or V is None:
        return None
    b = fit.values[fit.model.beta_rows][idx]
    got = _statistic(b, V[np.ix_(idx, idx)])
    if got is None:
        return None
    chi2, df = got
    vce = fit.extras.get("vce", {}).get("type", "oim")
    out: dict[str, Any] = {"chi2": chi2, "df": df, "p": float(chdtrc(df, chi2)), "vce": vce}
    model_cov = fit.extras.get("fixed_vcov_model")
    if vce == "robust" and model_cov is not None:
        other = _statistic(b, np.asarray(model_cov)[np.ix_(idx, idx)])
        if other is not None:
            out["chi2_model_based"], out["p_model_based"] = other[0], float(chdtrc(other[1], other[0]))
    return out
