"""Checks of a model the moments engine fits, made before optimising (validate runs them too).

- residual covariances and `meanstructure: false` need the moments engine: a
  model it cannot fit is refused with the reason;
- each residual-covariance item must be one row design (one item of the engine);
- `meanstructure: false` needs complete data and a fixed part that saturates the item means;
- local identification: the Jacobian of the implied means and covariances in the
  free parameters must have full column rank at a generic point (random values),
  else the parameters in its null space are named.
"""

from __future__ import annotations

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.errors import IdentificationError, Loc, SpecError
from mlmrun.likelihood.moments.data import MomentsData, moments_data
from mlmrun.likelihood.moments.likelihood import MomentsModel


def needs_moments(model: CompiledModel) -> bool:
    """True when the spec asks for something only the moments engine fits."""
    return bool(model.rescov) or not model.spec.estimation.meanstructure


def plan_moments(model: CompiledModel, identify: bool = True) -> MomentsData | None:
    """The moments data when the engine applies (after every check), None when the exact engine fits the model.

    `identify=False` skips the rank check (estimate(): preflight, which validate and fit run, made it).
    """
    data = moments_data(model)
    if isinstance(data, str):
        if model.rescov:
            raise SpecError.at(("residual_covariances",), f"residual covariances are fitted by the moments engine, "
                                                          f"which cannot fit this model: {data}; drop "
                                                          "`residual_covariances:` or simplify the model")
        if not model.spec.estimation.meanstructure:
            raise SpecError.at(("estimation", "meanstructure"), f"`meanstructure: false` needs the moments engine, "
                                                                f"which cannot fit this model: {data}; drop it")
        return None
    _check_rescov_items(model, data)
    if not model.spec.estimation.meanstructure:
        saturated_means(model, data)
    if identify:
        check_identified(model, data)
    return data


def _check_rescov_items(model: CompiledModel, data: MomentsData) -> None:
    labels = data.design.labels
    for j, (a, b, _) in enumerate(model.rescov):
        for item in (a, b):
            name = model.item_labels[item]
            if sum(1 for lab in labels if lab == name or lab.startswith(name + "#")) != 1:
                raise SpecError.at(("residual_covariances", "pairs", j), f"rows of item '{name}' differ in design "
                                                                        "(fixed part, loadings or residual SD), so it "
                                                                        "is not one response per unit; give its rows one design")


def saturated_means(model: CompiledModel, data: MomentsData) -> np.ndarray:
    """`meanstructure: false`: beta that makes the implied means the sample means (complete data only)."""
    where: Loc = ("estimation", "meanstructure")
    if not data.complete:
        raise SpecError.at(where, f"`meanstructure: false` needs complete data, and {len(data.patterns)} patterns of "
                                  "missing responses occur; drop it (the means are then estimated by full-information ML)")
    X = data.design.X
    free = model.partable.frame["free"].to_numpy()[model.beta_rows]
    if X.shape[1] != data.p or np.linalg.matrix_rank(X) < data.p or (free == 0).any():
        raise SpecError.at(where, "`meanstructure: false` leaves the item means at the sample means, which needs a "
                                  "fixed part with one free mean per item; write the fixed part as '~ 0 + C(ITEM)' "
                                  "or drop `meanstructure: false`")
    return np.linalg.solve(X, data.patterns[0].mean - data.design.offset)


def generic_point(mm: MomentsModel, seed: int = 7) -> np.ndarray:
    """Random coordinates away from special values (0 correlations, B = 0), for the rank check."""
    rng = np.random.default_rng(seed)
    theta = np.zeros(mm.n_theta)
    for r in mm.free_rows:
        k = mm.free[r] - 1
        tag = mm.row_kind(int(r))
        theta[k] = {"corr": rng.uniform(-0.3, 0.3), "lcov": rng.uniform(-0.3, 0.3), "rescov": rng.uniform(-0.2, 0.2), "B": rng.uniform(0.1, 0.4),
                    "beta": rng.uniform(-1, 1)}.get(tag, rng.uniform(0.6, 1.4))
    return theta


def check_identified(model: CompiledModel, data: MomentsData) -> None:
    """Refuse a model whose free parameters do not all move the implied moments (local identification)."""
    mm = MomentsModel(model, data)
    active = active_coordinates(model, mm)
    if not active.any():
        return
    theta = generic_point(mm)
    dmu, dS = mm.derivatives(theta)
    rows, cols = np.tril_indices(mm.p)
    J = np.concatenate([dmu, dS[:, rows, cols]], axis=1)[active]
    scale = np.maximum(np.abs(J).max(axis=1, keepdims=True), 1e-300)
    s, vt = np.linalg.svd((J / scale).T)[1:]
    if np.sum(s > 1e-8 * s[0]) == len(J):
        return
    null = vt[-1]
    names = model.partable.free_names()
    idx = np.flatnonzero(active)
    involved = [names[idx[j]] for j in np.argsort(-np.abs(null)) if abs(null[j]) > 1e-3][:6]
    rescov = {str(model.partable.names[r]) for _, _, r in model.rescov}
    where: Loc = ("residual_covariances",) if rescov & set(involved) else ("latent",) if model.spec.latent else ()
    raise IdentificationError.at(where, f"the model is not identified: {involved} can change together without "
                                        "changing the implied means and covariances of the items; fix one of them "
                                        "(constraints.fix) or drop a residual covariance or loading")


def active_coordinates(model: CompiledModel, mm: MomentsModel) -> np.ndarray:
    """Coordinates the optimiser moves: all, except the item means under `meanstructure: false`."""
    active = np.ones(mm.n_theta, dtype=bool)
    if not model.spec.estimation.meanstructure:
        free = model.partable.frame["free"].to_numpy()
        active[free[model.beta_rows] - 1] = False
    return active
