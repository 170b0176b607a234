"""Discrete distributions at two levels: person mass points within district mass points.

The brute force written here sums explicitly over each district's points and,
inside each, every person's points (no quadrature at all).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun.estimate import estimate
from mlmrun.likelihood.quadrature.discrete_nested import NestedObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.report.discrete import discrete_tables
from mlmrun.results import parameter_rows
from tests.discrete.data import compiled

SPEC = """\
name: two
data: {path: data.csv}
levels: [{name: person, id: person}, {name: district, id: district}]
responses: [{name: y, family: binomial}]
fixed: "y ~ x"
random:
  - {level: person, terms: [1], distribution: {discrete: 2}}
  - {level: district, terms: [1], distribution: {discrete: 2}}
"""

PERSON, DISTRICT = (-0.6, 1.2, 0.35), (-0.9, 0.9, 0.5)
"""(low mass, high mass, probability of the high one) before centring."""


def two_level_data(districts: int, seed: int, persons: int = 5, rows: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = np.where(rng.random(districts) < DISTRICT[2], DISTRICT[1], DISTRICT[0])
    n = districts * persons
    pe = np.where(rng.random(n) < PERSON[2], PERSON[1], PERSON[0])
    x = rng.normal(size=(n, rows))
    nu = -0.3 + 0.5 * x + pe[:, None] + np.repeat(d, persons)[:, None]
    y = (rng.random((n, rows)) < 1.0 / (1.0 + np.exp(-nu))).astype(int)
    return pd.DataFrame({"district": np.repeat(np.arange(1, districts + 1), persons * rows),
                         "person": np.repeat(np.arange(1, n + 1), rows), "x": x.reshape(-1), "y": y.reshape(-1)})


def _centred(values: np.ndarray, pt, level: str) -> tuple[np.ndarray, np.ndarray]:
    p2 = 1.0 / (1.0 + np.exp(-values[pt.index(f"logit2(mass)@{level}")]))
    probs = np.array([1.0 - p2, p2])
    raw = np.array([0.0, values[pt.index(f"loc2(_cons)@{level}")]])
    return raw - probs @ raw, probs


def brute_loglik(frame: pd.DataFrame, beta: np.ndarray, person: tuple, district: tuple) -> float:
    total = 0.0
    for _, dist in frame.groupby("district"):
        per_point = []
        for a in district[0]:
            log_c = 0.0
            for _, p in dist.groupby("person"):
                nu = (beta[0] + beta[1] * p["x"].to_numpy())[:, None] + person[0][None, :] + a
                y = p["y"].to_numpy()[:, None]
                log_c += np.log(person[1] @ np.exp((y * nu - np.logaddexp(0.0, nu)).sum(axis=0)))
            per_point.append(log_c)
        total += np.log(district[1] @ np.exp(np.array(per_point)))
    return total


def _setup(tmp_path: Path):
    frame = two_level_data(10, 5)
    model = compiled(tmp_path, SPEC, frame)
    return frame, model, NestedObjective(model, integration_plan(model))


def test_likelihood_matches_explicit_double_sum(tmp_path: Path) -> None:
    frame, model, obj = _setup(tmp_path)
    pt = model.partable
    x = pt.pack(pt.start_values) + np.random.default_rng(1).normal(scale=0.4, size=pt.n_free)
    obj.readapt(x)
    values = pt.unpack(x)
    beta = np.array([values[pt.index("Intercept")], values[pt.index("x")]])
    brute = brute_loglik(frame, beta, _centred(values, pt, "person"), _centred(values, pt, "district"))
    assert abs(obj.evaluate(x, gradient=False).loglik - brute) < 1e-9


def test_gradient_matches_differences(tmp_path: Path) -> None:
    _, model, obj = _setup(tmp_path)
    x = model.partable.pack(model.partable.start_values) + np.random.default_rng(2).normal(
        scale=0.4, size=model.partable.n_free)
    obj.readapt(x)
    analytic = obj.evaluate(x).gradient
    numeric = np.zeros_like(x)
    for j in range(len(x)):
        up, down = x.copy(), x.copy()
        up[j] += 1e-6
        down[j] -= 1e-6
        numeric[j] = (obj.evaluate(up, gradient=False).loglik - obj.evaluate(down, gradient=False).loglik) / 2e-6
    assert np.allclose(analytic, numeric, rtol=1e-5, atol=1e-5)


def test_fit_recovers_both_distributions(tmp_path: Path) -> None:
    model = compiled(tmp_path, SPEC, two_level_data(200, 8, rows=8))
    fit = estimate(model)
    assert fit.converged
    pt, se = model.partable, fit.se()
    mean = PERSON[2] * PERSON[1] + (1 - PERSON[2]) * PERSON[0] + DISTRICT[2] * DISTRICT[1] \
        + (1 - DISTRICT[2]) * DISTRICT[0]
    checks = {"x": 0.5, "Intercept": -0.3 + mean}
    for level, (lo, hi, p) in (("person", PERSON), ("district", DISTRICT)):
        checks[f"loc2(_cons)@{level}"] = hi - lo
        checks[f"logit2(mass)@{level}"] = np.log(p / (1 - p))
    for name, truth in checks.items():
        i = pt.index(name)
        assert abs(fit.values[i] - truth) < 2.0 * se[i], (name, fit.values[i], truth, se[i])
    summary = fit.extras["discrete"]
    assert summary["level"] == "person" and [o["level"] for o in summary["other_levels"]] == ["district"]
    tables, notes = discrete_tables({r.name: r for r in parameter_rows(fit)}, fit)
    assert summary["starts"]["screening"] == "quasi-Newton" and any("quasi-Newton from each" in n for n in notes)
    titles = [t.title for t in tables]
    assert "Discrete distribution at level person (2 mass points)" in titles
    assert "Discrete distribution at level district (2 mass points)" in titles
