"""sam_course._checks: the one set of validators, and the messages every public function shows."""

import math
import re
import sys

import numpy as np
import pytest
import torch

from sam_course._checks import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_instance,
    check_int,
    check_optional_int,
    check_optional_real,
    check_real,
    interval,
    is_int,
    is_real,
    warn_at_caller,
)


@pytest.mark.parametrize("value, expected", [(3, True), (np.int64(3), True), (True, False), (3.0, False), ("3", False)])
def test_is_int(value, expected):
    assert is_int(value) is expected


def test_is_real():
    assert is_real(0.5) and is_real(np.float32(0.5)) and is_real(3) and is_real(math.nan)
    assert not is_real(True) and not is_real("0.5") and not is_real(None)


@pytest.mark.parametrize("low, high, kwargs, expected", [
    (0, math.inf, {}, ">= 0"), (0, math.inf, {"low_open": True}, "> 0"), (-math.inf, 1, {}, "<= 1"),
    (0, 1, {"high_open": True}, "in [0, 1)"), (0, 2**63 - 1, {}, f"in [0, {2**63 - 1}]"), (0.5, 1.5, {}, "in [0.5, 1.5]"),
])
def test_interval_in_words(low, high, kwargs, expected):
    assert interval(low, high, **kwargs) == expected


def test_check_int_returns_a_plain_int_and_names_argument_range_and_value():
    assert check_int("epochs", np.int64(3), 1) == 3 and type(check_int("epochs", np.int64(3), 1)) is int
    with pytest.raises(ValueError, match=r"^epochs must be an int >= 1, got 0$"):
        check_int("epochs", 0, 1)
    with pytest.raises(ValueError, match=r"^k must be an int in \[1, 5\], got 6$"):
        check_int("k", 6, 1, 5)
    with pytest.raises(ValueError, match=r"^n must be an int, got 2.0$"):
        check_int("n", 2.0)
    with pytest.raises(ValueError, match="flag must be an int >= 0, got True"):
        check_int("flag", True, 0)
    assert check_optional_int("m", None, 1) is None


def test_check_real():
    assert check_real("rho", np.float32(0.5), 0) == 0.5 and type(check_real("rho", 1, 0)) is float
    with pytest.raises(ValueError, match=r"^rho must be a finite number >= 0, got -1$"):
        check_real("rho", -1, 0)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got 0$"):
        check_real("lr", 0, 0, low_open=True)
    with pytest.raises(ValueError, match=r"must be a finite number in \[0, 1\), got 1"):
        check_real("fraction", 1, 0, 1, high_open=True)
    for bad in (math.nan, math.inf, "a", None, True):
        with pytest.raises(ValueError, match="^rho must be a finite number >= 0, got "):
            check_real("rho", bad, 0)
    assert check_real("p", math.inf, 1, allow_inf=True) == math.inf
    with pytest.raises(ValueError, match=r"p must be a number in \[1, inf\] \(float\('inf'\) allowed\), got 0.5"):
        check_real("p", 0.5, 1, allow_inf=True)
    assert check_optional_real("x", None) is None


def test_a_zero_dimensional_tensor_is_not_silently_taken_for_a_number():
    with pytest.raises(ValueError, match="rho must be a finite number"):
        check_real("rho", torch.tensor(0.5), 0)


def test_check_choice_and_bool():
    assert check_choice("schedule", "cosine", ("constant", "cosine")) == "cosine"
    with pytest.raises(ValueError, match=r"^schedule must be one of 'constant', 'cosine', got 'cos'$"):
        check_choice("schedule", "cos", ("constant", "cosine"))
    with pytest.raises(ValueError, match="must be one of"):
        check_choice("schedule", ["unhashable"], ("constant",))
    assert check_bool("adaptive", np.bool_(True)) is True
    with pytest.raises(ValueError, match=r"^freeze_bn_stats must be True or False, got 'no'$"):
        check_bool("freeze_bn_stats", "no")


# --------------------------------------------------------------------------- kinds of numbers (issue 14)


@pytest.mark.parametrize("value", [np.int8(3), np.int16(3), np.int32(3), np.int64(3), np.uint8(3), np.uint64(3)])
def test_numpy_integers_pass_as_plain_ints(value):
    result = check_int("n", value, 1, 5)
    assert result == 3 and type(result) is int


@pytest.mark.parametrize("value", [np.float16(0.5), np.float32(0.5), np.float64(0.5), np.longdouble(0.5), np.int64(2)])
def test_numpy_reals_pass_as_plain_floats(value):
    result = check_real("rho", value, 0)
    assert result == float(value) and type(result) is float


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 2.0, np.float64(2.0), "2", None, torch.tensor(2), 2 + 0j])
def test_check_int_refuses_other_kinds_with_a_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^epochs must be an int >= 1, got ") as error:
        check_int("epochs", value, 1)
    assert isinstance(error.value, ArgumentTypeError) and isinstance(error.value, ValueError)
    assert repr(value) in str(error.value)


@pytest.mark.parametrize("value", ["a", "0.1", None, True, np.bool_(False), [0.1], torch.tensor(0.1), 1j])
def test_check_real_refuses_other_kinds_with_a_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^rho must be a finite number >= 0, got ") as error:
        check_real("rho", value, 0)
    assert repr(value) in str(error.value)


@pytest.mark.parametrize("value", [math.nan, np.float32("nan"), -math.inf, math.inf, np.float64(-0.5), -1, 10**400])
def test_check_real_refuses_nan_infinities_and_out_of_range_with_a_value_error(value):
    with pytest.raises(ValueError, match=r"^rho must be a finite number >= 0, got ") as error:
        check_real("rho", value, 0)
    assert not isinstance(error.value, TypeError)


def test_a_huge_integer_is_not_rounded_to_infinity():
    with pytest.raises(ValueError, match=r"^p must be a number in \[1, inf\]"):
        check_real("p", 10**400, 1, allow_inf=True)
    assert check_real("p", 10**300, 1, allow_inf=True) == 1e300


@pytest.mark.parametrize("value", [np.int64(0), np.int64(6), np.uint8(0)])
def test_numpy_integers_out_of_range_give_a_value_error_with_range_and_value(value):
    with pytest.raises(ValueError, match=rf"^k must be an int in \[1, 5\], got .*{int(value)}") as error:
        check_int("k", value, 1, 5)
    assert not isinstance(error.value, TypeError)


def test_check_choice_refuses_bool_for_one_and_arrays():
    assert check_choice("m", 1, (1, 2)) == 1
    for flag in (True, np.bool_(True)):
        with pytest.raises(ValueError, match=r"^m must be one of 1, 2, got (np\.)?True"):
            check_choice("m", flag, (1, 2))
    assert check_choice("flag", True, (True, None)) is True
    with pytest.raises(ValueError, match=r"^m must be one of 1, 2, got array"):
        check_choice("m", np.array([1, 2]), (1, 2))


@pytest.mark.parametrize("value", ["no", "False", 0, 1, None, torch.tensor(True)])
def test_check_bool_refuses_everything_but_bools_with_a_type_error(value):
    with pytest.raises(TypeError, match=rf"^adaptive must be True or False, got {re.escape(repr(value))}$"):
        check_bool("adaptive", value)


def test_check_instance_names_the_argument_the_kinds_and_the_value():
    t = torch.zeros(2)
    assert check_instance("inputs", t, torch.Tensor) is t
    with pytest.raises(ArgumentTypeError, match=r"^inputs must be a torch.Tensor, got \[1, 2\] \(list\)$"):
        check_instance("inputs", [1, 2], torch.Tensor, "torch.Tensor")
    with pytest.raises(ArgumentTypeError, match=r"^x must be a int or float, got 'a' \(str\)$"):
        check_instance("x", "a", (int, float))


def test_warn_at_caller_skips_every_package_frame():
    import warnings

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warn_at_caller("here", UserWarning)  # called from outside the package: this line
    assert record[0].filename == __file__ and record[0].lineno == sys._getframe().f_lineno - 1
