"""Ordinal equations with covariate-dependent thresholds (`thresholds:`) and a latent scale model (`scale:`).

kappa_ik = cut_k + w_i'g_k (one shift per cut point and threshold column: non-proportional
odds, clm's nominal=, gllamm's thresh()), and s_i = exp(z_i'delta) (clm's scale=), so that
P(y_i <= k) = F((kappa_ik - nu_i) / s_i). The designs have their intercept dropped (the cut
points and the unit scale play that role). Parameters are table rows named
`cutK:COLUMN` (block threshold) and `logscale:COLUMN` (block threshold, log of the latent SD).
`row_params` builds the per-row (thresholds, scale) array the OrdinalRows family reads, and
`add_row_params_gradient` is its adjoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmrun.compile.design import fixed_design, parse_formula
from mlmrun.compile.partable import ParTableBuilder
from mlmrun.errors import SpecError


@dataclass(frozen=True)
class OrdinalDesign:
    """Threshold-shift and scale designs of one ordinal equation, with their partable rows."""

    W: np.ndarray
    """(rows of the equation, p_t) threshold covariates."""
    shift_rows: np.ndarray
    """(K-1, p_t) partable rows of g_k."""
    Z: np.ndarray
    """(rows of the equation, p_s) scale covariates."""
    scale_rows: np.ndarray
    """(p_s,) partable rows of delta."""


def formula_of(text: str, k: int, key: str):
    """Parse a one-sided `thresholds:`/`scale:` formula, errors naming responses.k.key."""
    return parse_formula(text, f"responses.{k}.{key}", "one_sided")


def _design(text: str, k: int, key: str, frame: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    where = f"responses.{k}.{key}"
    S, names = fixed_design(formula_of(text, k, key), frame.iloc[rows].reset_index(drop=True), where)
    keep = [j for j, name in enumerate(names) if name != "Intercept"]
    S, names = S[:, keep], tuple(names[j] for j in keep)
    if not S.shape[1]:
        raise SpecError(f"{where}: {text!r} has no terms besides the intercept; drop `{key}:` or give it a "
                        "covariate (e.g. '~ x')")
    if np.linalg.matrix_rank(np.column_stack([np.ones(len(S)), S])) <= S.shape[1]:
        raise SpecError(f"{where}: the columns {list(names)} are collinear with the constant or each other; "
                        "write the formula with an intercept (e.g. '~ C(x)', it is dropped) and drop repeated columns")
    return S, names


def ordinal_design(eq, k: int, frame: pd.DataFrame, rows: np.ndarray, n_cuts: int, suffix: str,
                   pt: ParTableBuilder) -> OrdinalDesign:
    """Designs and partable rows for an ordinal equation's `thresholds:` and `scale:` (either may be absent)."""
    W, w_names = (_design(eq.thresholds, k, "thresholds", frame, rows) if eq.thresholds
                  else (np.zeros((len(rows), 0)), ()))
    Z, z_names = _design(eq.scale, k, "scale", frame, rows) if eq.scale else (np.zeros((len(rows), 0)), ())
    shift = np.array([[pt.add(f"cut{j + 1}:{nm}{suffix}", "threshold", value=0.0, equation=eq.name,
                              lhs=eq.name, op="|", rhs=f"t{j + 1}:{nm}") for nm in w_names]
                      for j in range(n_cuts)], dtype=int).reshape(n_cuts, len(w_names))
    scale = np.array([pt.add(f"logscale:{nm}{suffix}", "threshold", value=0.0, equation=eq.name,
                             lhs=eq.name, op="logscale", rhs=nm) for nm in z_names], dtype=int)
    return OrdinalDesign(W, shift, Z, scale)


def row_params(design: OrdinalDesign, cuts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Per row of the equation: (kappa_i1..kappa_i,K-1, s_i), and whether every row's thresholds increase."""
    kappa = cuts[None, :] + design.W @ values[design.shift_rows].T
    s = np.exp(design.Z @ values[design.scale_rows])
    ok = bool(np.all(np.diff(kappa, axis=1) > 0.0) and np.all(np.isfinite(kappa)) and np.all(np.isfinite(s))
              and np.all(s > 0.0))
    return np.column_stack([kappa, s]), ok


def add_row_params_gradient(design: OrdinalDesign, threshold_rows: np.ndarray, values: np.ndarray,
                            G: np.ndarray, g: np.ndarray) -> None:
    """Adjoint of `row_params`: add d loglik / d (cuts, shifts, log-scale coefficients) to g from G = d/d row params."""
    Gk = G[:, :-1]
    np.add.at(g, threshold_rows, Gk.sum(axis=0))
    if design.W.shape[1]:
        np.add.at(g, design.shift_rows.reshape(-1), (Gk.T @ design.W).reshape(-1))
    if design.Z.shape[1]:
        s = np.exp(design.Z @ values[design.scale_rows])
        np.add.at(g, design.scale_rows, design.Z.T @ (G[:, -1] * s))
