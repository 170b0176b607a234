"""Test helpers for the Laplace engine: small crossed data, compiling without fit's preflight, a dense reference.

The dense reference is independent of mlmrun.likelihood.laplace: it stacks
every unit's random effects into one dense design A (n x q) from the loading
designs and each level's Cholesky factor, finds the joint mode of
sum_i log f(y_i | nu_i) - u'u/2 with scipy's trust-region Newton, and takes
log det(I + A'WA) by slogdet. The row log densities are the families' own
(tested against closed forms in tests/families).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

from mlmrun.compile import compile_model
from mlmrun.compile.matrices import model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.compile.spec_checks import check_spec
from mlmrun.data.load import load_data
from mlmrun.spec.loader import load_spec

HEADER = "# yaml-language-server: $schema=../schemas/mlmrun.schema.json\n"


def crossed_frame(seed: int = 3, persons: int = 24, items: int = 7, per_person: int = 5) -> pd.DataFrame:
    """Persons answering a random subset of items (partially crossed), with a response column for every family."""
    rng = np.random.default_rng(seed)
    person = np.repeat(np.arange(persons), per_person)
    item = np.concatenate([rng.choice(items, per_person, replace=False) for _ in range(persons)])
    n = len(person)
    x = rng.normal(size=n)
    w = rng.normal(size=n)
    eta = 0.2 + 0.6 * x + rng.normal(size=persons)[person] * (1 + 0.3 * w) + 0.7 * rng.normal(size=items)[item]
    p = 1 / (1 + np.exp(-eta))
    ntr = rng.integers(1, 6, size=n)
    cats = np.clip(np.round(eta + rng.logistic(size=n) * 0.7 + 1.5), 0, 3).astype(int)
    cats[:4] = [0, 1, 2, 3]
    grp = np.arange(n) % 2
    return pd.DataFrame({
        "person": person, "item": np.array(list("abcdefghij"))[item], "rater": rng.integers(0, 4, size=n), "x": x, "w": w,
        "ybin": (rng.uniform(size=n) < p).astype(int), "ysucc": rng.binomial(ntr, p), "ntr": ntr,
        "expo": rng.uniform(0.5, 2.0, size=n), "ycount": rng.poisson(np.exp(0.3 * eta)),
        "yg": eta + rng.normal(size=n), "ypos": rng.gamma(2.0, np.exp(0.3 * eta) / 2.0), "yord": cats,
        "grp": grp, "ymix": np.where(grp == 0, eta + rng.normal(size=n), (rng.uniform(size=n) < p).astype(float)),
    })


def compile_spec(folder: Path, body: str, name: str, frame: pd.DataFrame | None = None) -> CompiledModel:
    """Compile a spec over `frame` (default: crossed_frame()) written into `folder`; no fit preflight (which
    refuses crossed non-gaussian models under quadrature: routing to the Laplace engine is the driver's)."""
    data = folder / "data"
    data.mkdir(exist_ok=True)
    csv = data / f"{name}.csv"
    (crossed_frame() if frame is None else frame).to_csv(csv, index=False)
    path = folder / f"{name}.yaml"
    path.write_text(HEADER + f"name: {name}\ndata: {{path: data/{name}.csv}}\n{body}\n"
                    "estimation: {exact: false, integration: {method: laplace}}\n")
    spec, _ = load_spec(path)
    check_spec(spec)
    return compile_model(spec, load_data(spec.data, folder))


def random_values(model: CompiledModel, seed: int) -> np.ndarray:
    """Valid random natural parameter values (all partable rows)."""
    rng = np.random.default_rng(seed)
    pt = model.partable
    values = pt.start_values
    frame = pt.frame
    for i, block in enumerate(frame["block"]):
        if frame.at[i, "free"]:
            values[i] = {"fixed": rng.normal(0, 0.5), "sd": rng.uniform(0.4, 1.2), "corr": rng.uniform(-0.5, 0.5),
                         "residual": rng.uniform(0.5, 1.5), "shape": rng.uniform(1.0, 3.0),
                         "loading": rng.uniform(0.5, 1.5), "threshold": 0.0}.get(block, rng.uniform(0.3, 0.8))
    cuts = pt.rows_of("threshold")
    if len(cuts):
        values[cuts] = np.sort(rng.normal(0, 1, len(cuts))) + np.arange(len(cuts))
    return values


def dense_design(model: CompiledModel, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """(fixed part per row, dense A, [(level, first column, k)]) for models without B and Gamma."""
    assert not model.B_entries and not model.Gamma_entries
    mm = model_matrices(model, values)
    n = model.n
    fixed = model.X @ mm.beta + model.offset
    cols, blocks, start = [], [], 0
    for lvl in sorted({lat.level for lat in model.latent}):
        members = model.latent_at(lvl)
        z = np.column_stack([model.latent[m].Z @ mm.lambdas[m] for m in members])
        load = z @ mm.L[lvl]
        level = model.levels[lvl]
        k = len(members)
        block = np.zeros((n, level.n_units * k))
        for j in range(k):
            block[np.arange(n), level.codes * k + j] = load[:, j]
        cols.append(block)
        blocks.append((lvl, start, k))
        start += level.n_units * k
    return fixed, np.concatenate(cols, axis=1), blocks


def _family_params(model: CompiledModel, mm, e: int):
    eq = model.equations[e]
    if eq.ordinal is not None:
        return mm.thresholds[e][eq.rows]
    if eq.threshold_rows is not None:
        return mm.thresholds[e]
    if eq.scale_rows is not None:
        return mm.scale[eq.rows]
    if eq.family_params is not None:
        return mm.family[e]
    return None


def row_derivs(model: CompiledModel, values: np.ndarray, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ll, ll', ll'' per row from each equation's family (weighted by the row weights)."""
    mm = model_matrices(model, values)
    out = [np.zeros(model.n) for _ in range(3)]
    for e, eq in enumerate(model.equations):
        trials = None if model.trials is None else model.trials[eq.rows]
        parts = eq.family.loglik_derivs(model.y[eq.rows], nu[eq.rows], _family_params(model, mm, e), trials, 2)
        for store, part in zip(out, parts, strict=True):
            store[eq.rows] = part
    if model.weighting is not None and model.weighting.row is not None:
        out = [x * model.weighting.row for x in out]
    return out[0], out[1], out[2]


def dense_laplace(model: CompiledModel, values: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(Laplace log likelihood, joint mode u, (I + A'WA)^-1) by dense linear algebra."""
    fixed, A, _ = dense_design(model, values)
    q = A.shape[1]

    def neg(u: np.ndarray) -> float:
        return -float(row_derivs(model, values, fixed + A @ u)[0].sum() - 0.5 * u @ u)

    def grad(u: np.ndarray) -> np.ndarray:
        return -(A.T @ row_derivs(model, values, fixed + A @ u)[1] - u)

    def hess(u: np.ndarray) -> np.ndarray:
        return np.eye(q) + A.T @ (-row_derivs(model, values, fixed + A @ u)[2][:, None] * A)

    res = optimize.minimize(neg, np.zeros(q), jac=grad, hess=hess, method="trust-exact", options={"gtol": 1e-12})
    u = res.x
    for _ in range(3):  # polish to machine precision
        u = u - np.linalg.solve(hess(u), grad(u))
    H = hess(u)
    sign, logdet = np.linalg.slogdet(H)
    assert sign > 0
    return -neg(u) - 0.5 * logdet, u, np.linalg.inv(H)


def central_gradient(f, free: np.ndarray, rel: float = 1e-5) -> np.ndarray:
    """Central differences of a scalar function of the free vector."""
    out = np.zeros_like(free)
    for j in range(len(free)):
        h = rel * max(1.0, abs(free[j]))
        e = np.zeros_like(free)
        e[j] = h
        out[j] = (f(free + e) - f(free - e)) / (2 * h)
    return out
