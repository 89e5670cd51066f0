"""The one set of argument validators of the package: every public function checks its arguments here.

Every validator takes ``(name, value, ...)``, returns the value in its plain Python type (so a
NumPy or 0-d torch number passes as an ``int`` or ``float``), and raises a :class:`ValueError`
that names the argument, states what is allowed and shows the value received::

    check_int("epochs", 0, low=1)        # ValueError: epochs must be an int >= 1, got 0
    check_real("rho", -1, low=0)          # ValueError: rho must be a finite number >= 0, got -1
    check_choice("schedule", "cos", ("constant", "cosine"))

This module imports nothing but the standard library, so every layer, the optimizer core
included, may use it (``ARCHITECTURE.md``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

__all__ = [
    "is_int",
    "is_real",
    "check_int",
    "check_optional_int",
    "check_real",
    "check_optional_real",
    "check_choice",
    "check_bool",
    "interval",
]


def is_int(value) -> bool:
    """True for an integer that is not a ``bool`` (Python, NumPy or 0-d torch integers)."""
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
    """``value`` as an ``int`` with ``low <= value <= high`` (either bound may be ``None``)."""
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        allowed = interval(-math.inf if low is None else low, math.inf if high is None else high)
        raise ValueError(f"{name} must be an int{'' if allowed == 'of any value' else ' ' + allowed}, got {value!r}")
    return int(value)


def check_optional_int(name: str, value, low: int | None = None, high: int | None = None) -> int | None:
    """``None``, or ``value`` checked by :func:`check_int`."""
    return None if value is None else check_int(name, value, low, high)


def check_real(name: str, value, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
               high_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a ``float`` in the interval from ``low`` to ``high`` (closed unless ``*_open``).

    NaN is always refused; ``+-inf`` only with ``allow_inf`` (and then only where the bounds
    allow it).
    """
    received = value
    ok = is_real(value) and not math.isnan(value)
    if ok:
        value = float(value)
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        ok = ok and (allow_inf or math.isfinite(value))
    if not ok:
        if allow_inf and math.isinf(high) and not high_open and math.isfinite(low):
            allowed = f"in {'(' if low_open else '['}{_bound(low)}, inf] (float('inf') allowed)"
        else:
            allowed = interval(low, high, low_open=low_open, high_open=high_open)
        raise ValueError(f"{name} must be a {'number' if allow_inf else 'finite number'} {allowed}, got {received!r}")
    return value


def check_optional_real(name: str, value, low: float = -math.inf, high: float = math.inf, **kwargs) -> float | None:
    """``None``, or ``value`` checked by :func:`check_real`."""
    return None if value is None else check_real(name, value, low, high, **kwargs)


def check_choice(name: str, value, allowed: Iterable):
    """``value`` when it is one of ``allowed``; the message lists them."""
    allowed = tuple(allowed)
    try:
        ok = value in allowed
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` when it is a ``bool`` (or a NumPy bool); a string such as ``"no"`` is refused."""
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    if isinstance(value, bool) or numpy_bool:
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")
