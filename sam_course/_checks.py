"""The one set of argument validators of the package: every public function checks its arguments here.

Every validator takes ``(name, value, ...)``, returns the value in its plain Python type (so a
NumPy scalar such as ``np.int64(3)`` or ``np.float32(0.5)`` passes as an ``int`` or ``float``;
a ``bool``, a string, a 0-d tensor does not), and raises an error that names the argument, states
what is allowed and shows the value received: :class:`ArgumentTypeError` (a ``TypeError`` that
is also a ``ValueError``) for a value of the wrong kind, :class:`ValueError` for one of the right
kind out of range (NaN included)::

    check_int("epochs", 0, low=1)        # ValueError: epochs must be an int >= 1, got 0
    check_real("rho", -1, low=0)          # ValueError: rho must be a finite number >= 0, got -1
    check_choice("schedule", "cos", ("constant", "cosine"))

:func:`check_instance` refuses an object of the wrong class the same way, and
:func:`warn_at_caller` attributes a warning about the user's call to the user's line, however
deep inside the package it is raised.

This module imports nothing but the standard library, so every layer, the optimizer core
included, may use it (``ARCHITECTURE.md``).
"""

from __future__ import annotations

import math
import numbers
import os
import reprlib
import sys
import warnings
from collections.abc import Iterable

__all__ = [
    "ArgumentTypeError",
    "is_int",
    "is_real",
    "check_int",
    "check_optional_int",
    "check_real",
    "check_optional_real",
    "check_choice",
    "check_bool",
    "check_instance",
    "check_items",
    "wrong_kind",
    "interval",
    "warn_at_caller",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind (a string for a number, a float for an int, ``"no"`` for a bool).

    A ``TypeError``, as Python raises for a wrong type, and a ``ValueError`` too, so that code
    which catches the package's ``ValueError`` for every bad argument keeps working.
    """


def is_int(value) -> bool:
    """True for an integer that is not a ``bool`` (Python and NumPy integers; not a 0-d tensor)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """True for a real number that is not a ``bool`` (NaN and infinities included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bound(value: float) -> str:
    # Integers exactly (2**63 - 1, not 9.22337e+18); floats in their shortest form.
    return str(value) if is_int(value) else f"{value:g}"


def interval(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> str:
    """The allowed range in words: ``">= 0"``, ``"> 0"``, ``"<= 1"`` or ``"in [0, 1)"``."""
    if math.isinf(high) and math.isinf(low):
        return "of any value"
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {_bound(low)}"
    if math.isinf(low):
        return f"{'<' if high_open else '<='} {_bound(high)}"
    return f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` with ``low <= value <= high`` (either bound may be ``None``).

    Raises:
        ArgumentTypeError: for anything but a Python or NumPy integer (``bool`` and ``2.0`` included).
        ValueError: for an integer outside the bounds.
    """
    kind_ok = is_int(value)
    if kind_ok and (low is None or value >= low) and (high is None or value <= high):
        return int(value)
    allowed = interval(-math.inf if low is None else low, math.inf if high is None else high)
    message = f"{name} must be an int{'' if allowed == 'of any value' else ' ' + allowed}, got {value!r}"
    raise ValueError(message) if kind_ok else ArgumentTypeError(message)


def check_optional_int(name: str, value, low: int | None = None, high: int | None = None) -> int | None:
    """``None``, or ``value`` checked by :func:`check_int`."""
    return None if value is None else check_int(name, value, low, high)


def check_real(name: str, value, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
               high_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a ``float`` in the interval from ``low`` to ``high`` (closed unless ``*_open``).

    NaN is always refused; ``+-inf`` only with ``allow_inf`` (and then only where the bounds
    allow it); an integer too large for a float (``10**400``) is refused, never rounded to inf.

    Raises:
        ArgumentTypeError: for anything but a Python or NumPy real number (``bool``, ``"0.1"``,
            ``None`` and 0-d tensors included).
        ValueError: for NaN, an infinity not allowed, or a number outside the interval.
    """
    received = value
    kind_ok = is_real(value)
    ok = kind_ok
    if ok:
        try:
            value = float(value)
        except OverflowError:
            ok = False
    if ok:
        ok = not math.isnan(value)
        ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        ok = ok and (allow_inf or math.isfinite(value))
    if ok:
        return value
    if allow_inf and math.isinf(high) and not high_open and math.isfinite(low):
        allowed = f"in {'(' if low_open else '['}{_bound(low)}, inf] (float('inf') allowed)"
    else:
        allowed = interval(low, high, low_open=low_open, high_open=high_open)
    message = f"{name} must be a {'number' if allow_inf else 'finite number'} {allowed}, got {received!r}"
    raise ValueError(message) if kind_ok else ArgumentTypeError(message)


def check_optional_real(name: str, value, low: float = -math.inf, high: float = math.inf, **kwargs) -> float | None:
    """``None``, or ``value`` checked by :func:`check_real`."""
    return None if value is None else check_real(name, value, low, high, **kwargs)


def check_choice(name: str, value, allowed: Iterable):
    """``value`` when it is one of ``allowed``; the message lists them.

    ``True`` does not pass for an allowed ``1`` (``True == 1`` in Python), nor an array for anything.
    """
    allowed = tuple(allowed)
    try:
        # bool(...) too: an array compares elementwise and has no truth value.
        ok = bool(value in allowed)
        if ok and _is_bool(value):
            ok = any(_is_bool(a) and bool(a) == bool(value) for a in allowed)
    except (TypeError, ValueError, RuntimeError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _is_bool(value) -> bool:
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"))


def check_bool(name: str, value) -> bool:
    """``value`` when it is a ``bool`` (or a NumPy bool); a string such as ``"no"`` is refused."""
    if _is_bool(value):
        return bool(value)
    raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")


def check_instance(name: str, value, kinds: type | tuple[type, ...], what: str | None = None):
    """``value`` when it is an instance of ``kinds`` (a class or a tuple of classes).

    ``what`` names the allowed kinds in the message (default: the classes' names)::

        check_instance("inputs", [1, 2], torch.Tensor, "torch.Tensor")
        # ArgumentTypeError: inputs must be a torch.Tensor, got [1, 2] (list)
    """
    if isinstance(value, kinds):
        return value
    if what is None:
        what = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
    raise wrong_kind(name, value, what)


def check_items(name: str, value, kinds: type | tuple[type, ...], what: str) -> list:
    """``value`` as a list when it is a list or tuple of instances of ``kinds`` (``what`` names them).

    A string, a tensor or a dict is refused, not iterated::

        check_items("metrics", "acc", str, "str")
        # ArgumentTypeError: metrics must be a list or tuple of str, got 'acc' (str)
    """
    if isinstance(value, (list, tuple)) and all(isinstance(v, kinds) for v in value):
        return list(value)
    raise wrong_kind(name, value, f"list or tuple of {what}")


def wrong_kind(name: str, value, what: str) -> ArgumentTypeError:
    """The error for ``value`` not being a ``what``, to raise where no ``check_*`` fits::

        raise wrong_kind("cls", 3, "torch.optim.Optimizer subclass")
        # ArgumentTypeError: cls must be a torch.optim.Optimizer subclass, got 3 (int)
    """
    shown = reprlib.repr(value)
    shown = f"a {type(value).__name__}" if "\n" in shown else f"{shown} ({type(value).__name__})"
    return ArgumentTypeError(f"{name} must be a {what}, got {shown}")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn(message, category)`` attributed to the first frame outside the package.

    A warning about the user's call (a data source that was asked for and is missing, a file moved
    aside) then shows the user's line, whichever internal function raised it and however deep.
    """
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
