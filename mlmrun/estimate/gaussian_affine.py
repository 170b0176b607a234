"""Which exact Gaussian fits may use the affine kernel (likelihood/gaussian/affine.py), and its map phi -> H.

The kernel needs the loading maps H_l to be linear in phi. That holds by
construction when sigma is profiled (phi holds relative SDs and Cholesky
factor entries), every loading is fixed, there are no structural paths (B,
Gamma) nor residual structures, covariances or log-linear SDs, there is one
residual class, and every correlation is either fixed or inside a Cholesky
block. Then, with G = blockdiag(L_l),

    H_l[rows of source m, j] = lambda_m L_l[m, j],

lambda fixed, and each entry of L_l is a Cholesky coordinate of phi (Cholesky
blocks), or sd_i C_ij with C the Cholesky factor of a fixed correlation
matrix and sd_i a plain phi coordinate (or a fixed 0). `affine_maps`
builds J = dh/dphi from that structure and confirms it against the general
pipeline (phi -> free vector -> values -> model matrices -> loading maps)
at a point with every coordinate non-zero; any departure keeps the
general path.
"""

from __future__ import annotations

import numpy as np

from mlmrun.compile.layout import level_layout, tril
from mlmrun.compile.matrices import block_L, model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.gaussian_params import GaussianParams
from mlmrun.likelihood.gaussian.affine import AffineKernel, AffineMaps, choose_kernel
from mlmrun.likelihood.gaussian.design import GaussianDesign

AFFINE_TOL = 1e-12
"""Largest relative departure of the pipeline's loading maps from J phi at the check point."""


def affine_structure(model: CompiledModel, design: GaussianDesign, params: GaussianParams, free: np.ndarray) -> bool:
    """True when, by construction, the loading maps are linear in phi (module docstring); `free` is the
    partable's free column."""
    if not (params.profile_sigma and design.levels and model.residual is None and design.residual is None
            and not design.hetero and len(design.class_rows) == 1 and not model.B_entries
            and not model.Gamma_entries and not design.gamma_cols and not model.rescov and not params.resid_chol):
        return False
    if any(kind != "sd" for kind in params.plain_kind):
        return False
    if any((free[lat.loading_rows] > 0).any() for lat in model.latent):
        return False
    in_chol = {int(j) for cb in params.chol for j in cb.corr_idx}
    return all(free[r] == 0 or int(free[r]) - 1 in in_chol for b in model.blocks for r in b.corr_rows)


def _level_jacobians(model: CompiledModel, params: GaussianParams, free: np.ndarray) -> dict[int, np.ndarray] | None:
    """Per level: dL_l/dphi (k, k, n_phi), or None where an entry of L is not linear in phi."""
    n = params.n_phi
    values = model.partable.start_values
    layout = level_layout(model)
    plain = {int(j): p for p, j in enumerate(params.plain_idx)}
    chol = {(cb.level, tuple(int(w) for w in cb.where)): cb for cb in params.chol}
    out = {lvl: np.zeros((len(m), len(m), n)) for lvl, m in layout.members.items()}
    for block, bl in zip(model.blocks, layout.blocks, strict=True):
        D = out[block.level]
        cb = chol.get((block.level, tuple(int(p) for p in bl.pos)))
        if cb is not None:
            rows, cols = tril(len(cb.where))
            D[cb.where[rows], cb.where[cols], cb.pos] = 1.0
            continue
        unit = values.copy()
        unit[block.sd_rows] = 1.0
        C, ok = block_L(block, unit)
        if not ok:
            return None
        for i, r in enumerate(block.sd_rows):
            if free[r] == 0:
                if values[r] != 0:
                    return None
                continue
            p = plain.get(int(free[r]) - 1)
            if p is None:
                return None
            D[bl.pos[i], bl.pos, p] += C[i]
    return out


def _loading_vector(model: CompiledModel, design: GaussianDesign, params: GaussianParams,
                    phi: np.ndarray) -> np.ndarray | None:
    """vec(H_1, H_2, ...) at phi through the general pipeline, or None where phi gives no valid model."""
    values = model.partable.unpack(params.free_vector(phi))
    mats = model_matrices(model, values)
    if not mats.valid:
        return None
    return np.concatenate([H.ravel() for H in design.loading_maps(params.with_factors(mats, phi))])


def affine_maps(model: CompiledModel, design: GaussianDesign, params: GaussianParams,
                free: np.ndarray) -> AffineMaps | None:
    """The map h = J phi (no offset: every entry of L is a multiple of a phi coordinate), or None where the
    structure does not give one or the pipeline departs from it at the check point."""
    dL = _level_jacobians(model, params, free)
    if dL is None:
        return None
    values = model.partable.start_values
    members = level_layout(model).members
    blocks, shapes = [], []
    for lv in design.levels:
        pos = {m: i for i, m in enumerate(members[lv.level])}
        rows = [values[model.latent[m].loading_rows][:, None, None] * dL[lv.level][pos[m]][None] for m in lv.sources]
        J_l = np.concatenate(rows) if rows else np.zeros((0, len(lv.members), params.n_phi))
        blocks.append(J_l.reshape(-1, params.n_phi))
        shapes.append((J_l.shape[0], len(lv.members)))
    J = np.concatenate(blocks)
    check = 0.3 + 0.7 * ((0.618034 * np.arange(1, params.n_phi + 1)) % 1.0)
    h = _loading_vector(model, design, params, check)
    if h is None or h.shape != (len(J),):
        return None
    if np.max(np.abs(h - J @ check), initial=0.0) > AFFINE_TOL * (1.0 + np.max(np.abs(h), initial=0.0)):
        return None
    return AffineMaps(np.zeros(len(J)), J, tuple(shapes))


def affine_kernel(model: CompiledModel, design: GaussianDesign, params: GaussianParams,
                  reml: bool) -> AffineKernel | None:
    """The affine kernel for this fit, or None where the general path must be used."""
    if params.n_phi == 0:
        return None
    free = model.partable.column("free")
    if not affine_structure(model, design, params, free):
        return None
    kernel = choose_kernel(design)
    if kernel is None:
        return None
    maps = affine_maps(model, design, params, free)
    return None if maps is None else AffineKernel(design, maps, kernel, reml)
