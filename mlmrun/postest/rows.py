"""Per-row predictions from a compiled model, its estimates and the latent variables' predictions per row.

For row i (notation of compile/model.py), with z_m(i) = Z_m[i] lambda_m:

- xb = x_i'beta + offset_i + sum_m z_m(i) (T Gamma w_i)_m: the linear predictor with every disturbance
  zeta at zero (for random-effect models, the fixed part x'beta + offset);
- eta = x_i'beta + offset_i + sum_m z_m(i) eta^_m(i), eta^ the empirical Bayes prediction of the
  latent variable for the row's unit (its prior mean T Gamma w for a unit the fit has not seen);
- mu = E[y | eta] on the scale of the response column (binomial with trials: expected count);
- mu_marginal = E[y] integrated over the latent disturbances: the random part of the row's linear
  predictor, a_i'u with u ~ N(0, I) and a_i = (Z T L)_i, is N(0, s_i^2) with s_i = |a_i|, so
  mu_marginal = integral of mean(xb + s_i t) phi(t) dt, by MARGINAL_POINTS-point Gauss-Hermite
  (for the identity link this is xb itself);
- residuals on the response scale, Pearson, deviance (residuals.py), and for gaussian equations the
  standardized residual (y - mu) / residual SD (Stata's `predict, rstandard`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from mlmrun.compile.matrices import ModelMatrices, model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.postest.residuals import GAUSSIAN, deviance, variance

MARGINAL_POINTS = 64
"""Gauss-Hermite points of the marginal mean's one-dimensional integral (exact to ~1e-12 for sd(a'u) up to ~5)."""
CHUNK_ROWS = 1 << 15


@dataclass(frozen=True)
class RowPredictions:
    """Per-row predictions, every array of length model.n."""

    xb: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    mu_marginal: np.ndarray
    resid: np.ndarray
    resid_pearson: np.ndarray
    resid_deviance: np.ndarray
    resid_standardized: np.ndarray
    """Gaussian rows: (y - mu) / residual SD; NaN on rows of other families."""


def loading_values(model: CompiledModel, mm: ModelMatrices) -> np.ndarray:
    """(n, M): z_m(i) = Z_m[i] @ lambda_m for every row and latent variable."""
    Z = np.zeros((model.n, len(model.latent)))
    for m, lat in enumerate(model.latent):
        if lat.Z.shape[1]:
            Z[:, m] = lat.Z @ mm.lambdas[m]
    return Z


def latent_maps(model: CompiledModel, mm: ModelMatrices) -> tuple[np.ndarray, np.ndarray]:
    """(T, G): T = (I - B)^-1 and G = T L (eta = T Gamma w + G u), latent variables in model order."""
    M = len(model.latent)
    L = np.zeros((M, M))
    for lvl, Ll in mm.L.items():
        members = model.latent_at(lvl)
        L[np.ix_(members, members)] = Ll
    T = mm.T if M else np.zeros((0, 0))
    return T, T @ L


def prior_means(model: CompiledModel, mm: ModelMatrices) -> np.ndarray:
    """(n, M): prior mean of every latent variable at every row, T Gamma w_i (zero without covariates)."""
    T, _ = latent_maps(model, mm)
    if not model.W.shape[1] or not len(model.latent):
        return np.zeros((model.n, len(model.latent)))
    return model.W @ (T @ mm.Gamma).T


def family_args(model: CompiledModel, mm: ModelMatrices, e: int, idx: np.ndarray) -> np.ndarray | None:
    """The family parameters of equation e on the model rows `idx` (all of them rows of that equation).

    Count, censored and composite families take per-row parameter columns (mm.family, indexed by the
    equation's own rows), ordinal models with `thresholds:`/`scale:` per-row thresholds (indexed by model
    row), plain ordinal models one threshold vector, choice families each row's choice-set code.
    """
    eq = model.equations[e]
    if eq.family_params is not None:
        at = np.empty(model.n, dtype=np.intp)
        at[eq.rows] = np.arange(len(eq.rows))
        return mm.family[e][at[idx]]
    if eq.choice is not None:
        return eq.choice.set_of_row[idx]
    t = mm.thresholds[e]
    if t is not None and eq.ordinal is not None:
        return t[idx]
    return t


def means(model: CompiledModel, mm: ModelMatrices, nu: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """E[y | nu] on the rows `idx` (nu shaped (len(idx), K)), on the response column's scale.

    Choice families: the probability that the row's alternative is chosen (first) from its whole set, so
    only for one node per row and `idx` holding whole sets; with several nodes (the marginal mean) NaN.
    """
    out = np.empty_like(nu)
    eq_of = model.eq_of_row[idx]
    for e, eq in enumerate(model.equations):
        pos = np.flatnonzero(eq_of == e)
        if not len(pos):
            continue
        params = family_args(model, mm, e, idx[pos])
        if eq.choice is not None:
            out[pos] = eq.family.mean(nu[pos, 0], params)[:, None] if nu.shape[1] == 1 else np.nan
            continue
        out[pos] = eq.family.mean(nu[pos], params)
        if eq.family.name == "binomial" and model.trials is not None:
            out[pos] *= model.trials[idx[pos]][:, None]
    return out


def marginal_means(model: CompiledModel, mm: ModelMatrices, xb: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Integral of E[y | xb + s t] over t ~ N(0, 1), per row (Gauss-Hermite, MARGINAL_POINTS points)."""
    nodes, weights = hermegauss(MARGINAL_POINTS)
    weights = weights / weights.sum()
    out = np.empty(model.n)
    for start in range(0, model.n, CHUNK_ROWS):
        idx = np.arange(start, min(start + CHUNK_ROWS, model.n))
        out[idx] = means(model, mm, xb[idx, None] + sd[idx, None] * nodes[None, :], idx) @ weights
    return out


def row_predictions(model: CompiledModel, values: np.ndarray, eta_hat: np.ndarray) -> RowPredictions:
    """Every per-row quantity of the module doc, given the latent variables' predictions per row (n, M)."""
    mm = model_matrices(model, values)
    base = model.X @ mm.beta + model.offset
    Z = loading_values(model, mm)
    _, G = latent_maps(model, mm)
    xb = base + np.einsum("im,im->i", Z, prior_means(model, mm))
    eta = base + np.where(Z != 0, Z * eta_hat, 0.0).sum(axis=1)  # NaN only where a missing EB is loaded
    random_sd = np.sqrt(np.sum((Z @ G) ** 2, axis=1)) if len(model.latent) else np.zeros(model.n)
    mu = means(model, mm, eta[:, None], np.arange(model.n))[:, 0]
    mu_marginal = marginal_means(model, mm, xb, random_sd)
    y = model.y
    resid = y - mu
    pearson = np.full(model.n, np.nan)
    dev = np.full(model.n, np.nan)
    standardized = np.full(model.n, np.nan)
    for e, eq in enumerate(model.equations):
        rows = eq.rows
        name = eq.family.name
        params = family_args(model, mm, e, rows)
        trials = model.trials[rows] if model.trials is not None and name == "binomial" else None
        extra = None
        if name == "ordinal":
            probs = eq.family.probabilities(eta[rows], params)
            codes = np.arange(probs.shape[1], dtype=float)
            extra = (probs @ codes**2 - mu[rows] ** 2, probs[np.arange(len(rows)), y[rows].astype(int)])
        elif eq.family_params is not None:
            extra = (params, eta[rows])
        if name == "censored_gaussian":
            resid[rows[params[:, 1] != params[:, 2]]] = np.nan  # a bound, not a value: no residual
        pearson[rows] = resid[rows] / np.sqrt(variance(name, mu[rows], trials, extra))
        dev[rows] = np.sign(resid[rows]) * np.sqrt(np.clip(deviance(name, y[rows], mu[rows], trials, extra), 0, None))
        if name in GAUSSIAN:
            sd = mm.scale[rows] if name == "gaussian" else params[:, 0]
            standardized[rows] = resid[rows] / sd
    return RowPredictions(xb, eta, mu, mu_marginal, resid, pearson, dev, standardized)
