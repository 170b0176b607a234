"""`constraints:` fixes any parameter or sets any group of parameters equal, by parameter-table name."""

from __future__ import annotations

import pytest

from mlmrun.errors import SpecError
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.conftest import write_spec
from tests.reference.compare import load_reference

PIG = """
name: pig
data: {path: data/pig.csv}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1, week], covariance: unstructured}
"""


def test_fixing_a_correlation_at_zero_equals_the_independent_model(spec_dir):
    fixed = estimate(prepare(write_spec(spec_dir, PIG + 'constraints: {fix: {"corr(week,_cons)@pig": 0}}\n')).model)
    indep = estimate(prepare(write_spec(spec_dir, PIG.replace("unstructured", "independent"), "b.yaml")).model)
    assert fixed.loglik == pytest.approx(indep.loglik, abs=1e-6)
    # Stata manual, xtmixed weight week || id: week, printed to 5 decimals
    assert fixed.loglik == pytest.approx(load_reference("pig__rs_ind_ml", "loglik"), abs=5e-6)
    pt = fixed.model.partable
    assert fixed.values[pt.index("corr(week,_cons)@pig")] == 0.0


def test_equal_constraint_shares_one_free_parameter(spec_dir):
    model = prepare(write_spec(spec_dir, PIG + 'constraints: {equal: [["sd(_cons)@pig", "sd(week)@pig"]]}\n')).model
    frame = model.partable.frame.set_index("name")
    assert frame.at["sd(_cons)@pig", "free"] == frame.at["sd(week)@pig", "free"] > 0
    fit = estimate(model)
    assert fit.values[model.partable.index("sd(_cons)@pig")] == fit.values[model.partable.index("sd(week)@pig")]


def test_fixing_a_fixed_effect_is_respected(spec_dir):
    fit = estimate(prepare(write_spec(spec_dir, PIG + "constraints: {fix: {week: 6.0}}\n")).model)
    assert fit.values[fit.model.partable.index("week")] == 6.0


@pytest.mark.parametrize("text, message", [
    ('constraints: {fix: {"sd(_con)@pig": 1}}', "did you mean 'sd(_cons)@pig'"),
    ('constraints: {fix: {"sd(_cons)@pig": -1}}', ">= 0"),
    ('constraints: {equal: [["week", "sd(week)@pig"]]}', "different kinds"),
])
def test_bad_constraints_are_spec_errors(spec_dir, text, message):
    with pytest.raises(SpecError) as err:
        prepare(write_spec(spec_dir, PIG + text + "\n"))
    assert message in "\n".join(err.value.problems) + str(err.value)
