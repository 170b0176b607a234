"""validate() rejects responses a family cannot produce, saying what is wrong and in how many rows."""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.errors import DataError
from mlmrun.families import get_family


def test_valid_data_pass():
    get_family("gaussian").validate(np.array([-1.5, 0.0, 2.0]), None)
    get_family("binomial").validate(np.array([0, 1, 1]), None)
    get_family("binomial").validate(np.array([True, False]), None)
    get_family("binomial").validate(np.array([0.0, 3.0, 5.0]), np.array([2, 3, 5]))
    get_family("poisson").validate(np.array([0, 4, 17]), None)
    get_family("gamma").validate(np.array([0.1, 3.0]), None)
    get_family("ordinal").validate(np.array([2, 0, 1, 1]), None)


def test_binomial_without_trials_must_be_binary():
    with pytest.raises(DataError, match=r"0 or 1.*1 of 3 rows.*2 \(y=2\)"):
        get_family("binomial").validate(np.array([0.0, 1.0, 2.0]), None)


def test_binomial_successes_cannot_exceed_trials():
    with pytest.raises(DataError, match=r"exceed.*2 of 3 rows"):
        get_family("binomial", "probit").validate(np.array([3.0, 1.0, 6.0]), np.array([2.0, 4.0, 5.0]))


@pytest.mark.parametrize(
    "y,trials,message",
    [
        ([0.0, -1.0], [2.0, 2.0], "non-negative integers"),
        ([0.5, 1.0], [2.0, 2.0], "non-negative integers"),
        ([0.0, 1.0], [0.0, 2.0], "trials must be integers >= 1"),
        ([0.0, 1.0], [1.5, 2.0], "trials must be integers >= 1"),
        ([0.0, 1.0], [2.0], "one value per row"),
    ],
)
def test_binomial_bad_counts_or_trials(y, trials, message):
    with pytest.raises(DataError, match=message):
        get_family("binomial").validate(np.array(y), np.array(trials))


def test_poisson_rejects_negative():
    with pytest.raises(DataError, match=r"non-negative integers.*1 of 3 rows"):
        get_family("poisson").validate(np.array([0.0, -2.0, 3.0]), None)


def test_poisson_rejects_non_integer():
    with pytest.raises(DataError, match=r"non-negative integers.*2 of 4 rows"):
        get_family("poisson").validate(np.array([0.0, 1.5, 3.0, 0.1]), None)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_gamma_rejects_non_positive(bad):
    with pytest.raises(DataError, match="strictly positive"):
        get_family("gamma").validate(np.array([1.0, bad]), None)


def test_ordinal_rejects_empty_category():
    with pytest.raises(DataError, match=r"1 empty category: 1"):
        get_family("ordinal").validate(np.array([0, 2, 2, 0]), None)


@pytest.mark.parametrize("y", [[0.0, 0.5, 1.0], [-1.0, 0.0, 1.0]])
def test_ordinal_rejects_non_codes(y):
    with pytest.raises(DataError, match="category codes"):
        get_family("ordinal", "probit").validate(np.array(y), None)


def test_ordinal_needs_two_categories():
    with pytest.raises(DataError, match="at least 2 categories"):
        get_family("ordinal").validate(np.zeros(5), None)


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson", "gamma", "ordinal"])
def test_non_finite_and_malformed_responses(family):
    with pytest.raises(DataError, match="finite"):
        get_family(family).validate(np.array([1.0, np.nan, 1.0, 0.0]), None)
    with pytest.raises(DataError, match="one-dimensional"):
        get_family(family).validate(np.ones((2, 2)), None)
    with pytest.raises(DataError, match="numeric"):
        get_family(family).validate(np.array(["a", "b"]), None)


def test_message_lists_first_rows_only():
    y = np.full(20, 3.0)
    with pytest.raises(DataError, match=r"20 of 20 rows.*4 \(y=3\), \.\.\.$"):
        get_family("binomial").validate(y, None)
