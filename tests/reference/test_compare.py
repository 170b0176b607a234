"""The comparison helpers must fail on perturbed targets, not only pass on good ones (the semopy lesson)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference.compare import assert_close, load_reference, loglik_tolerance, printed_half_unit, sig_tolerance


def test_passes_within_tolerance() -> None:
    assert_close("loglik", -1014.92679, -1014.9268, abs_tol=1e-3)
    assert_close("sd", 0.6066847, 0.6066851, sig_digits=4)
    assert_close("both", 2.0936250, 2.093625, abs_tol=1e-5, sig_digits=6)
    assert_close("array", [1.0, 2.0], np.array([1.00001, 2.00001]), sig_digits=4)


@pytest.mark.parametrize("shift", [2e-3, -2e-3, 0.5])
def test_fails_on_perturbed_loglik(shift: float) -> None:
    with pytest.raises(AssertionError, match="absolute tolerance"):
        assert_close("loglik", -1014.9268, -1014.9268 + shift, abs_tol=1e-3)


@pytest.mark.parametrize("target", [0.6066851, 2.599301, 1447.6784, -0.0058983, 3.0e-6])
def test_fails_on_target_perturbed_in_fourth_digit(target: float) -> None:
    assert_close("sixth digit", target * (1 + 1e-6), target, sig_digits=4)
    with pytest.raises(AssertionError, match="4 significant digits"):
        assert_close("param", target, target * (1 + 1e-3), sig_digits=4)


def test_fails_on_one_bad_array_element_and_names_it() -> None:
    with pytest.raises(AssertionError, match=r"vcov\[1, 0\]"):
        assert_close("vcov", [[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.1, 4.0]], sig_digits=4)


def test_fails_on_nan_and_shape_mismatch() -> None:
    with pytest.raises(AssertionError, match="nan"):
        assert_close("se", float("nan"), 1.0, abs_tol=1.0)
    with pytest.raises(AssertionError, match="shape"):
        assert_close("beta", [1.0, 2.0], [1.0], abs_tol=1.0)


@pytest.mark.parametrize("target", [None, float("nan"), [1.0, None], [1.0, float("nan")], np.array([np.nan]),
                                    float("inf"), [[1.0], [None]]])
def test_fails_when_the_target_is_null_or_not_a_number(target) -> None:
    """A reference value read as null or NaN must fail the comparison, whatever ours is and however wide the tolerance."""
    ours = np.ones(np.shape(np.asarray(target, dtype=object))) if isinstance(target, list | np.ndarray) else 1.0
    with pytest.raises(AssertionError, match="target is"):
        assert_close("loglik", ours, target, abs_tol=1e9)
    with pytest.raises(AssertionError, match="target is"):
        assert_close("loglik", ours, target, sig_digits=1)


def test_fails_when_both_are_nan() -> None:
    with pytest.raises(AssertionError):
        assert_close("se", float("nan"), float("nan"), abs_tol=1.0)


def test_needs_a_tolerance() -> None:
    with pytest.raises(ValueError):
        assert_close("x", 1.0, 1.0)


def test_sig_tolerance_is_half_a_unit_in_the_last_digit() -> None:
    assert sig_tolerance(0.6066851, 4) == pytest.approx(5e-5)
    assert sig_tolerance(1447.6784, 4) == pytest.approx(0.5)
    assert sig_tolerance(-0.0058983, 3) == pytest.approx(5e-6)


def test_load_reference_walks_keys_and_explains_misses() -> None:
    assert load_reference("pig__ri_ml", "loglik") == pytest.approx(-1014.9268)
    assert load_reference("sleepstudy__rs_ml", "results", "fixed_effects", 1, "name") == "Days"
    with pytest.raises(KeyError, match="available"):
        load_reference("pig__ri_ml", "fixed_effect")
    with pytest.raises(FileNotFoundError, match="no reference file"):
        load_reference("pig__no_such_model")


def test_loglik_tolerance_is_the_printed_precision_with_a_floor() -> None:
    assert printed_half_unit(-1014.9268) == pytest.approx(5e-5)
    assert printed_half_unit(-1013.824) == pytest.approx(5e-4)
    assert loglik_tolerance(-1014.9268) == pytest.approx(5e-5)
    assert loglik_tolerance(-875.969672231599) == 1e-6
