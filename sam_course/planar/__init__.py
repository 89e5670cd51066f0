"""Two-dimensional test functions and a loop that runs any optimizer on them.

Chapter 1 uses :data:`SHARP_FLAT` to picture a sharp and a flat minimum side
by side; chapter 6 runs Adagrad and SAM-Adagrad on :data:`EASOM` and
:data:`EGGHOLDER` with :func:`run_optimizer` and draws contour plots from
:func:`grid`.

Chapter 6 also runs many starts at once (:func:`run_from_starts` over a
:func:`start_grid`) and sorts where the runs end (:func:`classify_endpoints`,
:func:`hessian_eigenvalues`).

Every function takes a tensor of points of shape ``(..., 2)`` (the last axis
holds ``(x, y)``) and returns the values, shape ``(...)``, in the input's
dtype, so the same code evaluates one point, a trajectory or a whole grid.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..optim.sam import SAM

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
    "run_optimizer",
    "grid",
    "BASE_OPTIMIZERS",
    "optimizer_factory",
    "start_grid",
    "run_from_starts",
    "run_bruteforce_sam",
    "distance_to_minima",
    "classify_endpoints",
    "hessian_eigenvalues",
]

Box = tuple[tuple[float, float], tuple[float, float]]
Point = tuple[float, float]


def _as_points(xy) -> torch.Tensor:
    """``xy`` as a floating tensor of shape ``(..., 2)``; raises ValueError otherwise."""
    if not isinstance(xy, torch.Tensor):
        xy = torch.as_tensor(xy, dtype=torch.get_default_dtype())
    elif not xy.is_floating_point():
        xy = xy.to(torch.get_default_dtype())
    if xy.dim() == 0 or xy.shape[-1] != 2:
        raise ValueError(f"xy must have shape (..., 2), got {tuple(xy.shape)}")
    return xy


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
        for axis, (low, high) in zip("xy", self.domain):
            if not low < high:
                raise ValueError(f"domain must have {axis}min < {axis}max, got ({low}, {high})")
        for point in self.minima:
            if not self.contains(point):
                raise ValueError(f"minima must lie in the domain {self.domain}, got {point}")

    def __call__(self, xy) -> torch.Tensor:
        """Values at the points ``xy`` of shape ``(..., 2)``; returns shape ``(...)``."""
        return self.f(_as_points(xy))

    def grad(self, xy) -> torch.Tensor:
        """Gradient at the points ``xy`` (shape ``(..., 2)``), same shape, by autograd.

        Each value depends only on its own point, so the gradient of the sum of
        the values is the stack of the individual gradients.
        """
        points = _as_points(xy).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(self.f(points).sum(), points)
        return gradient

    def contains(self, xy) -> bool:
        """Whether every point of ``xy`` (shape ``(..., 2)``) lies in the closed domain box."""
        points = _as_points(xy)
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


# --------------------------------------------------------------------------
# running optimizers
# --------------------------------------------------------------------------

def _project_(point: torch.Tensor, domain: Box) -> None:
    (xmin, xmax), (ymin, ymax) = domain
    point[0].clamp_(xmin, xmax)
    point[1].clamp_(ymin, ymax)


def run_optimizer(
    function: TestFunction,
    start,
    optimizer_factory: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
    steps: int,
    project: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Run an optimizer on ``function`` from ``start`` and return its trajectory (chapter 6).

    A parameter of shape ``(2,)`` is created at ``start`` and the optimizer is
    built by ``optimizer_factory([param])``, e.g.
    ``lambda params: torch.optim.Adagrad(params, lr=0.5)`` or
    ``lambda params: SAM(params, torch.optim.Adagrad, rho=0.05, lr=0.5)``.
    Every step calls ``optimizer.step(closure)`` with the standard closure
    (zero the gradients, evaluate, backpropagate, return the loss): torch's
    optimizers accept it, and SAM needs it to evaluate the gradient twice.
    After each step the point is clamped onto the domain box if ``project``.

    Args:
        function: the :class:`TestFunction` to minimize.
        start: ``(x, y)`` inside ``function.domain``.
        optimizer_factory: callable taking a list with one parameter and
            returning an optimizer over it.
        steps: number of optimizer steps, ``>= 0``.
        project: clamp onto ``function.domain`` after each step.
        dtype: floating dtype of the parameter; float64 by default, because
            Eggholder's values reach about 1000 and float32 would blur steps.

    Returns:
        Tensor of shape ``(steps + 1, 2)``: the start, then the point after each step.

    Raises:
        ValueError: if ``start`` is not a point inside the domain, ``steps`` is
            not a non-negative integer, or ``dtype`` is not floating point.
    """
    if not isinstance(function, TestFunction):
        raise ValueError(f"function must be a TestFunction, got {type(function).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    point = torch.as_tensor(start, dtype=dtype).detach().clone()
    if point.shape != (2,):
        raise ValueError(f"start must be one point (x, y), got shape {tuple(point.shape)}")
    if not (torch.isfinite(point).all() and function.contains(point)):
        raise ValueError(f"start must lie in the domain {function.domain}, got {point.tolist()}")

    param = torch.nn.Parameter(point)
    optimizer = optimizer_factory([param])

    def closure():
        # Optimizers call the closure under no_grad in their step(); the
        # closure must switch gradients back on itself.
        with torch.enable_grad():
            optimizer.zero_grad()
            loss = function.f(param)
            loss.backward()
        return loss

    trajectory = torch.empty(steps + 1, 2, dtype=dtype)
    trajectory[0] = param.detach()
    for step in range(1, steps + 1):
        optimizer.step(closure)
        if project:
            with torch.no_grad():
                _project_(param, function.domain)
        trajectory[step] = param.detach()
    return trajectory


def grid(function: TestFunction, n: int, dtype: torch.dtype = torch.float64):
    """Evaluate ``function`` on an ``n`` x ``n`` grid over its domain, for contour plots.

    Returns ``X, Y, Z``, each of shape ``(n, n)``, in matplotlib's convention:
    rows follow y and columns follow x (``torch.meshgrid(..., indexing="xy")``),
    so ``plt.contour(X, Y, Z)`` works as is. The grid includes the domain's
    corners. Used by chapters 1 and 6.

    Raises:
        ValueError: if ``n`` is not an integer ``>= 2``.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    (xmin, xmax), (ymin, ymax) = function.domain
    xs = torch.linspace(xmin, xmax, n, dtype=dtype)
    ys = torch.linspace(ymin, ymax, n, dtype=dtype)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        Z = function(torch.stack((X, Y), dim=-1))
    return X, Y, Z


# --------------------------------------------------------------------------
# many starts at once (chapter 6; chapter 1 uses the same helpers)
# --------------------------------------------------------------------------

BASE_OPTIMIZERS: tuple[str, ...] = ("SGD", "Adam", "Adagrad")
"""The base optimizers :func:`optimizer_factory` knows; each also exists as ``"SAM-<base>"``."""

_BASE_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "SGD": torch.optim.SGD,
    "Adam": torch.optim.Adam,
    "Adagrad": torch.optim.Adagrad,
}


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_function(function) -> None:
    if not isinstance(function, TestFunction):
        raise ValueError(f"function must be a TestFunction, got {type(function).__name__}")


def optimizer_factory(
    label: str, lr: float, rho: float = 0.05, **base_kwargs
) -> Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]:
    """A factory ``params -> optimizer`` for the optimizer named ``label`` (chapter 6).

    ``label`` is a base optimizer of :data:`BASE_OPTIMIZERS` (``"SGD"``,
    ``"Adam"``, ``"Adagrad"``) or its SAM version (``"SAM-SGD"``, ...), the
    names the plots use for their colours (:func:`sam_course.plotting.color_for`).
    The factory is what :func:`run_optimizer` and :func:`run_from_starts` take.

    Args:
        label: ``"<base>"`` or ``"SAM-<base>"``, spelled as above.
        lr: the base optimizer's learning rate, finite and > 0.
        rho: SAM's radius (in the units of the function's coordinates), finite
            and >= 0; ignored by the base optimizers.
        **base_kwargs: more keyword arguments of the base optimizer (``momentum``...).

    Raises:
        ValueError: on an unknown label, a bad ``lr`` or a bad ``rho``.
    """
    allowed = list(BASE_OPTIMIZERS) + [f"SAM-{base}" for base in BASE_OPTIMIZERS]
    if not isinstance(label, str) or label not in allowed:
        raise ValueError(f"label must be one of {allowed}, got {label!r}")
    lr = _check_positive(lr, "lr")
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r}")
    use_sam = label.startswith("SAM-")
    base = _BASE_CLASSES[label.removeprefix("SAM-")]

    def factory(params):
        if use_sam:
            return SAM(params, base, rho=float(rho), lr=lr, **base_kwargs)
        return base(params, lr=lr, **base_kwargs)

    return factory


def _parse_box(window) -> Box:
    """``((xmin, xmax), (ymin, ymax))`` as floats; a ValueError names ``window`` otherwise."""
    try:
        (xmin, xmax), (ymin, ymax) = window
        xmin, xmax, ymin, ymax = (float(v) for v in (xmin, xmax, ymin, ymax))
    except (TypeError, ValueError):
        raise ValueError(f"window must be ((xmin, xmax), (ymin, ymax)), got {window!r}") from None
    return (xmin, xmax), (ymin, ymax)


def _check_window(function: TestFunction, window) -> Box:
    if window is None:
        return function.domain
    (xmin, xmax), (ymin, ymax) = _parse_box(window)
    (dxmin, dxmax), (dymin, dymax) = function.domain
    if not (dxmin <= xmin < xmax <= dxmax and dymin <= ymin < ymax <= dymax):
        raise ValueError(
            f"window must be a non-empty box inside the domain {function.domain}, got {window!r}"
        )
    return (xmin, xmax), (ymin, ymax)


def start_grid(function: TestFunction, n: int, window: Box | None = None, dtype: torch.dtype = torch.float64):
    """``n * n`` starting points: the centres of an ``n`` x ``n`` grid of cells (chapters 1 and 6).

    Cell centres rather than grid nodes keep every start strictly inside the box
    (none on the boundary, where a projected optimizer already sits on a face)
    and spread the starts evenly, each standing for an equal area.

    Args:
        function: the :class:`TestFunction` whose domain holds the window.
        n: points per side, an integer >= 1.
        window: ``((xmin, xmax), (ymin, ymax))`` inside the domain; the domain when None.
        dtype: floating dtype of the result.

    Returns:
        Tensor of shape ``(n * n, 2)``, x varying fastest, so that
        ``result.reshape(n, n, 2)`` has rows following y and columns following x
        (the convention of :func:`grid` and matplotlib).

    Raises:
        ValueError: on a bad ``n`` or a window that is not a box inside the domain.
    """
    _check_function(function)
    n = _check_count(n, "n", 1)
    (xmin, xmax), (ymin, ymax) = _check_window(function, window)
    centres = (torch.arange(n, dtype=dtype) + 0.5) / n
    xs = xmin + (xmax - xmin) * centres
    ys = ymin + (ymax - ymin) * centres
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack((X.reshape(-1), Y.reshape(-1)), dim=-1)


def _is_two_step(optimizer) -> bool:
    return callable(getattr(optimizer, "first_step", None)) and callable(getattr(optimizer, "second_step", None))


def run_from_starts(
    function: TestFunction,
    starts,
    optimizer_factory: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
    steps: int,
    project: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Run one optimizer from each of many starts; the same paths as :func:`run_optimizer` (chapter 6).

    Every start gets its own parameter of shape ``(2,)`` and its OWN optimizer
    from ``optimizer_factory([param])``, so the runs are independent. That
    matters for SAM: its ε̂ divides by one norm over all the parameters it
    holds, so a single SAM over an ``(N, 2)`` tensor would couple the starts
    (each would be perturbed by its share of a joint gradient). Only the
    function evaluations are batched: one forward and one backward over all
    points per gradient, which is exact because each value depends only on its
    own point. The optimizers then step one by one; on two CPU cores this costs
    a few hundred microseconds per start and step, dominated by
    ``torch.optim``'s per-call overhead, against about 1.5 ms for a separate
    :func:`run_optimizer` per start.

    Optimizers with ``first_step`` and ``second_step`` (:class:`~sam_course.optim.SAM`)
    are driven through them (gradient at ``w``, ``first_step``, gradient at
    ``w + ε̂``, ``second_step``), which is what ``SAM.step(closure)`` does;
    other optimizers get ``step()`` after one gradient. Optimizers that must
    re-evaluate the loss inside ``step`` (L-BFGS) are not supported: use
    :func:`run_optimizer` for them.

    Args:
        function: the :class:`TestFunction` to minimize.
        starts: points of shape ``(N, 2)``, ``N >= 1``, inside the domain.
        optimizer_factory: callable taking a list with one parameter and
            returning an optimizer over it (e.g. :func:`optimizer_factory`).
        steps: number of optimizer steps, ``>= 0``.
        project: clamp every point onto ``function.domain`` after each step.
        dtype: floating dtype of the parameters (float64 by default, as in
            :func:`run_optimizer`).

    Returns:
        Tensor of shape ``(N, steps + 1, 2)``: for each start, the start and
        the point after each step.

    Raises:
        ValueError: on a bad function, starts outside the domain or of the wrong
            shape, a bad ``steps`` or ``dtype``, or an L-BFGS optimizer.
    """
    _check_function(function)
    steps = _check_count(steps, "steps", 0)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    points = torch.as_tensor(starts, dtype=dtype).detach().clone()
    if points.dim() != 2 or points.shape[0] < 1 or points.shape[1] != 2:
        raise ValueError(f"starts must have shape (N, 2) with N >= 1, got {tuple(points.shape)}")
    if not (torch.isfinite(points).all() and function.contains(points)):
        raise ValueError(f"starts must lie in the domain {function.domain}")

    params = [torch.nn.Parameter(point) for point in points]
    optimizers = [optimizer_factory([param]) for param in params]
    if any(isinstance(opt, torch.optim.LBFGS) for opt in optimizers):
        raise ValueError("optimizer_factory returned L-BFGS, which re-evaluates the loss in step(); use run_optimizer")
    two_step = [_is_two_step(opt) for opt in optimizers]
    (xmin, xmax), (ymin, ymax) = function.domain
    low = torch.tensor([xmin, ymin], dtype=dtype)
    high = torch.tensor([xmax, ymax], dtype=dtype)

    def gradients():
        for param in params:
            param.grad = None
        with torch.enable_grad():
            function.f(torch.stack(params)).sum().backward()

    paths = torch.empty(len(params), steps + 1, 2, dtype=dtype)
    paths[:, 0] = points
    for step in range(1, steps + 1):
        gradients()
        if any(two_step):
            for opt, is_sam in zip(optimizers, two_step):
                if is_sam:
                    opt.first_step()
            gradients()  # at w + ε̂ for the SAM runs; unchanged points for the others
        for opt, is_sam in zip(optimizers, two_step):
            if is_sam:
                opt.second_step()
            else:
                opt.step()
        with torch.no_grad():
            current = torch.stack(params)
            if project:
                current = torch.maximum(torch.minimum(current, high), low)
                torch._foreach_copy_(params, list(current.unbind(0)))
            paths[:, step] = current
    return paths


def run_bruteforce_sam(
    function: TestFunction,
    starts,
    base_factory: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
    rho: float,
    steps: int,
    n_angles: int = 64,
    n_radii: int = 8,
    project: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """SAM with its inner maximization solved by brute force instead of to first order (chapters 3 and 6).

    SAM's step needs ``ε* = argmax_{||ε||_2 <= ρ} f(w + ε)``; Algorithm 1
    replaces it by the first-order ``ε̂ = ρ ∇f(w) / ||∇f(w)||``. In two
    dimensions the maximum can be searched directly: here ``f(w + ε)`` is
    evaluated at the centre of the disk and on ``n_radii`` circles of radii
    ``ρ k / n_radii`` with ``n_angles`` directions each, the best candidate is
    taken as ``ε*``, and the base optimizer steps with ``∇f(w + ε*)``. Interior
    candidates matter: the worst point of a disk need not lie on its edge
    (a peak inside it). Comparing this with :func:`run_from_starts` and
    :class:`~sam_course.optim.SAM` separates what SAM's objective asks for from
    what its first-order step does (chapter 6).

    All starts share one parameter of shape ``(N, 2)`` and one base optimizer;
    the runs stay independent only because the base optimizer acts entry by
    entry, as SGD (without weight decay coupling), Adagrad and Adam do. SAM
    itself is refused: its global norm would couple the starts.

    Args:
        function: the :class:`TestFunction` to minimize.
        starts: points of shape ``(N, 2)``, ``N >= 1``, inside the domain.
        base_factory: callable taking a list with one ``(N, 2)`` parameter and
            returning an element-wise optimizer, e.g. ``optimizer_factory("Adagrad", 0.5)``.
        rho: radius of the disk, finite and >= 0 (0 gives the base optimizer).
        steps: number of steps, >= 0.
        n_angles: directions per circle, >= 1.
        n_radii: circles, >= 1; the grid has ``1 + n_radii * n_angles`` candidates.
        project: clamp the points onto the domain after each step (the
            candidates ``w + ε`` may leave it, as SAM's ``w + ε̂`` may).
        dtype: floating dtype.

    Returns:
        Tensor of shape ``(N, steps + 1, 2)``, as :func:`run_from_starts`.

    Raises:
        ValueError: on bad arguments, or a base optimizer that is SAM or L-BFGS.
    """
    _check_function(function)
    steps = _check_count(steps, "steps", 0)
    n_angles = _check_count(n_angles, "n_angles", 1)
    n_radii = _check_count(n_radii, "n_radii", 1)
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    points = torch.as_tensor(starts, dtype=dtype).detach().clone()
    if points.dim() != 2 or points.shape[0] < 1 or points.shape[1] != 2:
        raise ValueError(f"starts must have shape (N, 2) with N >= 1, got {tuple(points.shape)}")
    if not (torch.isfinite(points).all() and function.contains(points)):
        raise ValueError(f"starts must lie in the domain {function.domain}")

    param = torch.nn.Parameter(points.clone())
    optimizer = base_factory([param])
    if isinstance(optimizer, (SAM, torch.optim.LBFGS)):
        raise ValueError(
            f"base_factory must return an element-wise base optimizer (SGD, Adagrad, Adam...), "
            f"got {type(optimizer).__name__}"
        )
    angles = torch.arange(n_angles, dtype=dtype) * (2 * math.pi / n_angles)
    radii = torch.arange(1, n_radii + 1, dtype=dtype) * (float(rho) / n_radii)
    rings = radii[:, None, None] * torch.stack((angles.cos(), angles.sin()), dim=-1)
    offsets = torch.cat((torch.zeros(1, 2, dtype=dtype), rings.reshape(-1, 2)))
    (xmin, xmax), (ymin, ymax) = function.domain
    low = torch.tensor([xmin, ymin], dtype=dtype)
    high = torch.tensor([xmax, ymax], dtype=dtype)
    rows = torch.arange(len(points))

    paths = torch.empty(len(points), steps + 1, 2, dtype=dtype)
    paths[:, 0] = points
    for step in range(1, steps + 1):
        with torch.no_grad():
            candidates = param.detach().unsqueeze(1) + offsets
            worst = candidates[rows, function.f(candidates).argmax(dim=1)]
        param.grad = function.grad(worst)
        optimizer.step()
        with torch.no_grad():
            if project:
                param.copy_(torch.maximum(torch.minimum(param, high), low))
            paths[:, step] = param
    return paths


def _as_minima(function: TestFunction, minima, dtype: torch.dtype) -> torch.Tensor:
    centres = torch.as_tensor(function.minima if minima is None else minima, dtype=dtype)
    if centres.dim() != 2 or centres.shape[0] < 1 or centres.shape[1] != 2:
        raise ValueError(f"minima must be a sequence of K >= 1 points (x, y), got shape {tuple(centres.shape)}")
    return centres


def distance_to_minima(function: TestFunction, points, minima=None) -> torch.Tensor:
    """Euclidean distances from ``points`` to each minimum (chapter 6).

    Args:
        function: the :class:`TestFunction` (its ``minima`` are the default).
        points: tensor of shape ``(..., 2)``, e.g. the end points ``paths[:, -1]``.
        minima: ``K`` points ``(x, y)`` to measure to, e.g.
            ``(SHARP_FLAT.sharp_minimum, SHARP_FLAT.flat_minimum)``; the
            function's global minima when None.

    Returns:
        Tensor of shape ``(..., K)`` in the units of the coordinates; its
        ``.min(-1).values`` is the distance to the nearest global minimum.
    """
    _check_function(function)
    points = _as_points(points)
    centres = _as_minima(function, minima, points.dtype)
    return torch.linalg.vector_norm(points.unsqueeze(-2) - centres, dim=-1)


def classify_endpoints(function: TestFunction, endpoints, minima=None, radius: float = math.inf) -> torch.Tensor:
    """Which minimum each run ended at: the index of the nearest one, or -1 (chapter 6).

    Args:
        function: the :class:`TestFunction` (its ``minima`` are the default).
        endpoints: tensor of shape ``(..., 2)``.
        minima: ``K`` points ``(x, y)``; the function's global minima when None.
        radius: an end point farther than this from every minimum gets -1
            ("elsewhere"); > 0, infinite by default (always the nearest).

    Returns:
        Long tensor of shape ``(...)`` with values in ``{-1, 0, ..., K - 1}``.
        A point exactly halfway between two minima gets the lower index.

    Raises:
        ValueError: on a radius that is not > 0, or minima of the wrong shape.
    """
    if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or math.isnan(radius) or radius <= 0:
        raise ValueError(f"radius must be a number > 0 (math.inf allowed), got {radius!r}")
    distances = distance_to_minima(function, endpoints, minima)
    nearest, index = distances.min(dim=-1)
    return torch.where(nearest <= radius, index, torch.full_like(index, -1))


def hessian_eigenvalues(function: TestFunction, points) -> torch.Tensor:
    """Eigenvalues of the 2 x 2 Hessian of ``function`` at each point, ascending (chapters 1 and 6).

    The larger one is the curvature along the sharpest direction, the usual
    measure of how sharp a minimum is (chapter 13 computes it for networks).
    Each value depends only on its own point, so differentiating the sum of the
    gradients' x (then y) components gives row x (then y) of every point's
    Hessian at once.

    Args:
        function: the :class:`TestFunction`.
        points: tensor of shape ``(..., 2)``.

    Returns:
        Tensor of shape ``(..., 2)``: ``[..., 0]`` the smaller, ``[..., 1]`` the
        larger eigenvalue, in units of the function's values per squared coordinate unit.
    """
    _check_function(function)
    x = _as_points(points).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(function.f(x).sum(), x, create_graph=True)
        rows = [torch.autograd.grad(gradient[..., k].sum(), x, retain_graph=k == 0)[0] for k in range(2)]
    hessian = torch.stack(rows, dim=-2).detach()
    # Autograd's two mixed partials agree up to rounding; average them so that
    # eigvalsh sees an exactly symmetric matrix.
    hessian = 0.5 * (hessian + hessian.transpose(-1, -2))
    return torch.linalg.eigvalsh(hessian)
