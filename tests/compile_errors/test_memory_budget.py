"""The quadrature's memory is estimated before fitting and refused over `estimation.memory_budget_gib`.

`points: 100` in 5 dimensions once passed validate and then asked for 75 GiB.
The estimate (likelihood/quadrature/plan.py) is checked against tracemalloc's peak of
real evaluations, its refusal boundary against the budget, and the refusal
at the CLI: exit 2 at the key, with the estimate, the budget and what to lower.
"""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

from mlmrun import cli
from mlmrun.estimate.quadrature_fit import COARSE_POINTS
from mlmrun.likelihood.quadrature import rules as quadrature
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import (
    GIB,
    LAPLACE_START_POINTS,
    IntegrationPlan,
    PlanSizes,
    integration_plan,
    plan_memory,
    plan_sizes,
)
from mlmrun.pipeline import prepare
from tests.compile_errors.helpers import ROOT, position, refused, write

FIVE = """\
name: five
data: {path: abortion_sim.csv}
levels:
  - {name: person, id: person}
responses:
  - {name: resp, family: binomial, link: logit}
fixed: "resp ~ 0 + C(item)"
latent:
  - {name: f1, level: person, loadings: {by: item, only: [woman, couple], fix: {woman: 1}}}
  - {name: f2, level: person, loadings: {by: item, only: [couple, marriage], fix: {couple: 1}}}
  - {name: f3, level: person, loadings: {by: item, only: [marriage, financial], fix: {marriage: 1}}}
  - {name: f4, level: person, loadings: {by: item, only: [financial, defect], fix: {financial: 1}}}
  - {name: f5, level: person, loadings: {by: item, only: [defect, risk], fix: {defect: 1}}}
covariance: {person: independent}
estimation:
  integration: {method: adaptive, points: 100}
"""
DATA = ("abortion_sim.csv",)


def test_100_points_in_5_dimensions_are_refused_by_validate_without_allocating(tmp_path, capsys):
    path = write(tmp_path, FIVE, DATA)
    tracemalloc.start()
    try:
        ((line, col, what),) = refused(path, capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 300 * 2**20, f"validate itself used {peak / 2**20:.0f} MiB"
    assert (line, col) == position(FIVE, "100")
    assert "over the memory budget of 4 GiB" in what and "GiB" in what.split("needs an estimated ")[1][:12]
    assert "100 points in 5 dimension(s) at level 'person'" in what
    assert "lower the points at level 'person' to at most" in what and "memory_budget_gib" in what


def _assert_largest_that_fits(tmp_path, what: str, budget_gib: float) -> None:
    """The `at most N` of a refusal: N points fit the budget, N + 1 do not."""
    most = int(re.search(r"to at most (\d+)", what)[1])
    model = prepare(write(tmp_path, FIVE.replace("points: 100", "points: 2"), DATA, "small.yaml")).model
    plan, sizes = integration_plan(model), plan_sizes(model)
    budget = budget_gib * GIB
    assert plan_memory(plan.with_points(most), sizes) <= budget < plan_memory(plan.with_points(most + 1), sizes)


def test_the_suggested_points_are_the_largest_that_fit(tmp_path, capsys):
    ((_, _, what),) = refused(write(tmp_path, FIVE, DATA), capsys)
    _assert_largest_that_fits(tmp_path, what, 4)


def test_a_budget_in_the_spec_moves_the_limit(tmp_path, capsys):
    text = FIVE.replace("points: 100}", "points: 10}\n  memory_budget_gib: 0.5")
    ((line, col, what),) = refused(write(tmp_path, text, DATA), capsys)
    assert (line, col) == position(text, "10}")
    assert "over the memory budget of 0.5 GiB" in what
    _assert_largest_that_fits(tmp_path, what, 0.5)
    raised = text.replace("memory_budget_gib: 0.5", "memory_budget_gib: 8")
    assert prepare(write(tmp_path, raised, DATA, "raised.yaml")).model.n == 14143


def test_the_sparse_laplace_engine_is_not_held_to_the_quadrature_budget(tmp_path, capsys):
    """A Laplace fit goes to the joint sparse engine (likelihood/laplace, issue 14), which holds no quadrature
    nodes: the budget that refuses 100 points here does not refuse `method: laplace` (the old path started
    with COARSE_POINTS-point adaptive quadrature and was budgeted for it)."""
    assert LAPLACE_START_POINTS == COARSE_POINTS
    text = FIVE.replace("{method: adaptive, points: 100}", "{method: adaptive, points: 100}\n  memory_budget_gib: 0.05")
    assert refused(write(tmp_path, text, DATA), capsys)
    laplace = FIVE.replace("{method: adaptive, points: 100}", "{method: laplace}\n  memory_budget_gib: 0.05")
    assert cli.main(["validate", str(write(tmp_path, laplace, DATA, "laplace.yaml"))]) == 0


def test_the_estimate_grows_with_points_as_the_node_count():
    """Far beyond the fixed costs, the estimate scales like the nodes per unit: points ** dimensions."""
    sizes = PlanSizes(n_rows=1_000_000, n_units=(100_000,), max_unit_rows=10, family_params=0)
    for dim in (1, 2, 3):
        small, large = (IntegrationPlan("adaptive", "mode", ("u",), (dim,), (p,)) for p in (100, 200))
        ratio = plan_memory(large, sizes) / plan_memory(small, sizes)
        assert 0.8 * 2**dim <= ratio <= 1.2 * 2**dim, (dim, ratio)
    two = PlanSizes(n_rows=10_000, n_units=(1_000, 50), max_unit_rows=10, family_params=1)
    previous = 0
    for top in (1, 10, 100, 1000):
        need = plan_memory(IntegrationPlan("adaptive", "mode", ("u", "top"), (1, 1), (5, top)), two)
        assert need > previous
        previous = need
    # rows x configurations of the level above dominate: 10x the top level's points, about 10x the memory
    ratio = (plan_memory(IntegrationPlan("adaptive", "mode", ("u", "top"), (1, 1), (5, 1000)), two)
             / plan_memory(IntegrationPlan("adaptive", "mode", ("u", "top"), (1, 1), (5, 100)), two))
    assert 8 <= ratio <= 10.5


def _clear_rule_caches() -> None:
    for name in dir(quadrature):
        cached = getattr(quadrature, name)
        if callable(getattr(cached, "cache_clear", None)):
            cached.cache_clear()


@pytest.mark.parametrize("spec, points", [
    ("abortion", {"person": 3, "district": 150}),
    ("abortion", {"person": 8, "district": 100}),
    ("five", 4),
], ids=["rows x configurations", "both levels", "nodes x units in 5 dimensions"])
def test_the_estimate_matches_the_measured_peak(tmp_path, spec, points):
    """tracemalloc's peak over a likelihood + gradient evaluation and an empirical-Bayes one, rules built anew."""
    path = ROOT / "specs" / "abortion.yaml" if spec == "abortion" else write(tmp_path, FIVE.replace("points: 100", "points: 2"), DATA)
    model = prepare(path).model
    plan = integration_plan(model).with_points(points)
    obj = QuadratureObjective(model, plan)
    free = model.partable.pack(model.partable.start_values)
    _clear_rule_caches()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        adaptation = obj.adapt(free)
        loglik, _ = obj.frozen(free, adaptation)
        obj.evaluation(free, adaptation)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert np.isfinite(loglik)
    estimate = plan_memory(plan, plan_sizes(model))
    assert peak > 20 * 2**20, "too small to test the estimate"
    print(f"estimate {estimate / 2**20:.1f} MiB, measured {peak / 2**20:.1f} MiB")
    assert 0.9 * peak <= estimate <= 2.0 * peak, (estimate / 2**20, peak / 2**20)


def test_absurd_points_are_refused_without_overflow(tmp_path, capsys):
    """Points of ~100 digits (the YAML number budget) at both levels: exit 2 (no float overflow), lower every level."""
    text = (FIVE.replace("  - {name: person, id: person}\n", "  - {name: person, id: person}\n  - {name: district, id: district}\n")
            .replace("covariance: {person: independent}\n", "covariance: {person: independent}\nrandom: [{level: district, terms: [1]}]\n")
            .replace("points: 100}", f"points: {{person: {10**90}, district: {10**99}}}}}"))
    ((line, col, what),) = refused(write(tmp_path, text, DATA), capsys)
    assert (line, col) == position(text, str(10**90))
    assert "more memory than any machine has" in what and "1.00e+450 nodes per unit" in what
    assert "lower the points at every level" in what
