"""sam_course: Sharpness-Aware Minimization for PyTorch, and the library of the course "SAM, executable".

``from sam_course import SAM`` gives the optimizer. Everything else lives in one module per idea,
each listing its public names in ``__all__``: ``optim``, ``scaling``, ``variants``,
``msharpness``, ``msam_lowrank``, ``noise``, ``functions``, ``data``, ``models``, ``profiles``,
``bound``, ``sam_gradient``, ``notebook``. Modules that need pandas, matplotlib or SciPy, or that
build on them (``train``, ``experiments``, ``landscape``, ``hessian``, ``plotting``, ``paper``,
``timing``), are imported on first use, so ``import sam_course`` costs little more than
``import torch``.
"""

import importlib

from . import bound, data, functions, models, msam_lowrank, msharpness, noise, notebook, optim, profiles, sam_gradient, scaling, variants
from .optim import SAM, epsilon_hat, frozen_batchnorm_stats

__version__ = "0.1.0"

_LAZY_MODULES = ("train", "experiments", "landscape", "hessian", "plotting", "paper", "timing")

__all__ = [
    "SAM",
    "epsilon_hat",
    "frozen_batchnorm_stats",
    "bound",
    "data",
    "functions",
    "models",
    "msam_lowrank",
    "msharpness",
    "noise",
    "notebook",
    "optim",
    "profiles",
    "sam_gradient",
    "scaling",
    "variants",
    *_LAZY_MODULES,
]


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'sam_course' has no attribute {name!r}")
