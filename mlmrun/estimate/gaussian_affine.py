"""Which exact Gaussian fits may use the affine kernel (likelihood/gaussian/affine.py), and its map phi -> H.

The kernel needs the loading maps H_l to be affine in phi. That holds by
construction when sigma is profiled (phi holds relative SDs and Cholesky
factor entries, which are entries of L), every loading is fixed, there are
no structural paths (B, Gamma) nor residual structures, covariances or
log-linear SDs, one residual class, and every correlation is either fixed
or part of a Cholesky block: then H_l = lambda_m L[m, members] with fixed
lambda and L's entries linear in phi. `affine_kernel` checks that
structure, takes the map (h0, J) from the general pipeline (phi -> free
vector -> values -> model matrices -> loading maps) at phi = 0 and the unit
vectors, and confirms it at a further point; anything else keeps the
general path.
"""

from __future__ import annotations

import numpy as np

from mlmrun.compile.matrices import model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.gaussian_params import GaussianParams
from mlmrun.likelihood.gaussian.affine import AffineKernel, AffineMaps, choose_kernel
from mlmrun.likelihood.gaussian.design import GaussianDesign

AFFINE_TOL = 1e-12
"""Largest relative departure of the pipeline's loading maps from the affine map at the check point."""


def affine_structure(model: CompiledModel, design: GaussianDesign, params: GaussianParams) -> bool:
    """True when, by construction, the loading maps are affine in phi (module docstring)."""
    if not (params.profile_sigma and design.levels and model.residual is None and design.residual is None
            and not design.hetero and len(design.class_rows) == 1 and not model.B_entries
            and not model.Gamma_entries and not design.gamma_cols and not model.rescov and not params.resid_chol):
        return False
    pt = model.partable
    free = pt.frame["free"].to_numpy()
    transform = pt.frame["transform"].to_numpy()
    if any((free[lat.loading_rows] > 0).any() for lat in model.latent):
        return False
    if any(kind != "sd" for kind in params.plain_kind):
        return False
    plain = set(int(j) for j in params.plain_idx)
    for r in range(len(free)):
        if free[r] > 0 and int(free[r]) - 1 in plain and transform[r] != "identity":
            return False
    in_chol = {int(j) for cb in params.chol for j in cb.corr_idx}
    return all(free[r] == 0 or int(free[r]) - 1 in in_chol for b in model.blocks for r in b.corr_rows)


def _loading_vector(model: CompiledModel, design: GaussianDesign, params: GaussianParams,
                    phi: np.ndarray) -> np.ndarray | None:
    """vec(H_1, H_2, ...) at phi through the general pipeline, or None where phi gives no valid model."""
    values = model.partable.unpack(params.free_vector(phi))
    mats = model_matrices(model, values)
    if not mats.valid:
        return None
    return np.concatenate([H.ravel() for H in design.loading_maps(params.with_factors(mats, phi))])


def affine_maps(model: CompiledModel, design: GaussianDesign, params: GaussianParams) -> AffineMaps | None:
    """(h0, J) with vec(H) = h0 + J phi, or None where the pipeline departs from it at the check point."""
    n = params.n_phi
    h0 = _loading_vector(model, design, params, np.zeros(n))
    if h0 is None:
        return None
    J = np.zeros((len(h0), n))
    for j in range(n):
        h = _loading_vector(model, design, params, np.eye(n)[j])
        if h is None:
            return None
        J[:, j] = h - h0
    check = 0.3 + 0.7 * ((0.618034 * np.arange(1, n + 1)) % 1.0)
    h = _loading_vector(model, design, params, check)
    if h is None or np.max(np.abs(h - h0 - J @ check), initial=0.0) > AFFINE_TOL * (1.0 + np.max(np.abs(h), initial=0.0)):
        return None
    shapes = tuple((lv.xi.shape[1], len(lv.members)) for lv in design.levels)
    return AffineMaps(h0, J, shapes)


def affine_kernel(model: CompiledModel, design: GaussianDesign, params: GaussianParams,
                  reml: bool) -> AffineKernel | None:
    """The affine kernel for this fit, or None where the general path must be used."""
    if params.n_phi == 0 or not affine_structure(model, design, params):
        return None
    kernel = choose_kernel(design)
    if kernel is None:
        return None
    maps = affine_maps(model, design, params)
    return None if maps is None else AffineKernel(design, maps, kernel, reml)
