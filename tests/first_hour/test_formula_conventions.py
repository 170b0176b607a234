"""Formulas as R users write them: I(age^2) is the square, `week^2` is refused, lme4 bars point to `random:`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from formulaic import Formula

from mlmrun.compile.design import _plain, fixed_design, parse_formula
from mlmrun.errors import SpecError

FRAME = pd.DataFrame({"week": [1.0, 2.0, 3.0, 4.0, 5.0], "age": [20.0, 31.0, 45.0, 52.0, 60.0]})


@pytest.mark.parametrize("text", ["y ~ week + I(week^2)", "y ~ week + I(week ^ 2)", "y ~ week + I(week**2)"])
def test_caret_inside_I_is_the_square(text):
    X, names = fixed_design(parse_formula(text), FRAME)
    np.testing.assert_array_equal(X[:, 2], FRAME["week"].to_numpy() ** 2)
    assert names[2] == "I(week ** 2)"


def test_caret_inside_a_centred_expression_is_the_power():
    X, _ = fixed_design(parse_formula("y ~ I((age - 40)^3)"), FRAME)
    np.testing.assert_allclose(X[:, 1], (FRAME["age"].to_numpy() - 40) ** 3)


@pytest.mark.parametrize("text, fix", [("y ~ week + week^2", "I(week^2)"), ("y ~ week + week**2", "I(week^2)"),
                                       ("y ~ log(age)^2", "I(log(age)^2)")])
def test_power_of_a_single_term_is_refused_with_the_I_to_write(text, fix):
    with pytest.raises(SpecError) as info:
        parse_formula(text)
    message = str(info.value)
    assert "is the term itself" in message and f"write {fix}" in message


def test_power_of_a_sum_still_expands_interactions():
    _, names = fixed_design(parse_formula("y ~ (week + age)^2"), FRAME)
    assert names == ("Intercept", "week", "age", "week:age")


@pytest.mark.parametrize("text, yaml", [
    ("y ~ week + (1 | id)", "`random: [{level: id, terms: [1]}]`"),
    ("y ~ week + (1 + week | id)", "`random: [{level: id, terms: [1, week], covariance: unstructured}]`"),
    ("y ~ week + (week || pig)", "`random: [{level: pig, terms: [1, week], covariance: independent}]`"),
    ("y ~ week + (0 + week | id)", "`random: [{level: id, terms: [week]}]`"),
])
def test_lme4_bar_term_gets_the_equivalent_random_yaml(text, yaml):
    with pytest.raises(SpecError) as info:
        parse_formula(text)
    message = str(info.value)
    assert "random effects go under `random:`" in message and yaml in message


def test_formulaic_messages_lose_their_terminal_colours():
    with pytest.raises(Exception) as info:  # noqa: B017 - whatever formulaic raises for a bad formula
        Formula("y ~ (x")
    assert "\x1b[" in str(info.value)  # formulaic colours the spot in its own message
    shown = _plain(info.value, 500)
    assert "\x1b" not in shown and "\n" not in shown and shown
