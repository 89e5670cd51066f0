"""SAM with its inner maximization solved by brute force over a disk, in two dimensions (chapters 3 and 6).

Comparing :func:`run_bruteforce_sam` with the first-order SAM of
:func:`~sam_course.planar.runners.run_from_starts` separates what SAM's objective asks for from
what Algorithm 1's step does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._checks import check_int, check_real
from ..optim.sam import SAM
from .functions import TestFunction, check_function
from .points import as_starts, box_bounds, check_dtype

__all__ = ["disk_offsets", "run_bruteforce_sam"]


def disk_offsets(rho: float, n_angles: int, n_radii: int, dtype: torch.dtype) -> torch.Tensor:
    """The candidates ``ε`` of the disk ``||ε||_2 <= rho``: its centre, then ``n_radii`` circles of ``n_angles`` points.

    Circle ``k`` (``k = 1 ... n_radii``) has radius ``rho k / n_radii``; its directions are at the
    angles ``2π j / n_angles``, ``j = 0 ... n_angles - 1``.

    Returns:
        Tensor of shape ``(1 + n_radii * n_angles, 2)`` in the units of ``rho``; row 0 is the
        centre, then the circles from the smallest, each by increasing angle.
    """
    angles = torch.arange(n_angles, dtype=dtype) * (2 * math.pi / n_angles)
    radii = torch.arange(1, n_radii + 1, dtype=dtype) * (float(rho) / n_radii)
    rings = radii[:, None, None] * torch.stack((angles.cos(), angles.sin()), dim=-1)
    return torch.cat((torch.zeros(1, 2, dtype=dtype), rings.reshape(-1, 2)))


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
    evaluated at the :func:`disk_offsets` (the centre of the disk and
    ``n_radii`` circles of radii ``ρ k / n_radii`` with ``n_angles`` directions
    each), the best candidate is taken as ``ε*``, and the base optimizer steps
    with ``∇f(w + ε*)``. Interior candidates matter: the worst point of a disk
    need not lie on its edge (a peak inside it). Comparing this with
    :func:`~sam_course.planar.runners.run_from_starts` and
    :class:`~sam_course.optim.SAM` separates what SAM's objective asks for from
    what its first-order step does (chapter 6).

    All starts share one parameter of shape ``(N, 2)`` and one base optimizer;
    the runs stay independent only because the base optimizer acts entry by
    entry, as SGD (without weight decay coupling), Adagrad and Adam do. SAM
    itself is refused: its global norm would couple the starts.

    Args:
        function: the :class:`~sam_course.planar.functions.TestFunction` to minimize.
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
        Tensor of shape ``(N, steps + 1, 2)``, as :func:`~sam_course.planar.runners.run_from_starts`.

    Raises:
        ValueError: on bad arguments, or a base optimizer that is SAM or L-BFGS.
    """
    check_function(function)
    steps = check_int("steps", steps, low=0)
    n_angles = check_int("n_angles", n_angles, low=1)
    n_radii = check_int("n_radii", n_radii, low=1)
    rho = check_real("rho", rho, 0)
    points = as_starts(function, starts, check_dtype(dtype))

    param = torch.nn.Parameter(points.clone())
    optimizer = base_factory([param])
    if isinstance(optimizer, (SAM, torch.optim.LBFGS)):
        raise ValueError(
            f"base_factory must return an element-wise base optimizer (SGD, Adagrad, Adam...), "
            f"got {type(optimizer).__name__}"
        )
    offsets = disk_offsets(rho, n_angles, n_radii, dtype)
    low, high = box_bounds(function.domain, dtype)
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
