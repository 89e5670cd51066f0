"""Small helpers for the chapters' notebooks: what every chapter would otherwise copy.

``glue_number`` hands a number to ``myst_nb.glue`` as a plain Python ``int`` or ``float``. The
prose formats glued numbers with ``{glue:text}`name:.3f```, which cannot format NumPy or torch
scalars (NumPy 2 writes them as ``np.float64(...)``), and the strict book build turns that warning
into an error.
"""

from __future__ import annotations

import numbers

__all__ = ["as_plain_number", "glue_number"]


def as_plain_number(value) -> int | float:
    """``value`` (a Python, NumPy or 0-d torch number) as a plain ``int`` or ``float``.

    Booleans and integers become ``int``; everything else that converts with ``float()`` becomes
    ``float``.

    Raises:
        TypeError: when ``value`` is not a single number (a string, a list, a tensor of several
            entries...).
    """
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            raise TypeError(f"value must be a single number, got {type(value).__name__} of several entries") from None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"value must be a single number, got {value!r}")


def glue_number(name: str, value) -> None:
    """``myst_nb.glue(name, value)`` for a number, without displaying it.

    The value is converted by :func:`as_plain_number`, so ``{glue:text}`name:.2f``` works in the
    prose whatever kind of number the cell computed.
    """
    from myst_nb import glue

    glue(name, as_plain_number(value), display=False)
