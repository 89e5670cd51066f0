"""Where runs on a 2-D test function end: distances to the minima, which minimum, and how sharp (chapters 1 and 6).

Chapter 6 sorts the end points of :func:`~sam_course.planar.runners.run_from_starts` with
:func:`classify_endpoints` and measures their sharpness with :func:`hessian_eigenvalues`.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_real
from .functions import TestFunction, check_function
from .points import as_points

__all__ = ["distance_to_minima", "classify_endpoints", "hessian_eigenvalues"]


def _as_minima(function: TestFunction, minima, dtype: torch.dtype) -> torch.Tensor:
    centres = torch.as_tensor(function.minima if minima is None else minima, dtype=dtype)
    if centres.dim() != 2 or centres.shape[0] < 1 or centres.shape[1] != 2:
        raise ValueError(f"minima must be a sequence of K >= 1 points (x, y), got shape {tuple(centres.shape)}")
    return centres


def distance_to_minima(function: TestFunction, points, minima=None) -> torch.Tensor:
    """Euclidean distances from ``points`` to each minimum (chapter 6).

    Args:
        function: the :class:`~sam_course.planar.functions.TestFunction` (its ``minima`` are the default).
        points: tensor of shape ``(..., 2)``, e.g. the end points ``paths[:, -1]``.
        minima: ``K`` points ``(x, y)`` to measure to, e.g.
            ``(SHARP_FLAT.sharp_minimum, SHARP_FLAT.flat_minimum)``; the
            function's global minima when None.

    Returns:
        Tensor of shape ``(..., K)`` in the units of the coordinates; its
        ``.min(-1).values`` is the distance to the nearest global minimum.
    """
    check_function(function)
    points = as_points(points, "points")
    centres = _as_minima(function, minima, points.dtype)
    return torch.linalg.vector_norm(points.unsqueeze(-2) - centres, dim=-1)


def classify_endpoints(function: TestFunction, endpoints, minima=None, radius: float = math.inf) -> torch.Tensor:
    """Which minimum each run ended at: the index of the nearest one, or -1 (chapter 6).

    Args:
        function: the :class:`~sam_course.planar.functions.TestFunction` (its ``minima`` are the default).
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
    radius = check_real("radius", radius, 0, low_open=True, allow_inf=True)
    distances = distance_to_minima(function, as_points(endpoints, "endpoints"), minima)
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
        function: the :class:`~sam_course.planar.functions.TestFunction`.
        points: tensor of shape ``(..., 2)``.

    Returns:
        Tensor of shape ``(..., 2)``: ``[..., 0]`` the smaller, ``[..., 1]`` the
        larger eigenvalue, in units of the function's values per squared coordinate unit.
    """
    check_function(function)
    x = as_points(points, "points").detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(function.f(x).sum(), x, create_graph=True)
        rows = [torch.autograd.grad(gradient[..., k].sum(), x, retain_graph=k == 0)[0] for k in range(2)]
    hessian = torch.stack(rows, dim=-2).detach()
    # Autograd's two mixed partials agree up to rounding; average them so that
    # eigvalsh sees an exactly symmetric matrix.
    hessian = 0.5 * (hessian + hessian.transpose(-1, -2))
    return torch.linalg.eigvalsh(hessian)
