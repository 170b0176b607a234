"""A discrete cluster level over normal person effects: likelihood against brute force, gradient against differences.

The brute force written here integrates each person's normal effect by a
200-point Gauss-Hermite rule (non-adaptive: exact to ~1e-12 for these
effects) inside each cluster point and sums the points directly.
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
  - {level: cluster, terms: [1], distribution: {discrete: 2}}
estimation: {integration: {points: 12}}
"""


def brute_loglik(frame: pd.DataFrame, beta: np.ndarray, sd: float, masses: np.ndarray, probs: np.ndarray) -> float:
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()
    total = 0.0
    for _, cl in frame.groupby("cluster"):
        per_point = []
        for e in masses:
            log_c = 0.0
            for _, person in cl.groupby("person"):
                nu = (beta[0] + beta[1] * person["x"].to_numpy())[:, None] + e + sd * nodes[None, :]
                y = person["y"].to_numpy()[:, None]
                ll = (y * nu - np.logaddexp(0.0, nu)).sum(axis=0)
                log_c += np.log(weights @ np.exp(ll))
            per_point.append(log_c)
        total += np.log(probs @ np.exp(np.array(per_point)))
    return total


def _setup(tmp_path: Path):
    frame = three_level_data(25, 11)
    model = compiled(tmp_path, SPEC, frame)
    return frame, model, MixedObjective(model, integration_plan(model))


def test_likelihood_matches_brute_force(tmp_path: Path) -> None:
    frame, model, obj = _setup(tmp_path)
    pt = model.partable
    values = pt.start_values
    values[pt.index("Intercept")], values[pt.index("x")] = -0.3, 0.5
    values[pt.index("sd(_cons)@person")] = 0.9
    values[pt.index("loc2(_cons)@cluster")] = 1.6
    values[pt.index("logit2(mass)@cluster")] = -0.4
    x = pt.pack(values)
    obj.readapt(x)
    ours = obj.evaluate(x, gradient=False).loglik
    p2 = 1.0 / (1.0 + np.exp(0.4))
    probs = np.array([1.0 - p2, p2])
    raw = np.array([0.0, 1.6])
    assert abs(ours - brute_loglik(frame, np.array([-0.3, 0.5]), 0.9, raw - probs @ raw, probs)) < 1e-6


def test_gradient_at_frozen_adaptation_matches_differences(tmp_path: Path) -> None:
    _, model, obj = _setup(tmp_path)
    rng = np.random.default_rng(3)
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


def test_fit_converges_and_reports_both_distributions(tmp_path: Path) -> None:
    _, model, _ = _setup(tmp_path)
    fit = estimate(model)
    assert fit.converged
    names = set(model.partable.names)
    assert {"sd(_cons)@person", "loc2(_cons)@cluster"} <= names
    assert fit.integration["discrete_points"] == 2 and fit.integration["method"] == "adaptive"
    se = fit.se()
    assert np.all(np.isfinite(se[model.partable.frame["free"].to_numpy() > 0]))
