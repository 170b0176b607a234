"""A discrete cluster level over normal person effects, by Laplace and with `discrete: auto`.

Independent computations written here: each person's Laplace approximation
(Newton to the mode of its log posterior, then h(u) + log(2 pi)/2 - log(-h''(u))/2),
and each cluster's likelihood at a point by a 200-point Gauss-Hermite rule
over the person effects, for the Gateaux derivative sum_j L_j(e) / L_j - 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun.estimate import estimate
from mlmrun.likelihood.quadrature.discrete_mixed import MixedObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from tests.discrete.data import compiled, three_level_data

SPEC = """\
name: mixed
data: {path: data.csv}
levels: [{name: person, id: person}, {name: cluster, id: cluster}]
responses: [{name: y, family: binomial}]
fixed: "y ~ x"
random:
  - {level: person, terms: [1]}
  - {level: cluster, terms: [1], distribution: {discrete: DISCRETE}}
estimation: {integration: INTEGRATION}
"""


def _spec(discrete: str, integration: str) -> str:
    return SPEC.replace("DISCRETE", discrete).replace("INTEGRATION", integration)


def laplace_person(nu0: np.ndarray, y: np.ndarray, sd: float) -> float:
    """Laplace approximation of log int prod_i f(y_i | nu0_i + sd u) phi(u) du (Newton to the mode)."""
    u = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(nu0 + sd * u)))
        g = sd * np.sum(y - p) - u
        hess = -sd * sd * np.sum(p * (1 - p)) - 1.0
        u -= g / hess
    nu = nu0 + sd * u
    p = 1.0 / (1.0 + np.exp(-nu))
    h = np.sum(y * nu - np.logaddexp(0.0, nu)) - 0.5 * u * u - 0.5 * np.log(2 * np.pi)
    return h + 0.5 * np.log(2 * np.pi) - 0.5 * np.log(sd * sd * np.sum(p * (1 - p)) + 1.0)


def laplace_loglik(frame: pd.DataFrame, beta: np.ndarray, sd: float, masses: np.ndarray, probs: np.ndarray) -> float:
    total = 0.0
    for _, cl in frame.groupby("cluster"):
        per_point = []
        for e in masses:
            per_point.append(sum(laplace_person(beta[0] + beta[1] * p["x"].to_numpy() + e, p["y"].to_numpy(), sd)
                                 for _, p in cl.groupby("person")))
        total += np.log(probs @ np.exp(np.array(per_point)))
    return total


def cluster_logliks(frame: pd.DataFrame, beta: np.ndarray, sd: float, e: float) -> np.ndarray:
    """Per cluster, log likelihood with the cluster effect at e (200-point Gauss-Hermite over person effects)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()
    out = []
    for _, cl in frame.groupby("cluster"):
        total = 0.0
        for _, person in cl.groupby("person"):
            nu = (beta[0] + beta[1] * person["x"].to_numpy())[:, None] + e + sd * nodes[None, :]
            y = person["y"].to_numpy()[:, None]
            total += np.log(weights @ np.exp((y * nu - np.logaddexp(0.0, nu)).sum(axis=0)))
        out.append(total)
    return np.array(out)


def _point(model, beta0: float, beta1: float, sd: float, loc2: float, logit2: float) -> np.ndarray:
    pt = model.partable
    values = pt.start_values
    values[pt.index("Intercept")], values[pt.index("x")] = beta0, beta1
    values[pt.index("sd(_cons)@person")] = sd
    values[pt.index("loc2(_cons)@cluster")] = loc2
    values[pt.index("logit2(mass)@cluster")] = logit2
    return pt.pack(values)


def test_laplace_likelihood_matches_per_person_laplace(tmp_path: Path) -> None:
    frame = three_level_data(20, 11)
    model = compiled(tmp_path, _spec("2", "{method: laplace}"), frame)
    obj = MixedObjective(model, integration_plan(model))
    x = _point(model, -0.3, 0.5, 0.9, 1.6, -0.4)
    obj.readapt(x)
    p2 = 1.0 / (1.0 + np.exp(0.4))
    probs = np.array([1.0 - p2, p2])
    raw = np.array([0.0, 1.6])
    expected = laplace_loglik(frame, np.array([-0.3, 0.5]), 0.9, raw - probs @ raw, probs)
    assert abs(obj.evaluate(x, gradient=False).loglik - expected) < 1e-8


def test_laplace_gradient_at_frozen_modes_matches_differences(tmp_path: Path) -> None:
    model = compiled(tmp_path, _spec("2", "{method: laplace}"), three_level_data(20, 11))
    obj = MixedObjective(model, integration_plan(model))
    rng = np.random.default_rng(4)
    x = model.partable.pack(model.partable.start_values) + rng.normal(scale=0.3, size=model.partable.n_free)
    obj.readapt(x)
    analytic = obj.evaluate(x).gradient
    numeric = np.zeros_like(x)
    for j in range(len(x)):
        up, down = x.copy(), x.copy()
        up[j] += 1e-6
        down[j] -= 1e-6
        numeric[j] = (obj.evaluate(up, gradient=False).loglik - obj.evaluate(down, gradient=False).loglik) / 2e-6
    assert np.allclose(analytic, numeric, rtol=1e-5, atol=1e-5)


def test_laplace_fit_is_close_to_adaptive_quadrature(tmp_path: Path) -> None:
    frame = three_level_data(40, 7)
    laplace = estimate(compiled(tmp_path, _spec("2", "{method: laplace}"), frame))
    quad = estimate(compiled(tmp_path, _spec("2", "{points: 12}"), frame))
    assert laplace.converged and laplace.integration["method"] == "laplace"
    se = quad.se()
    free = quad.model.partable.frame["free"].to_numpy() > 0
    assert np.all(np.abs(laplace.values - quad.values)[free] < 0.5 * se[free])


def test_gateaux_derivative_matches_dense_quadrature(tmp_path: Path) -> None:
    frame = three_level_data(15, 3)
    model = compiled(tmp_path, _spec("2", "{points: 20}"), frame)
    obj = MixedObjective(model, integration_plan(model))
    x = _point(model, -0.2, 0.6, 0.8, 1.5, 0.3)
    obj.readapt(x)
    ev = obj.evaluate(x, gradient=False)
    cand = np.array([[-2.0], [0.1], [1.7]])
    ours = obj.gateaux(x, cand, ev.unit_loglik)
    p2 = 1.0 / (1.0 + np.exp(-0.3))
    e = np.array([0.0, 1.5]) - p2 * 1.5
    beta = np.array([-0.2, 0.6])
    fitted = np.logaddexp(np.log(1 - p2) + cluster_logliks(frame, beta, 0.8, e[0]),
                          np.log(p2) + cluster_logliks(frame, beta, 0.8, e[1]))
    expected = [np.sum(np.exp(cluster_logliks(frame, beta, 0.8, c[0]) - fitted)) - len(fitted) for c in cand]
    assert np.allclose(ours, expected, rtol=1e-6, atol=1e-6)


def test_auto_stops_where_the_gateaux_derivative_vanishes(tmp_path: Path) -> None:
    model = compiled(tmp_path, _spec("auto", "{points: 10}"), three_level_data(40, 7))
    fit = estimate(model)
    gateaux = fit.extras["discrete"]["gateaux"]
    path = gateaux["path"]
    assert [step["points"] for step in path] == list(range(1, len(path) + 1))
    assert all(b["loglik"] > a["loglik"] for a, b in zip(path, path[1:], strict=False))
    assert path[0]["max_derivative"] > gateaux["tolerance"]
    last = path[-1]
    assert last["max_derivative"] <= gateaux["tolerance"] or "note" in last
    assert fit.integration["discrete_points"] >= 2
