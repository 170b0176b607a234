"""The null model of the LR test "against the model without random effects", shared by every engine.

Switching the latent disturbances off (zeta = 0) does not switch off the
covariates that enter through the structural model: with eta = B eta + Gamma w
+ zeta, the latent variables keep the mean T Gamma w (T = (I - B)^-1), so row i
keeps sum_m z_m(i) (T Gamma w_i)_m in its linear predictor. The null model
therefore keeps the fixed part, the family parameters, Gamma and the loadings
and B elements on a path from Gamma (hsb82's means-as-outcomes model: the null
is the regression of mAch on meanses, chibar2(01) = 237.27, not chi2(2) against
the intercept-only regression). Only the remaining latent parameters (SDs,
correlations, loadings and B elements of variables without a mean) are tested.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from mlmrun.compile.matrices import model_matrices
from mlmrun.compile.model import CompiledModel

FAMILY_BLOCKS = ("fixed", "threshold", "residual", "hetero", "shape", "dispersion", "zeroinfl", "composite")
"""Blocks of the null model's own parameters: the fixed part and every family parameter."""
LATENT_BLOCKS = ("sd", "corr", "loading", "B", "Gamma")


def mean_path(model: CompiledModel) -> set[int]:
    """Latent variables with a nonzero mean: Gamma targets and those regressed on them through B."""
    path = {m for m, _, _ in model.Gamma_entries}
    grown = True
    while grown:
        grown = False
        for m, k, _ in model.B_entries:
            if k in path and m not in path:
                path.add(m)
                grown = True
    return path


def null_rows(model: CompiledModel) -> np.ndarray:
    """Per partable row: True when the row is a parameter of the null model (kept, not tested)."""
    pt = model.partable
    blocks = pt.column("block")
    keep = np.isin(blocks, FAMILY_BLOCKS)
    path = mean_path(model)
    for _, _, row in model.Gamma_entries:
        keep[row] = True
    for _, k, row in model.B_entries:
        if k in path:
            keep[row] = True
    for m in path:
        keep[model.latent[m].loading_rows] = True
    return keep


def tested_free(model: CompiledModel) -> tuple[list[int], bool]:
    """Free coordinates (0-based) that the LR test sets aside, and whether they are one SD alone.

    One SD alone gives Stata's chibar2(01); anything else the conservative chi2(df).
    """
    kept = null_rows(model)
    free = model.partable.column("free")
    blocks = model.partable.column("block")
    tested = sorted({int(k) - 1 for k, b, keep in zip(free, blocks, kept, strict=True)
                     if k > 0 and not keep and b in LATENT_BLOCKS})
    tested_blocks = {b for k, b in zip(free, blocks, strict=True) if int(k) - 1 in tested}
    return tested, len(tested) == 1 and tested_blocks == {"sd"}


def null_free_mask(model: CompiledModel) -> np.ndarray:
    """Per free coordinate: True when the null model estimates it (the quadrature engine's GLM fit)."""
    pt = model.partable
    mask = np.zeros(pt.n_free, dtype=bool)
    for k, keep in zip(pt.column("free"), null_rows(model), strict=True):
        if k > 0 and keep:
            mask[int(k) - 1] = True
    return mask


def gamma_columns(model: CompiledModel, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(columns, shift) of the Gamma mean term at the loadings and B in `values`.

    One column per free Gamma coordinate (equal entries summed), d nu / d gamma
    = z_(.)(i) T[:, m] w_c(i); fixed Gamma entries go into `shift`, a known offset.
    """
    mm = model_matrices(model, values)
    n, M = model.n, len(model.latent)
    Z = np.zeros((n, M))
    for m, lat in enumerate(model.latent):
        if lat.Z.shape[1]:
            Z[:, m] = lat.Z @ mm.lambdas[m]
    ZT = Z @ mm.T if M else Z
    free = model.partable.column("free")
    coords = sorted({int(free[row]) for _, _, row in model.Gamma_entries if free[row] > 0})
    cols = np.zeros((n, len(coords)))
    shift = np.zeros(n)
    for m, c, row in model.Gamma_entries:
        col = ZT[:, m] * model.W[:, c]
        if free[row] > 0:
            cols[:, coords.index(int(free[row]))] += col
        else:
            shift += values[row] * col
    return cols, shift


def gaussian_null_loglik(model: CompiledModel, values: np.ndarray, reml: bool) -> float:
    """(Restricted) log likelihood of the linear Gaussian null model (regression incl. the Gamma covariates).

    Linear in beta and Gamma at given loadings and B; free loadings and B
    elements on the mean path (rare) are found by an outer numerical search
    started at `values` (the full model's estimates).
    """
    from mlmrun.likelihood.gaussian.deviance import regression_loglik

    if not model.Gamma_entries:
        return regression_loglik(model, reml=reml)
    pt = model.partable
    free = pt.column("free")
    blocks = pt.column("block")
    kept = null_rows(model)
    outer = sorted({int(k) - 1 for k, b, keep in zip(free, blocks, kept, strict=True)
                    if k > 0 and keep and b in ("loading", "B")})
    base = pt.pack(np.asarray(values, float))

    def loglik(theta: np.ndarray) -> float:
        x = base.copy()
        x[outer] = theta
        return regression_loglik(model, reml=reml, extra=gamma_columns(model, pt.unpack(x)))

    if not outer:
        return loglik(np.zeros(0))
    res = optimize.minimize(lambda t: -loglik(t), base[outer], method="BFGS", options={"gtol": 1e-8})
    return float(max(-res.fun, loglik(base[outer])))
