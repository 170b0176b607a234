"""The full adaptive stage re-adapts at every point it evaluates (estimate/quadrature_opt.rounds, `readapt`).

It must reach the optimum the frozen-node rounds reach (the same re-adapted
log likelihood, the same estimates) with no more evaluations, and hand over
to frozen rounds when its line search stalls instead of spending evaluations
on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlmrun.estimate import quadrature_opt
from mlmrun.estimate.quadrature_fit import COARSE_POINTS, fit_glm, starting_values
from mlmrun.estimate.quadrature_opt import rounds
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare

SPECS = Path(__file__).resolve().parents[2] / "specs"


def coarse_optimum(spec: str) -> tuple[QuadratureObjective, object]:
    """The objective of a shipped spec and its coarse-stage outcome (where the full stage starts)."""
    model = prepare(SPECS / spec).model
    obj = QuadratureObjective(model, integration_plan(model))
    glm, _ = fit_glm(obj, model.partable.pack(model.partable.start_values))
    rules = obj.plan.with_points(COARSE_POINTS).rules
    first = rounds(obj, starting_values(obj, glm), rules, 1e-6, 200, coarse=True)
    return obj, first


def full_stage(obj: QuadratureObjective, first, readapt: bool):
    before = obj.n_evaluations
    out = rounds(obj, first.free, obj.plan.rules, 1e-8, 200, None, first.adaptation.with_rules(obj.plan.rules),
                 first.information, readapt=readapt)
    return out, obj.n_evaluations - before


@pytest.mark.parametrize("spec", ["irtsim.yaml", "cbpp.yaml"])
def test_readapting_rounds_reach_the_frozen_rounds_optimum_with_fewer_evaluations(spec: str) -> None:
    obj, first = coarse_optimum(spec)
    frozen, n_frozen = full_stage(obj, first, readapt=False)
    readapted, n_readapted = full_stage(obj, first, readapt=True)
    assert frozen.converged and readapted.converged
    assert readapted.loglik == pytest.approx(frozen.loglik, abs=1e-7)
    np.testing.assert_allclose(readapted.free, frozen.free, atol=2e-4)
    # the optimum's adaptation is current: re-adapting there changes nothing
    again = obj.frozen(readapted.free, obj.adapt(readapted.free, readapted.adaptation))[0]
    assert again == pytest.approx(readapted.loglik, abs=1e-8)
    assert n_readapted <= n_frozen


def test_a_stalled_readapting_ascent_hands_over_to_frozen_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-adapted value that drifts by 1e-3 from one point to the next (as the modes' tolerance makes it
    move, here exaggerated) stalls the re-adapting line search near the optimum; frozen rounds, whose value
    does not drift, then finish the fit at the frozen rounds' optimum."""
    obj, first = coarse_optimum("irtsim.yaml")
    reference, _ = full_stage(obj, first, readapt=False)
    real_call = quadrature_opt.Readapting.__call__
    calls = [0]

    def jittered(self, x):
        F, g = real_call(self, x)
        calls[0] += 1
        return F - 1e-3 * calls[0], g  # each new point looks 1e-3 worse: steps that gain less cannot be seen

    stalls: list[bool] = []
    readapting: list[bool] = []
    real_ascend = quadrature_opt.ascend

    def watched_ascend(fg, *args, **kwargs):
        readapting.append(isinstance(fg, quadrature_opt.Readapting))
        st = real_ascend(fg, *args, **kwargs)
        stalls.append(st.stalled)
        return st

    monkeypatch.setattr(quadrature_opt.Readapting, "__call__", jittered)
    monkeypatch.setattr(quadrature_opt, "ascend", watched_ascend)
    out, n = full_stage(obj, first, readapt=True)
    assert any(stalls), "the jittering re-adapted value should stall a line search"
    first_stall = stalls.index(True)
    assert readapting[first_stall] and len(readapting) > first_stall + 1 and not any(readapting[first_stall + 1:]), \
        "frozen rounds after the first stall"
    assert out.converged, out.message
    assert n < 40, f"{n} evaluations: line searches on the jittering value should be cut short"
    assert out.loglik == pytest.approx(reference.loglik, abs=1e-6)
    np.testing.assert_allclose(out.free, reference.free, atol=5e-4)
