"""How the planar helpers read their arguments: points, starts, boxes and dtypes.

The one place where a point of shape ``(..., 2)``, a set of starts ``(N, 2)``, a box
``((xmin, xmax), (ymin, ymax))`` or a floating dtype is checked, for
:mod:`~sam_course.planar.functions`, the runners, the endpoint analysis and the contour plots of
:mod:`sam_course.plotting`. Imports torch only.
"""

from __future__ import annotations

import torch

__all__ = ["Box", "Point", "as_points", "as_starts", "parse_box", "box_bounds", "check_dtype"]

#: A box ``((xmin, xmax), (ymin, ymax))`` in the functions' coordinates.
Box = tuple[tuple[float, float], tuple[float, float]]
#: A point ``(x, y)``.
Point = tuple[float, float]


def as_points(xy, name: str = "xy") -> torch.Tensor:
    """``xy`` as a floating tensor of shape ``(..., 2)`` (integers become the default dtype).

    Raises:
        ValueError: naming ``name`` and the shape received, if the last axis is not of size 2.
    """
    if not isinstance(xy, torch.Tensor):
        xy = torch.as_tensor(xy, dtype=torch.get_default_dtype())
    elif not xy.is_floating_point():
        xy = xy.to(torch.get_default_dtype())
    if xy.dim() == 0 or xy.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (..., 2), got {tuple(xy.shape)}")
    return xy


def as_starts(function, starts, dtype: torch.dtype) -> torch.Tensor:
    """``starts`` as a fresh ``dtype`` tensor of shape ``(N, 2)``, ``N >= 1``, of finite points in ``function.domain``.

    ``function`` is a :class:`~sam_course.planar.functions.TestFunction` (its ``contains`` and
    ``domain`` are used).

    Raises:
        ValueError: naming ``starts``, on the wrong shape or a point outside the domain (NaN included).
    """
    points = torch.as_tensor(starts, dtype=dtype).detach().clone()
    if points.dim() != 2 or points.shape[0] < 1 or points.shape[1] != 2:
        raise ValueError(f"starts must have shape (N, 2) with N >= 1, got {tuple(points.shape)}")
    if not (torch.isfinite(points).all() and function.contains(points)):
        raise ValueError(f"starts must lie in the domain {function.domain}")
    return points


def parse_box(window, name: str = "window") -> Box:
    """``window`` as the box ``((xmin, xmax), (ymin, ymax))`` of floats, with ``xmin < xmax`` and ``ymin < ymax``.

    Raises:
        ValueError: naming ``name``, the expected form and the value received, if ``window`` is
            not two pairs of numbers or either pair is not increasing (NaN included).
    """
    try:
        (xmin, xmax), (ymin, ymax) = window
        xmin, xmax, ymin, ymax = (float(v) for v in (xmin, xmax, ymin, ymax))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be ((xmin, xmax), (ymin, ymax)), got {window!r}") from None
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"{name} must have xmin < xmax and ymin < ymax, got {window!r}")
    return (xmin, xmax), (ymin, ymax)


def box_bounds(box: Box, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The corners ``(xmin, ymin)`` and ``(xmax, ymax)`` of ``box``, each of shape ``(2,)``, to clamp points between."""
    (xmin, xmax), (ymin, ymax) = box
    return torch.tensor([xmin, ymin], dtype=dtype), torch.tensor([xmax, ymax], dtype=dtype)


def check_dtype(dtype) -> torch.dtype:
    """``dtype`` when it is a floating torch dtype; a ValueError naming ``dtype`` otherwise."""
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    return dtype
