"""Product rules are fitted unpruned, and the point check measures the whole integration error.

A binary random-intercept-and-slope model (two independent person-level effects, SDs 2.5 and 2)
on simulated data. The target is a brute-force trapezoid sum over a dense grid in the two
standardised effects, written here from the model's definition (no mlmrun code):
log L = sum_j log sum_grid h^2 phi(u1) phi(u2) prod_i expit(+-(b + 2.5 u1 + 2 x_i u2)).

Pruning light corner nodes biases adaptive quadrature by an amount that does not shrink with more
points (the integrand grows towards the corners where the posterior's tails are heavier than the
Gaussian approximation): measured 1.7e-5 at 30 and 1.8e-5 at 40 points per dimension for pruned
weight 1e-14, against 3e-8 and 4e-10 unpruned.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_expit, logsumexp

from mlmrun.estimate.quadrature_fit import point_check
from mlmrun.estimate.quadrature_opt import Outcome
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.likelihood.quadrature.rules import product_rule
from mlmrun.pipeline import prepare
from tests.conftest import write_spec

N_PERSONS, N_ITEMS = 10, 16
B, SD1, SD2 = 0.2, 2.5, 2.0
SPEC = """name: slopes
data: {{path: slopes.csv}}
levels:
  - {{name: person, id: person}}
responses:
  - {{name: y, family: binomial, link: logit}}
fixed: "y ~ 1"
random:
  - {{level: person, terms: [1, x], covariance: independent}}
estimation: {{integration: {{method: adaptive, points: {points}}}}}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(5)
    person = np.repeat(np.arange(N_PERSONS), N_ITEMS)
    x = np.tile(np.linspace(-1.0, 1.0, N_ITEMS), N_PERSONS)
    u1, u2 = SD1 * rng.normal(size=N_PERSONS), SD2 * rng.normal(size=N_PERSONS)
    eta = B + u1[person] + x * u2[person]
    frame = pd.DataFrame({"person": person, "x": x, "y": (rng.uniform(size=len(x)) < 1 / (1 + np.exp(-eta))).astype(int)})
    folder = tmp_path_factory.mktemp("slopes")
    frame.to_csv(folder / "slopes.csv", index=False)
    return folder, frame


def brute_force(frame: pd.DataFrame, h: float) -> float:
    """Trapezoid sum on [-10, 10]^2 in the standardised effects (the integrand is ~0 at the edges)."""
    grid = np.arange(-10.0, 10.0 + h / 2, h)
    u1, u2 = np.meshgrid(grid, grid, indexing="ij")
    log_prior = -0.5 * (u1**2 + u2**2) - np.log(2 * np.pi) + 2 * np.log(h)
    total = 0.0
    for _, rows in frame.groupby("person"):
        s = log_prior.copy()
        for xi, yi in zip(rows["x"], rows["y"], strict=True):
            nu = B + SD1 * u1 + SD2 * xi * u2
            s += log_expit(nu) if yi else log_expit(-nu)
        total += float(logsumexp(s))
    return total


@pytest.fixture(scope="module")
def target(data: tuple[Path, pd.DataFrame]) -> float:
    coarse, fine = brute_force(data[1], 0.05), brute_force(data[1], 0.025)
    assert coarse == pytest.approx(fine, abs=1e-10)  # the grid is converged
    return fine


def objective(folder: Path, points: int) -> tuple[QuadratureObjective, np.ndarray]:
    model = prepare(write_spec(folder, SPEC.format(points=points), f"slopes{points}.yaml")).model
    pt = model.partable
    values = np.array(pt.frame["value"], dtype=float)
    for name, v in {"Intercept": B, "sd(_cons)@person": SD1, "sd(x)@person": SD2}.items():
        values[list(pt.names).index(name)] = v
    return QuadratureObjective(model, integration_plan(model)), pt.pack(values)


def test_fitted_rules_are_full_product_rules(data: tuple[Path, pd.DataFrame]) -> None:
    obj, _ = objective(data[0], 20)
    assert obj.plan.rules[0].size == 20 * 20
    assert np.exp(obj.plan.rules[0].log_weights).sum() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize(("points", "tol"), [(30, 1e-7), (40, 1e-8)])
def test_fitted_rule_converges_to_brute_force(data: tuple[Path, pd.DataFrame], target: float, points: int,
                                              tol: float) -> None:
    obj, free = objective(data[0], points)
    assert obj.readapted(free)[0] == pytest.approx(target, abs=tol)


@pytest.mark.parametrize("points", [30, 40])
def test_pruning_bias_does_not_shrink_with_points(data: tuple[Path, pd.DataFrame], target: float,
                                                  points: int) -> None:
    obj, free = objective(data[0], points)
    ad = obj.adapt(free)
    pruned = obj.frozen(free, ad.with_rules((product_rule(points, 2, 1e-14),)), gradient=False)[0]
    assert target - pruned > 1e-5  # why the fitted rules are unpruned


def test_point_check_measures_the_whole_error_of_a_pruned_fitted_rule(data: tuple[Path, pd.DataFrame],
                                                                       target: float) -> None:
    obj, free = objective(data[0], 30)
    obj.plan = replace(obj.plan, prune=1e-14)  # a fitted rule that prunes (not the default)
    ad = obj.adapt(free)
    fitted = obj.frozen(free, ad, gradient=False)[0]
    warnings: list[str] = []
    check = point_check(obj, Outcome(free, ad, fitted, True, 0), None, [40], warnings)
    assert check["loglik"]["40"] == pytest.approx(target, abs=1e-8)
    assert check["loglik_change"] == pytest.approx(target - fitted, abs=1e-8)
    assert check["loglik_change"] > 1e-5
