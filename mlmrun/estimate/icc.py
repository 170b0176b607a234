"""Intraclass correlations of random-intercept models (Stata's `estat icc`), with delta-method intervals.

For nested levels 2..L with random-intercept variances psi_2..psi_L, the ICC of
level l is the correlation of two responses that share their units at levels
l and above (Stata's labels: `school`, `class|school`):

    rho_l = (psi_l + ... + psi_L) / (psi_2 + ... + psi_L + s2)

with s2 the level-1 variance: the residual variance of a gaussian model, or the
variance of the latent response's error, pi^2/3 for logit and 1 for probit
links (binomial and ordinal). Standard errors by the delta method (numeric
derivative through the parameter table, then the covariance of the free
parameters); the 95% interval is computed on the logit scale and transformed
back, so it stays inside (0, 1), as Stata does.

Defined only where Stata defines it: one response equation, random intercepts
only (each latent variable loads with a fixed loading on the constant), one per
nested level, no structural B and no crossed levels; otherwise there is no table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import ndtri

if TYPE_CHECKING:
    from mlmrun.compile.model import CompiledModel
    from mlmrun.results import FitResult

LATENT_RESPONSE_VARIANCE = {("binomial", "logit"): np.pi**2 / 3, ("binomial", "probit"): 1.0,
                            ("ordinal", "logit"): np.pi**2 / 3, ("ordinal", "probit"): 1.0}
"""Level-1 variance on the latent-response scale (logistic: pi^2/3; standard normal: 1)."""


def _intercept_levels(model: CompiledModel) -> list[tuple[int, int]] | None:
    """(level, latent variable) of each nested level's random intercept, lowest first; None when not such a model."""
    if len(model.equations) != 1 or model.B_entries or not model.latent:
        return None
    free = model.partable.column("free")
    pairs = []
    for m, lat in enumerate(model.latent):
        if lat.Z.shape[1] != 1 or not np.all(lat.Z[:, 0] == 1.0) or np.any(free[lat.loading_rows] > 0):
            return None
        if model.levels[lat.level].crossed or len(model.latent_at(lat.level)) != 1:
            return None
        pairs.append((lat.level, m))
    return sorted(pairs)


def _level1_variance(model: CompiledModel) -> tuple[Any, str] | None:
    """values -> level-1 variance, and how it is defined; None for families without one."""
    eq = model.equations[0]
    fam = eq.family
    if fam.name == "gaussian" and fam.link == "identity":
        if eq.hetero is not None or eq.scale_rows is None or len(np.unique(eq.scale_rows)) != 1:
            return None
        row = int(eq.scale_rows[0])
        return (lambda v: float(v[row]) ** 2), "level-1 variance: the residual variance"
    const = LATENT_RESPONSE_VARIANCE.get((fam.name, fam.link))
    if const is None or (eq.ordinal is not None and eq.ordinal.Z.shape[1]):  # `scale:`: level-1 variance per row
        return None
        return None
    return (lambda v: const), f"latent-response scale: level-1 variance {'pi^2/3' if fam.link == 'logit' else '1'}"


def _jacobian(func: Any, x: np.ndarray) -> np.ndarray:
    f0 = np.asarray(func(x), float)
    jac = np.zeros((len(f0), len(x)))
    for k in range(len(x)):
        h = 1e-6 * max(1.0, abs(float(x[k])))
        up, down = x.copy(), x.copy()
        up[k] += h
        down[k] -= h
        jac[:, k] = (np.asarray(func(up)) - np.asarray(func(down))) / (2 * h)
    return jac


def icc_table(fit: FitResult, level: float = 0.95) -> list[dict[str, Any]] | None:
    """One row per level with a random intercept (highest first, as Stata): label, icc, se, ci; or None."""
    model = fit.model
    pairs = _intercept_levels(model)
    if pairs is None:
        return None
    resid = _level1_variance(model)
    if resid is None:
        return None
    s2, scale = resid
    pt = model.partable
    sd_rows = {m: int(b.sd_rows[0]) for b in model.blocks for m in b.members}
    loading_rows = {m: int(model.latent[m].loading_rows[0]) for _, m in pairs}

    def iccs(free: np.ndarray) -> np.ndarray:
        v = pt.unpack(free)
        psi = [float(v[loading_rows[m]] * v[sd_rows[m]]) ** 2 for _, m in pairs]
        total = sum(psi) + s2(v)
        return np.array([sum(psi[j:]) / total for j in range(len(pairs))])

    free = np.asarray(fit.free, float)
    est = iccs(free)
    se = np.full(len(est), np.nan)
    if fit.cov_free is not None and len(free):
        jac = _jacobian(iccs, free)
        used = np.abs(jac).sum(axis=0) > 0
        cov = np.asarray(fit.cov_free, float)[np.ix_(used, used)]
        if np.all(np.isfinite(cov)):
            se = np.sqrt(np.clip(np.einsum("ik,kl,il->i", jac[:, used], cov, jac[:, used]), 0, None))
    z = float(ndtri(0.5 + level / 2))
    rows = []
    names = [model.levels[lvl].name for lvl, _ in pairs]
    for j in reversed(range(len(pairs))):
        r, s = float(est[j]), float(se[j])
        ci = None
        if np.isfinite(s) and 0.0 < r < 1.0:
            logit, half = np.log(r / (1 - r)), z * s / (r * (1 - r))
            ci = [float(1 / (1 + np.exp(-(logit - half)))), float(1 / (1 + np.exp(-(logit + half))))]
        rows.append({"level": names[j], "label": "|".join(names[j:]), "icc": r,
                     "se": s if np.isfinite(s) else None, "ci": ci, "ci_level": level, "scale": scale})
    return rows
