"""Parameter values in a spec (fixed, started) must be finite and inside the parameter's range: exit 2 at the key.

Before, `constraints: {fix: {week: .nan}}` ended in an internal error (exit 3)
and a negative starting SD in a non-converged fit (exit 1).
"""

from __future__ import annotations

import pytest

from tests.compile_errors.helpers import position, refused, write

PIG = """\
name: values
data: {path: pig.csv}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1, week], covariance: unstructured}
"""
WINE = """\
name: values
data: {path: wine.csv}
levels:
  - {name: judge, id: judge}
responses:
  - {name: rating, family: ordinal, link: logit}
fixed: "rating ~ temp + contact"
random:
  - {level: judge, terms: [1]}
"""


@pytest.mark.parametrize("extra, needle, hint", [
    ("constraints: {fix: {week: .nan}}", ".nan", "not a finite number; write a number"),
    ('constraints: {fix: {"sd(_cons)@pig": .inf}}', ".inf", "not a finite number"),
    ("estimation: {start: {week: -.inf}}", "-.inf", "not a finite number"),
    ("latent: [{name: f, level: pig, loadings: {on: [week], fix: {week: .nan}}}]", ".nan", "not a finite number"),
    ("estimation: {start: {sd(_cons)@pig: -1}}", "-1", "must start strictly between 0 and inf"),
    ('estimation: {start: {"corr(week,_cons)@pig": 1}}', "1}", "strictly between -1 and 1"),
    ('estimation: {start: {"sd(Residual)": 0}}', "0}", "start it at a positive value"),
])
def test_a_value_outside_the_parameter_range_is_refused_at_its_key(tmp_path, capsys, extra, needle, hint):
    text = PIG + extra + "\n"
    ((line, col, what),) = refused(write(tmp_path, text, ("pig.csv",)), capsys)
    assert (line, col) == position(text, needle, text.count(needle) if needle == "1}" else 1)
    assert hint in what


def test_starting_thresholds_must_increase(tmp_path, capsys):
    text = WINE + "estimation: {start: {cut2: 5, cut3: 4}}\n"
    ((line, col, what),) = refused(write(tmp_path, text, ("wine.csv",)), capsys)
    assert (line, col) == position(text, "4}}") and "thresholds must increase" in what
