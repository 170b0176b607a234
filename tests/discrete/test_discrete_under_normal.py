"""Discrete person mass points inside normal district intercepts (a discrete level below a normal one).

The brute force written here integrates each district's normal intercept by a
150-point Gauss-Hermite rule (non-adaptive, dense enough to be exact to ~1e-10
for an intercept SD of 0.8) and, at every node, sums each person's
likelihood over the mass points explicitly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun.estimate import estimate
from mlmrun.likelihood.quadrature.discrete_nested import NestedObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from tests.discrete.data import compiled

SPEC = """\
name: below
data: {path: data.csv}
levels: [{name: person, id: person}, {name: district, id: district}]
responses: [{name: y, family: binomial}]
fixed: "y ~ x"
random:
  - {level: person, terms: [1], distribution: {discrete: 2}}
  - {level: district, terms: [1]}
estimation: {integration: {points: POINTS}}
"""

TRUTH = {"x": 0.5, "sd": 0.8, "masses": (-0.6, 1.2), "p2": 0.35, "constant": -0.3}


def person_points_data(districts: int, seed: int, persons: int = 5, rows: int = 4) -> pd.DataFrame:
    """Binary rows: a two-point person intercept (TRUTH) within normal district intercepts."""
    rng = np.random.default_rng(seed)
    d = rng.normal(scale=TRUTH["sd"], size=districts)
    n = districts * persons
    lo, hi = TRUTH["masses"]
    pe = np.where(rng.random(n) < TRUTH["p2"], hi, lo)
    x = rng.normal(size=(n, rows))
    nu = TRUTH["constant"] + TRUTH["x"] * x + pe[:, None] + np.repeat(d, persons)[:, None]
    y = (rng.random((n, rows)) < 1.0 / (1.0 + np.exp(-nu))).astype(int)
    return pd.DataFrame({"district": np.repeat(np.arange(1, districts + 1), persons * rows),
                         "person": np.repeat(np.arange(1, n + 1), rows), "x": x.reshape(-1), "y": y.reshape(-1)})


def brute_loglik(frame: pd.DataFrame, beta: np.ndarray, sd: float, masses: np.ndarray, probs: np.ndarray) -> float:
    nodes, weights = np.polynomial.hermite_e.hermegauss(150)
    weights = weights / weights.sum()
    total = 0.0
    for _, district in frame.groupby("district"):
        log_at_node = np.zeros(len(nodes))
        for _, person in district.groupby("person"):
            nu = (beta[0] + beta[1] * person["x"].to_numpy())[:, None, None] + masses[None, :, None] \
                + sd * nodes[None, None, :]
            y = person["y"].to_numpy()[:, None, None]
            ll = (y * nu - np.logaddexp(0.0, nu)).sum(axis=0)
            log_at_node += np.log(probs @ np.exp(ll))
        total += np.log(weights @ np.exp(log_at_node))
    return total


def _setup(tmp_path: Path, points: int = 12):
    frame = person_points_data(12, 5)
    model = compiled(tmp_path, SPEC.replace("POINTS", str(points)), frame)
    return frame, model, NestedObjective(model, integration_plan(model))


def test_likelihood_matches_brute_force(tmp_path: Path) -> None:
    frame, model, obj = _setup(tmp_path)
    pt = model.partable
    values = pt.start_values
    values[pt.index("Intercept")], values[pt.index("x")] = -0.3, 0.5
    values[pt.index("sd(_cons)@district")] = 0.8
    values[pt.index("loc2(_cons)@person")] = 1.6
    values[pt.index("logit2(mass)@person")] = -0.5
    x = pt.pack(values)
    obj.readapt(x)
    ours = obj.evaluate(x, gradient=False).loglik
    p2 = 1.0 / (1.0 + np.exp(0.5))
    probs = np.array([1.0 - p2, p2])
    raw = np.array([0.0, 1.6])
    brute = brute_loglik(frame, np.array([-0.3, 0.5]), 0.8, raw - probs @ raw, probs)
    assert abs(ours - brute) < 1e-6


def test_plain_quadrature_matches_brute_force_with_many_points(tmp_path: Path) -> None:
    frame = person_points_data(8, 9)
    model = compiled(tmp_path, SPEC.replace("points: POINTS", "method: ghq, points: 60"), frame)
    obj = NestedObjective(model, integration_plan(model))
    pt = model.partable
    values = pt.start_values
    values[pt.index("Intercept")], values[pt.index("x")] = 0.2, -0.4
    values[pt.index("sd(_cons)@district")] = 0.6
    values[pt.index("loc2(_cons)@person")] = -1.1
    x = pt.pack(values)
    obj.readapt(x)
    probs = np.array([0.5, 0.5])
    raw = np.array([0.0, -1.1])
    brute = brute_loglik(frame, np.array([0.2, -0.4]), 0.6, raw - probs @ raw, probs)
    assert abs(obj.evaluate(x, gradient=False).loglik - brute) < 1e-8


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


def test_posterior_point_probabilities_match_brute_force(tmp_path: Path) -> None:
    frame, model, obj = _setup(tmp_path)
    x = model.partable.pack(model.partable.start_values)
    values = model.partable.unpack(x)
    values[model.partable.index("loc2(_cons)@person")] = 1.4
    x = model.partable.pack(values)
    obj.readapt(x)
    post = obj.evaluate(x, gradient=False).posterior
    nodes, weights = np.polynomial.hermite_e.hermegauss(150)
    weights = weights / weights.sum()
    sd = values[model.partable.index("sd(_cons)@district")]
    e = np.array([-0.7, 0.7])
    district = frame[frame["district"] == 1]
    per_person = []
    for _, person in district.groupby("person"):
        nu = values[model.partable.index("Intercept")] + values[model.partable.index("x")] * person["x"].to_numpy()
        nu = nu[:, None, None] + e[None, :, None] + sd * nodes[None, None, :]
        y = person["y"].to_numpy()[:, None, None]
        per_person.append(np.exp((y * nu - np.logaddexp(0.0, nu)).sum(axis=0)))  # (2 points, nodes)
    marg = np.array([0.5 * f.sum(axis=0) for f in per_person])  # each person's likelihood at every node
    for i, f in enumerate(per_person):
        others = np.prod(np.delete(marg, i, axis=0), axis=0)
        joint = 0.5 * (f * others) @ weights
        assert np.allclose(post[i], joint / joint.sum(), atol=1e-7)


def test_fit_recovers_simulated_truth(tmp_path: Path) -> None:
    frame = person_points_data(80, 21, persons=6, rows=6)
    model = compiled(tmp_path, SPEC.replace("POINTS", "8"), frame)
    fit = estimate(model)
    assert fit.converged and fit.integration["method"] == "adaptive" and fit.integration["discrete_points"] == 2
    pt, se = model.partable, fit.se()
    lo, hi = TRUTH["masses"]
    mean = TRUTH["p2"] * hi + (1 - TRUTH["p2"]) * lo
    checks = {"x": TRUTH["x"], "sd(_cons)@district": TRUTH["sd"], "loc2(_cons)@person": hi - lo,
              "logit2(mass)@person": np.log(TRUTH["p2"] / (1 - TRUTH["p2"])), "Intercept": TRUTH["constant"] + mean}
    for name, truth in checks.items():
        i = pt.index(name)
        assert abs(fit.values[i] - truth) < 2.0 * se[i], (name, fit.values[i], truth, se[i])
    report = fit.extras["discrete"]
    assert report["level"] == "person" and np.isclose(np.dot(report["probabilities"], np.ravel(report["masses"])), 0.0)


MIDDLE = """\
name: middle
data: {path: data.csv}
levels: [{name: person, id: person}, {name: district, id: district}, {name: region, id: region}]
responses: [{name: y, family: binomial}]
fixed: "y ~ x"
random:
  - {level: person, terms: [1]}
  - {level: district, terms: [1], distribution: {discrete: 2}}
  - {level: region, terms: [1]}
estimation: {integration: {points: 12}}
"""


def middle_data(regions: int, seed: int) -> pd.DataFrame:
    """Binary rows, 3 per person, 3 persons per district, 3 districts per region."""
    rng = np.random.default_rng(seed)
    n_d, n_p = regions * 3, regions * 9
    nu = (0.7 * np.repeat(rng.normal(size=regions), 27) + np.repeat(np.where(rng.random(n_d) < 0.4, 1.0, -0.6), 9)
          + 0.6 * np.repeat(rng.normal(size=n_p), 3))
    x = rng.normal(size=n_p * 3)
    y = (rng.random(n_p * 3) < 1.0 / (1.0 + np.exp(-(nu + 0.5 * x)))).astype(int)
    return pd.DataFrame({"region": np.repeat(np.arange(1, regions + 1), 27),
                         "district": np.repeat(np.arange(1, n_d + 1), 9),
                         "person": np.repeat(np.arange(1, n_p + 1), 3), "x": x, "y": y})


def test_discrete_level_between_normal_levels_matches_brute_force(tmp_path: Path) -> None:
    frame = middle_data(4, 17)
    model = compiled(tmp_path, MIDDLE, frame)
    obj = NestedObjective(model, integration_plan(model))
    pt = model.partable
    values = pt.start_values
    values[pt.index("Intercept")], values[pt.index("x")] = 0.1, 0.4
    values[pt.index("sd(_cons)@person")], values[pt.index("sd(_cons)@region")] = 0.6, 0.7
    values[pt.index("loc2(_cons)@district")] = 1.5
    x = pt.pack(values)
    obj.readapt(x)
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    e = np.array([-0.75, 0.75])
    total = 0.0
    for _, region in frame.groupby("region"):
        log_at_r = np.zeros(len(nodes))
        for _, district in region.groupby("district"):
            log_at_point = np.zeros((2, len(nodes)))
            for _, person in district.groupby("person"):
                nu = (0.1 + 0.4 * person["x"].to_numpy())[:, None, None, None] + e[None, :, None, None] \
                    + 0.7 * nodes[None, None, :, None] + 0.6 * nodes[None, None, None, :]
                y = person["y"].to_numpy()[:, None, None, None]
                f = np.exp((y * nu - np.logaddexp(0.0, nu)).sum(axis=0))  # (point, region node, person node)
                log_at_point += np.log(f @ weights)
            log_at_r += np.log(0.5 * np.exp(log_at_point).sum(axis=0))
        total += np.log(weights @ np.exp(log_at_r))
    assert abs(obj.evaluate(x, gradient=False).loglik - total) < 1e-6


def test_discrete_level_between_normal_levels_gradient_matches_differences(tmp_path: Path) -> None:
    model = compiled(tmp_path, MIDDLE, middle_data(4, 17))
    obj = NestedObjective(model, integration_plan(model))
    x = model.partable.pack(model.partable.start_values) + np.random.default_rng(6).normal(
        scale=0.3, size=model.partable.n_free)
    obj.readapt(x)
    analytic = obj.evaluate(x).gradient
    numeric = np.zeros_like(x)
    for j in range(len(x)):
        up, down = x.copy(), x.copy()
        up[j] += 1e-6
        down[j] -= 1e-6
        numeric[j] = (obj.evaluate(up, gradient=False).loglik - obj.evaluate(down, gradient=False).loglik) / 2e-6
    assert np.allclose(analytic, numeric, rtol=1e-5, atol=1e-5)


def test_gateaux_derivative_matches_brute_force(tmp_path: Path) -> None:
    frame, model, obj = _setup(tmp_path)
    pt = model.partable
    values = pt.start_values
    values[pt.index("Intercept")], values[pt.index("x")] = -0.3, 0.5
    values[pt.index("sd(_cons)@district")] = 0.8
    values[pt.index("loc2(_cons)@person")] = 1.6
    values[pt.index("logit2(mass)@person")] = -0.5
    x = pt.pack(values)
    obj.readapt(x)
    cand = np.array([-2.0, 0.1, 1.9])
    ours = obj.gateaux(x, cand[:, None])
    nodes, weights = np.polynomial.hermite_e.hermegauss(150)
    weights = weights / weights.sum()
    p2 = 1.0 / (1.0 + np.exp(0.5))
    probs = np.array([1.0 - p2, p2])
    e = np.array([0.0, 1.6]) - probs @ np.array([0.0, 1.6])
    expected = np.zeros(len(cand))
    for _, district in frame.groupby("district"):
        log_l = np.zeros(len(nodes))
        ratios = np.zeros((len(cand), len(nodes)))
        for _, person in district.groupby("person"):
            def lik(a: float, person: pd.DataFrame = person) -> np.ndarray:
                nu = (-0.3 + 0.5 * person["x"].to_numpy())[:, None] + a + 0.8 * nodes[None, :]
                return np.exp((person["y"].to_numpy()[:, None] * nu - np.logaddexp(0.0, nu)).sum(axis=0))
            mix = probs[0] * lik(e[0]) + probs[1] * lik(e[1])
            log_l += np.log(mix)
            ratios += np.array([lik(c) / mix - 1.0 for c in cand])
        post = weights * np.exp(log_l - log_l.max())
        expected += ratios @ (post / post.sum())
    assert np.allclose(ours, expected, atol=1e-5)


def test_auto_adds_points_under_normal_district_effects(tmp_path: Path) -> None:
    model = compiled(tmp_path, SPEC.replace("discrete: 2", "discrete: auto").replace("POINTS", "8"),
                     person_points_data(60, 21, persons=6, rows=6))
    fit = estimate(model)
    path = fit.extras["discrete"]["gateaux"]["path"]
    assert [step["points"] for step in path] == list(range(1, len(path) + 1))
    assert path[0]["max_derivative"] > fit.extras["discrete"]["gateaux"]["tolerance"]
    assert all(b["loglik"] > a["loglik"] for a, b in zip(path, path[1:], strict=False))
    last = path[-1]
    assert last["max_derivative"] <= fit.extras["discrete"]["gateaux"]["tolerance"] or "note" in last
    assert fit.integration["discrete_points"] >= 2
