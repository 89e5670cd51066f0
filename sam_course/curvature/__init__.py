"""Curvature of the training loss: the Hessian (:mod:`~sam_course.curvature.hessian`, chapters 4
and 13) and pictures of the loss landscape (:mod:`~sam_course.curvature.landscape`, chapter 9).

Both follow the flat-vector convention of :mod:`sam_course._params`.
"""

from . import hessian, landscape

__all__ = ["hessian", "landscape"]
