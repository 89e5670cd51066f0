"""sam_course: Sharpness-Aware Minimization for PyTorch, and the library of the course "SAM, executable".

``from sam_course import SAM`` gives the optimizer and loads only :mod:`sam_course.optim` (torch
and nothing else of the package). Every other module is imported on first use
(``sam_course.train``, ``sam_course.plotting``...), so the course's data, models, pandas and
matplotlib cost nothing to a user who wants the optimizer. ``ARCHITECTURE.md`` maps the layers:

* the optimizer family: :mod:`~sam_course.optim`;
* the lab: :mod:`~sam_course.base_optimizers`, :mod:`~sam_course.data`, :mod:`~sam_course.models`, :mod:`~sam_course.noise`,
  :mod:`~sam_course.train`, :mod:`~sam_course.experiments`, :mod:`~sam_course.curvature`,
  :mod:`~sam_course.planar`, :mod:`~sam_course.theory`, :mod:`~sam_course.paper`,
  :mod:`~sam_course.profiles`, :mod:`~sam_course.timing`;
* book support: :mod:`~sam_course.plotting`, :mod:`~sam_course.report`.
"""

import importlib

from .optim import SAM, epsilon_hat, frozen_batchnorm_stats

__version__ = "0.1.0"

_LAZY_MODULES = (
    "base_optimizers",
    "curvature",
    "data",
    "examples",
    "models",
    "noise",
    "paper",
    "planar",
    "plotting",
    "profiles",
    "report",
    "experiments",
    "theory",
    "timing",
    "train",
)

__all__ = ["SAM", "epsilon_hat", "frozen_batchnorm_stats", "optim", *_LAZY_MODULES]


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'sam_course' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES))
