"""Two-dimensional test functions and the loops that run any optimizer on them (chapters 1 and 6).

Chapter 1 uses :data:`SHARP_FLAT` to picture a sharp and a flat minimum side by side; chapter 6
runs Adagrad and SAM-Adagrad on :data:`EASOM` and :data:`EGGHOLDER` with :func:`run_optimizer`
and draws contour plots from :func:`grid`. It also runs many starts at once
(:func:`run_from_starts` over a :func:`start_grid`), solves SAM's inner maximization exactly
(:func:`run_bruteforce_sam`), sorts where the runs end (:func:`classify_endpoints`,
:func:`hessian_eigenvalues`) and sets unnormalized SAM and GSAM beside SAM
(:func:`optimizer_factory`'s ``"USAM-<base>"`` and ``"GSAM-<base>"``).

* :mod:`~sam_course.planar.functions`: :class:`TestFunction`, the named functions,
  :data:`~sam_course.planar.functions.FUNCTIONS` and :func:`grid`;
* :mod:`~sam_course.planar.points`: how points, starts, boxes and dtypes are read
  (:func:`parse_box`...);
* :mod:`~sam_course.planar.runners`: :func:`optimizer_factory`, :func:`run_optimizer`,
  :func:`start_grid`, :func:`run_from_starts`;
* :mod:`~sam_course.planar.bruteforce`: :func:`run_bruteforce_sam`;
* :mod:`~sam_course.planar.endpoints`: :func:`distance_to_minima`, :func:`classify_endpoints`,
  :func:`hessian_eigenvalues`.

Every function takes a tensor of points of shape ``(..., 2)`` (the last axis holds ``(x, y)``)
and returns the values, shape ``(...)``, in the input's dtype, so the same code evaluates one
point, a trajectory or a whole grid. Imports torch only.
"""

from .bruteforce import run_bruteforce_sam
from .endpoints import classify_endpoints, distance_to_minima, hessian_eigenvalues
from .functions import (
    EASOM,
    EGGHOLDER,
    FUNCTIONS,
    HIMMELBLAU,
    RASTRIGIN,
    ROSENBROCK,
    SHARP_FLAT,
    SharpFlatFunction,
    TestFunction,
    check_function,
    grid,
)
from .points import parse_box
from .runners import BASE_LABELS, SAM_PREFIXES, optimizer_factory, run_from_starts, run_optimizer, start_grid

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
    "parse_box",
    "BASE_LABELS",
    "SAM_PREFIXES",
    "optimizer_factory",
    "run_optimizer",
    "start_grid",
    "run_from_starts",
    "run_bruteforce_sam",
    "distance_to_minima",
    "classify_endpoints",
    "hessian_eigenvalues",
]
