"""The 2-D test functions of chapters 1 and 6: a sharp-and-flat landscape and five classics.

:data:`SHARP_FLAT` pictures a sharp and a flat minimum side by side (chapter 1); :data:`EASOM`,
:data:`EGGHOLDER` and the classics :data:`ROSENBROCK`, :data:`HIMMELBLAU`, :data:`RASTRIGIN` are
chapter 6's landscapes; :data:`FUNCTIONS` holds them all by key, and :func:`grid` evaluates one
for a contour plot.

Every function takes a tensor of points of shape ``(..., 2)`` (the last axis holds ``(x, y)``)
and returns the values, shape ``(...)``, in the input's dtype, so the same code evaluates one
point, a trajectory or a whole grid (:func:`~sam_course.planar.points.as_points` reads them).
Imports torch only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import check_instance, check_int, check_real
from .points import Box, Point, as_points, parse_box

__all__ = [
    "TestFunction",
    "SharpFlatFunction",
    "EASOM",
    "EGGHOLDER",
    "ROSENBROCK",
    "HIMMELBLAU",
    "RASTRIGIN",
    "SHARP_FLAT",
    "FUNCTIONS",
    "grid",
    "check_function",
]


@dataclass(frozen=True)
class TestFunction:
    """A 2-D objective with its domain and known global minima (chapters 1 and 6).

    Attributes:
        name: display name, e.g. ``"Eggholder"``.
        f: callable mapping a tensor of shape ``(..., 2)`` to values of shape ``(...)``.
        domain: the box ``((xmin, xmax), (ymin, ymax))`` it is studied on.
        minima: the global minimizers in ``domain``, each ``(x, y)``.
        min_value: the global minimum value on ``domain``.
    """

    # The class name starts with "Test"; this keeps pytest from collecting it.
    __test__ = False

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    domain: Box
    minima: tuple[Point, ...]
    min_value: float

    def __post_init__(self):
        check_instance("name", self.name, str)
        check_instance("f", self.f, Callable, "callable (a tensor of points (..., 2) -> values (...))")
        parse_box(self.domain, "domain")
        check_real("min_value", self.min_value)
        for axis, (low, high) in zip("xy", self.domain):
            if not low < high:
                raise ValueError(f"domain must have {axis}min < {axis}max, got ({low}, {high})")
        for point in self.minima:
            if not self.contains(point):
                raise ValueError(f"minima must lie in the domain {self.domain}, got {point}")

    def __call__(self, xy) -> torch.Tensor:
        """Values at the points ``xy`` of shape ``(..., 2)``; returns shape ``(...)``."""
        return self.f(as_points(xy))

    def grad(self, xy) -> torch.Tensor:
        """Gradient at the points ``xy`` (shape ``(..., 2)``), same shape, by autograd.

        Each value depends only on its own point, so the gradient of the sum of
        the values is the stack of the individual gradients.
        """
        points = as_points(xy).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(self.f(points).sum(), points)
        return gradient

    def contains(self, xy) -> bool:
        """Whether every point of ``xy`` (shape ``(..., 2)``) lies in the closed domain box."""
        points = as_points(xy)
        (xmin, xmax), (ymin, ymax) = self.domain
        x, y = points[..., 0], points[..., 1]
        inside = (x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax)
        return bool(inside.all())


@dataclass(frozen=True)
class SharpFlatFunction(TestFunction):
    """A :class:`TestFunction` with one sharp and one flat local minimum (chapter 1).

    The sharp minimum is the global one (``min_value == sharp_value``).

    Attributes:
        sharp_minimum: ``(x, y)`` of the narrow, slightly deeper minimum.
        sharp_value: its value.
        flat_minimum: ``(x, y)`` of the wide, slightly shallower minimum.
        flat_value: its value.
    """

    sharp_minimum: Point
    sharp_value: float
    flat_minimum: Point
    flat_value: float

    def __post_init__(self):
        super().__post_init__()
        check_real("sharp_value", self.sharp_value)
        check_real("flat_value", self.flat_value)


def check_function(function) -> TestFunction:
    """``function`` when it is a :class:`TestFunction`; a ValueError naming ``function`` otherwise."""
    return check_instance("function", function, TestFunction, "sam_course.planar.TestFunction")


# --------------------------------------------------------------------------
# the functions
# --------------------------------------------------------------------------

def _easom(xy: torch.Tensor) -> torch.Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return -torch.cos(x) * torch.cos(y) * torch.exp(-((x - math.pi) ** 2 + (y - math.pi) ** 2))


# Below this, |u| is treated as _SQRT_ABS_FLOOR inside sqrt(|u|).
_SQRT_ABS_FLOOR = 1e-12


def _sqrt_abs(u: torch.Tensor) -> torch.Tensor:
    # sqrt(|u|) has an infinite slope at u = 0, and autograd computes
    # sign(0) * inf = 0 * inf = NaN there; a NaN gradient would poison every
    # later step of an optimizer. Flooring |u| keeps the derivative finite
    # (at most 1 / (2 sqrt(floor)) = 5e5, and zero at u = 0 exactly) while
    # changing the value only where |u| < 1e-12, by less than 1e-6.
    return torch.sqrt(torch.abs(u).clamp_min(_SQRT_ABS_FLOOR))


def _eggholder(xy: torch.Tensor) -> torch.Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (
        -(y + 47.0) * torch.sin(_sqrt_abs(x / 2.0 + y + 47.0))
        - x * torch.sin(_sqrt_abs(x - (y + 47.0)))
    )


def _rosenbrock(xy: torch.Tensor) -> torch.Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def _himmelblau(xy: torch.Tensor) -> torch.Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (x**2 + y - 11.0) ** 2 + (x + y**2 - 7.0) ** 2


def _rastrigin(xy: torch.Tensor) -> torch.Tensor:
    return 20.0 + (xy**2 - 10.0 * torch.cos(2.0 * math.pi * xy)).sum(dim=-1)


# SHARP_FLAT: two Gaussian wells on the x-axis in a gentle bowl,
#   f(x, y) = 0.05 (x² + y²) - 1.0 exp(-|p - (-1.5, 0)|² / (2 · 0.15²))
#                            - 0.9 exp(-|p - ( 1.5, 0)|² / (2 · 0.8²)).
# The sharp well is deeper but 0.15 wide; the flat one shallower and 0.8 wide.
_SHARP_CENTER, _SHARP_DEPTH, _SHARP_WIDTH = -1.5, 1.0, 0.15
_FLAT_CENTER, _FLAT_DEPTH, _FLAT_WIDTH = 1.5, 0.9, 0.8
_BOWL = 0.05


def _sharp_flat(xy: torch.Tensor) -> torch.Tensor:
    x, y = xy[..., 0], xy[..., 1]
    sharp = _SHARP_DEPTH * torch.exp(-((x - _SHARP_CENTER) ** 2 + y**2) / (2 * _SHARP_WIDTH**2))
    flat = _FLAT_DEPTH * torch.exp(-((x - _FLAT_CENTER) ** 2 + y**2) / (2 * _FLAT_WIDTH**2))
    return _BOWL * (x**2 + y**2) - sharp - flat


EASOM = TestFunction(
    name="Easom",
    f=_easom,
    domain=((-100.0, 100.0), (-100.0, 100.0)),
    minima=((math.pi, math.pi),),
    min_value=-1.0,
)
"""Easom: -cos x cos y exp(-((x-π)² + (y-π)²)) on [-100, 100]², minimum -1 at (π, π).

Almost flat (``|∇f| < 1e-3``) farther than about 3 from (π, π). Chapter 6.
"""

EGGHOLDER = TestFunction(
    name="Eggholder",
    f=_eggholder,
    domain=((-512.0, 512.0), (-512.0, 512.0)),
    minima=((512.0, 404.2319),),
    min_value=-959.6407,
)
"""Eggholder on [-512, 512]², minimum -959.6407 at (512, 404.2319) as published.

The minimizer is on the boundary x = 512, so optimizers must be projected onto
the box. The stored point and value are the published 4-decimal figures
(f(512, 404.2319) = -959.64066...). Chapter 6.
"""

ROSENBROCK = TestFunction(
    name="Rosenbrock",
    f=_rosenbrock,
    domain=((-2.0, 2.0), (-1.0, 3.0)),
    minima=((1.0, 1.0),),
    min_value=0.0,
)
"""Rosenbrock: (1 - x)² + 100 (y - x²)², minimum 0 at (1, 1) at the end of a curved valley."""

HIMMELBLAU = TestFunction(
    name="Himmelblau",
    f=_himmelblau,
    domain=((-5.0, 5.0), (-5.0, 5.0)),
    # (3, 2) is exact; the other three are roots of a cubic system, found by
    # Newton's method in float64 (the gradient there is below 1e-13).
    minima=(
        (3.0, 2.0),
        (-2.805118086952745, 3.131312518250573),
        (-3.779310253377747, -3.283185991286170),
        (3.584428340330492, -1.848126526964404),
    ),
    min_value=0.0,
)
"""Himmelblau: (x² + y - 11)² + (x + y² - 7)², four global minima of value 0."""

RASTRIGIN = TestFunction(
    name="Rastrigin",
    f=_rastrigin,
    domain=((-5.12, 5.12), (-5.12, 5.12)),
    minima=((0.0, 0.0),),
    min_value=0.0,
)
"""Rastrigin: 20 + Σ (x_i² - 10 cos 2πx_i), minimum 0 at the origin, many local minima around it."""

SHARP_FLAT = SharpFlatFunction(
    name="Sharp and flat",
    f=_sharp_flat,
    domain=((-3.0, 3.0), (-3.0, 3.0)),
    # The function is even in y, so both minimizers lie on y = 0. Their x was
    # found by Newton's method in float64 from each well's centre (gradient
    # below 1e-14 at the stored points), values evaluated there.
    minima=((-1.4965466903214752, 0.0),),
    min_value=-0.8885608446494156,
    sharp_minimum=(-1.4965466903214752, 0.0),
    sharp_value=-0.8885608446494156,
    flat_minimum=(1.3996814496469445, 0.0),
    flat_value=-0.7949962191886553,
)
"""Chapter 1's landscape: a sharp minimum and a flat one, side by side.

``f(x, y) = 0.05 (x² + y²) - exp(-|p - (-1.5, 0)|² / 0.045) - 0.9 exp(-|p - (1.5, 0)|² / 1.28)``
on [-3, 3]². The sharp minimum (-1.49655, 0), value -0.88856, is the global
one; the flat minimum (1.39968, 0), value -0.79500, is 0.094 higher. The
Hessian's top eigenvalue is about 44.5 at the sharp minimum and 1.50 at the flat
one, so gradient descent with a step below 2 / 44.5 started near the sharp
minimum stays there, while the worst value within distance ρ ≥ 0.1 is lower
around the flat minimum: the sharpness-aware criterion prefers it.
"""

FUNCTIONS: dict[str, TestFunction] = {
    "easom": EASOM,
    "eggholder": EGGHOLDER,
    "rosenbrock": ROSENBROCK,
    "himmelblau": HIMMELBLAU,
    "rastrigin": RASTRIGIN,
    "sharp_flat": SHARP_FLAT,
}
"""All test functions by lower-case key."""


def grid(function: TestFunction, n: int, dtype: torch.dtype = torch.float64, *, window: Box | None = None):
    """Evaluate ``function`` on an ``n`` x ``n`` grid over ``window`` (its domain by default), for contour plots.

    Returns ``X, Y, Z``, each of shape ``(n, n)``, in matplotlib's convention:
    rows follow y and columns follow x (``torch.meshgrid(..., indexing="xy")``),
    so ``plt.contour(X, Y, Z)`` works as is. The grid includes the window's
    corners. Used by chapters 1 and 6.

    Args:
        function: the :class:`TestFunction`.
        n: points per side, an integer >= 2.
        dtype: floating dtype of the grid.
        window: ``((xmin, xmax), (ymin, ymax))``, read by
            :func:`~sam_course.planar.points.parse_box`; it may reach
            outside the domain (the functions are defined everywhere).

    Raises:
        ValueError: if ``n`` is not an integer ``>= 2`` or ``window`` is not a box.
    """
    n = check_int("n", n, low=2)
    (xmin, xmax), (ymin, ymax) = function.domain if window is None else parse_box(window)
    xs = torch.linspace(xmin, xmax, n, dtype=dtype)
    ys = torch.linspace(ymin, ymax, n, dtype=dtype)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        Z = function(torch.stack((X, Y), dim=-1))
    return X, Y, Z
