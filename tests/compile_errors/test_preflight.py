"""validate runs every check fit makes before optimising: each refusal exits 2 in both, at the same key.

The checks on the estimation path (mlmrun/estimate and the integration plan)
are: REML outside linear Gaussian models, latent variables at crossed levels
under quadrature, the integration settings (points, Laplace, adapt, point
checks) and the quadrature's memory budget. Each is walked here; a spec that
passes them reaches the optimiser on every estimation path.
"""

from __future__ import annotations

import pytest

from mlmrun.errors import SpecError
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.compile_errors.helpers import position, refused, write

CBPP = """\
name: pre
data: {path: cbpp.csv}
levels:
  - {name: herd, id: herd}
responses:
  - {name: incidence, family: binomial, link: logit, trials: size}
fixed: "incidence ~ C(period)"
random:
  - {level: herd, terms: [1]}
estimation:
  method: ML
  integration: {method: adaptive, points: 8}
"""
PIG = """\
name: pre
data: {path: pig.csv}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1]}
estimation:
  method: ML
  integration: {method: adaptive, points: 8}
"""
CROSSED_PERIOD = ("  - {name: herd, id: herd}\n", "  - {name: herd, id: herd}\n  - {name: per, id: period, crossed: true}\n")
PERIOD_EFFECT = ("  - {level: herd, terms: [1]}\n", "  - {level: herd, terms: [1]}\n  - {level: per, terms: [1]}\n")
CROSSED_WEEK = ("  - {name: pig, id: id}\n", "  - {name: pig, id: id}\n  - {name: wk, id: week, crossed: true}\n")
WEEK_EFFECT = ("  - {level: pig, terms: [1]}\n", "  - {level: pig, terms: [1]}\n  - {level: wk, terms: [1]}\n")


def _spec(base: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert old in base, old
        base = base.replace(old, new)
    return base


INTEGRATION = "{method: adaptive, points: 8}"
# name: (spec text, the text the error points at and its occurrence, words of the hint)
CHECKS = {
    "REML with a binomial response": (
        _spec(CBPP, ("method: ML", "method: REML")), ("REML", 1), "write `method: ML`"),
    "REML with quadrature forced on a gaussian model": (
        _spec(PIG, ("method: ML", "method: REML\n  exact: false")), ("REML", 1), "`exact: false` asks for quadrature"),
    "latent variables at a crossed level, binomial": (
        _spec(CBPP, CROSSED_PERIOD, PERIOD_EFFECT), ("crossed", 1), "every response gaussian"),
    "latent variables at a crossed level, gaussian forced to quadrature": (
        _spec(PIG, CROSSED_WEEK, WEEK_EFFECT, ("method: ML", "method: ML\n  exact: false")), ("crossed", 1),
        "`estimation.exact: false` asks for quadrature; drop it"),
    "laplace with points": (
        _spec(CBPP, (INTEGRATION, "{method: laplace, points: 7}")), ("7}", 1), "laplace uses one adaptive point"),
    "laplace with a point check": (
        _spec(CBPP, (INTEGRATION, "{method: laplace}\n  check_points: [8]")), ("[8]", 1), "no points to vary"),
    "points for a name that is not a level": (
        _spec(CBPP, (INTEGRATION, "{points: {herd: 8, period: 4}}")), ("period: 4", 1), "'period' is not a level"),
    "points for a level without latent variables": (
        _spec(CBPP, CROSSED_PERIOD, (INTEGRATION, "{points: {herd: 8, per: 3}}")), ("per: 3", 1),
        "'per' has no latent variables"),
    "zero points": (
        _spec(CBPP, (INTEGRATION, "{points: 0}")), ("0}", 1), "at least 1 point"),
    "zero points at a level": (
        _spec(CBPP, (INTEGRATION, "{points: {herd: 0}}")), ("0}", 1), "at least 1 point"),
    "mean adaptation with laplace": (
        _spec(CBPP, (INTEGRATION, "{method: laplace, adapt: mean}")), ("mean", 1), "use `adapt: mode`"),
    "mean adaptation with one point": (
        _spec(CBPP, (INTEGRATION, "{points: 1, adapt: mean}")), ("mean", 1), "use `adapt: mode`"),
    "a point check at a name that is not a latent level": (
        _spec(CBPP, (INTEGRATION, INTEGRATION + "\n  check_points: [{hrd: 9}]")), ("hrd", 1),
        "give points for ['herd']"),
    "a point check with zero points": (
        _spec(CBPP, (INTEGRATION, INTEGRATION + "\n  check_points: [12, 0]")), ("0]", 1), "at least 1 point"),
    "quadrature over the memory budget": (
        _spec(CBPP, (INTEGRATION, "{points: 100000}")), ("100000", 1), "memory budget of 4 GiB"),
    "a point check over the memory budget": (
        _spec(CBPP, (INTEGRATION, INTEGRATION + "\n  check_points: [12, 100000]")), ("100000", 1),
        "check with at most"),
}


@pytest.mark.parametrize("command", ["validate", "fit"])
@pytest.mark.parametrize("check", list(CHECKS))
def test_every_fit_check_refuses_in_validate_at_its_key(tmp_path, capsys, check, command):
    text, (needle, occurrence), hint = CHECKS[check]
    path = write(tmp_path, text, ("cbpp.csv", "pig.csv"))
    ((line, col, what),) = refused(path, capsys, command)
    assert (line, col) == position(text, needle, occurrence), what
    assert hint in what
    assert not (tmp_path / "out").exists()


class _Reached(Exception):
    """Raised by the progress callback: the optimiser's first iteration was reached."""


def _first_iteration(iteration: int, loglik: float) -> None:
    raise _Reached


@pytest.mark.parametrize("text", [
    CBPP,
    _spec(CBPP, (INTEGRATION, "{method: ghq, points: 6}")),
    _spec(CBPP, (INTEGRATION, "{method: laplace}")),
    _spec(CBPP, (INTEGRATION, "{points: 6, adapt: mean}\n  check_points: [{herd: 9}, 7]")),
    _spec(CBPP, CROSSED_PERIOD, (INTEGRATION, "{points: {herd: 7}}")),
    _spec(PIG, ("method: ML", "method: REML")),
    _spec(PIG, CROSSED_WEEK, WEEK_EFFECT),
    _spec(PIG, ("method: ML", "method: ML\n  exact: false")),
], ids=["adaptive", "ghq", "laplace", "mean+check", "points per level", "REML", "crossed gaussian", "forced quadrature"])
def test_a_spec_that_validates_reaches_the_optimiser(tmp_path, text):
    """No SpecError between validate's checks and the first iteration, on every estimation path."""
    model = prepare(write(tmp_path, text, ("cbpp.csv", "pig.csv"))).model
    with pytest.raises(_Reached):
        estimate(model, _first_iteration)


def test_estimate_refuses_what_preflight_refuses(tmp_path):
    """The REML check in estimate() and the pre-flight one agree (a model compiled without prepare)."""
    from mlmrun.compile import compile_model
    from mlmrun.data.load import load_data
    from mlmrun.likelihood.preflight import preflight
    from mlmrun.spec.loader import load_spec

    path = write(tmp_path, _spec(CBPP, ("method: ML", "method: REML")), ("cbpp.csv",))
    spec, _ = load_spec(path)
    model = compile_model(spec, load_data(spec.data, path.parent))
    with pytest.raises(SpecError, match="REML"):
        preflight(model)
    with pytest.raises(SpecError, match="REML"):
        estimate(model)
