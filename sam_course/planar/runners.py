"""Optimizers run on the 2-D test functions: one start, many starts at once, and starts on a grid.

Chapter 6 runs Adagrad and SAM-Adagrad on :data:`~sam_course.planar.functions.EASOM` and
:data:`~sam_course.planar.functions.EGGHOLDER` with :func:`run_optimizer`, and many starts at once
with :func:`run_from_starts` over a :func:`start_grid` (chapter 1 uses the same helpers). The
optimizers are named as the plots label them (``"SGD"``, ``"SAM-Adagrad"``, ``"USAM-Adagrad"``,
``"GSAM-Adagrad"``...) and built by :func:`optimizer_factory` from the registry
:mod:`sam_course.base_optimizers`.

Every run returns the points visited, in the coordinates of the function's domain; with
``project`` (the default) each point is clamped onto the domain box after its step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._checks import check_choice, check_int, check_real
from ..base_optimizers import base_optimizer, display_names
from ..optim.gsam import GSAM
from ..optim.sam import SAM
from .functions import TestFunction, check_function
from .points import Box, as_starts, box_bounds, check_dtype, parse_box

__all__ = [
    "BASE_LABELS",
    "SAM_PREFIXES",
    "optimizer_factory",
    "run_optimizer",
    "start_grid",
    "run_from_starts",
]

Factory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]

BASE_LABELS: tuple[str, ...] = display_names()
"""The base optimizers :func:`optimizer_factory` knows (``"SGD"``, ``"Adam"``, ``"Adagrad"``, the
display names of :data:`sam_course.base_optimizers.BASE_OPTIMIZERS`); each also exists as
``"<prefix>-<base>"`` for every prefix of :data:`SAM_PREFIXES`."""

SAM_PREFIXES: tuple[str, ...] = ("SAM", "USAM", "GSAM")
"""The SAM variants :func:`optimizer_factory` wraps a base optimizer in: ``"SAM"``
(:class:`~sam_course.optim.SAM`), ``"USAM"`` (unnormalized SAM, ``SAM(..., normalize=False)``)
and ``"GSAM"`` (:class:`~sam_course.optim.GSAM`)."""

# Every label optimizer_factory accepts, bases first, in the registry's order, then each variant.
_LABELS: tuple[str, ...] = (*BASE_LABELS, *(f"{prefix}-{base}" for prefix in SAM_PREFIXES for base in BASE_LABELS))


def optimizer_factory(label: str, lr: float, rho: float = 0.05, alpha: float = 0.1, **base_kwargs) -> Factory:
    """A factory ``params -> optimizer`` for the optimizer named ``label`` (chapter 6).

    ``label`` is a base optimizer of :data:`BASE_LABELS` (``"SGD"``, ``"Adam"``, ``"Adagrad"``)
    or one of its SAM versions, the names the plots use for their colours
    (:func:`sam_course.plotting.color_for`):

    * ``"SAM-<base>"``: :class:`~sam_course.optim.SAM`, ``eps_hat = rho * g / ||g||``;
    * ``"USAM-<base>"``: unnormalized SAM, ``SAM(..., normalize=False)``, ``eps_hat = rho * g``
      (here ``rho`` is not a length but a length per unit of gradient);
    * ``"GSAM-<base>"``: :class:`~sam_course.optim.GSAM`, SAM's ascent and the descent direction
      ``g_p - alpha * g_perp`` (``alpha = 0`` is SAM).

    The factory is what :func:`run_optimizer` and :func:`run_from_starts` take.

    Args:
        label: ``"<base>"`` or ``"<prefix>-<base>"`` with a prefix of :data:`SAM_PREFIXES`,
            spelled as above.
        lr: the base optimizer's learning rate, finite and > 0.
        rho: the radius of SAM and GSAM (in the units of the function's coordinates), USAM's
            factor; finite and >= 0; ignored by the base optimizers.
        alpha: GSAM's weight of ``g_perp``, finite and >= 0; ignored by the other labels.
        **base_kwargs: more keyword arguments of the base optimizer (``momentum``...).

    Raises:
        ValueError: on an unknown label, a bad ``lr``, ``rho`` or ``alpha``.
    """
    check_choice("label", label, _LABELS)
    lr = check_real("lr", lr, 0, low_open=True)
    rho = check_real("rho", rho, 0)
    alpha = check_real("alpha", alpha, 0)
    prefix, _, name = label.rpartition("-")
    base = base_optimizer(name, argument="label").cls

    def factory(params):
        if prefix == "SAM":
            return SAM(params, base, rho=rho, lr=lr, **base_kwargs)
        if prefix == "USAM":
            return SAM(params, base, rho=rho, normalize=False, lr=lr, **base_kwargs)
        if prefix == "GSAM":
            return GSAM(params, base, rho=rho, alpha=alpha, lr=lr, **base_kwargs)
        return base(params, lr=lr, **base_kwargs)

    return factory


def _project_(point: torch.Tensor, domain: Box) -> None:
    (xmin, xmax), (ymin, ymax) = domain
    point[0].clamp_(xmin, xmax)
    point[1].clamp_(ymin, ymax)


def run_optimizer(
    function: TestFunction,
    start,
    optimizer_factory: Factory,
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
        function: the :class:`~sam_course.planar.functions.TestFunction` to minimize.
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
    check_function(function)
    steps = check_int("steps", steps, low=0)
    check_dtype(dtype)
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


def _check_window(function: TestFunction, window) -> Box:
    if window is None:
        return function.domain
    (xmin, xmax), (ymin, ymax) = parse_box(window)
    (dxmin, dxmax), (dymin, dymax) = function.domain
    if not (dxmin <= xmin and xmax <= dxmax and dymin <= ymin and ymax <= dymax):
        raise ValueError(f"window must be a box inside the domain {function.domain}, got {window!r}")
    return (xmin, xmax), (ymin, ymax)


def start_grid(function: TestFunction, n: int, window: Box | None = None, dtype: torch.dtype = torch.float64):
    """``n * n`` starting points: the centres of an ``n`` x ``n`` grid of cells (chapters 1 and 6).

    Cell centres rather than grid nodes keep every start strictly inside the box
    (none on the boundary, where a projected optimizer already sits on a face)
    and spread the starts evenly, each standing for an equal area.

    Args:
        function: the :class:`~sam_course.planar.functions.TestFunction` whose domain holds the window.
        n: points per side, an integer >= 1.
        window: ``((xmin, xmax), (ymin, ymax))`` inside the domain; the domain when None.
        dtype: floating dtype of the result.

    Returns:
        Tensor of shape ``(n * n, 2)``, x varying fastest, so that
        ``result.reshape(n, n, 2)`` has rows following y and columns following x
        (the convention of :func:`~sam_course.planar.functions.grid` and matplotlib).

    Raises:
        ValueError: on a bad ``n`` or a window that is not a box inside the domain.
    """
    check_function(function)
    n = check_int("n", n, low=1)
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
    optimizer_factory: Factory,
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
        function: the :class:`~sam_course.planar.functions.TestFunction` to minimize.
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
    check_function(function)
    steps = check_int("steps", steps, low=0)
    points = as_starts(function, starts, check_dtype(dtype))

    params = [torch.nn.Parameter(point) for point in points]
    optimizers = [optimizer_factory([param]) for param in params]
    if any(isinstance(opt, torch.optim.LBFGS) for opt in optimizers):
        raise ValueError("optimizer_factory returned L-BFGS, which re-evaluates the loss in step(); use run_optimizer")
    two_step = [_is_two_step(opt) for opt in optimizers]
    low, high = box_bounds(function.domain, dtype)

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
