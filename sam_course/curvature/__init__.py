"""Curvature of the training loss: the Hessian (chapters 4 and 13) and pictures of the loss landscape
(chapter 9).

* :mod:`~sam_course.curvature.hessian`: the gradient, Hessian-vector products and the dense
  Hessian, and the entry point of the chapters (it re-exports the spectrum estimators);
* :mod:`~sam_course.curvature.spectrum`: top eigenvalues (Lanczos, power iteration),
  ``lambda_max / lambda_k``, Hutchinson's trace and the spectral density;
* :mod:`~sam_course.curvature.operator`: :class:`~sam_course.curvature.operator.HessianOperator`,
  the counted ``H v`` both build on;
* :mod:`~sam_course.curvature.landscape`: 1-D and 2-D slices of the loss, filter normalization and
  trajectory PCA.

All follow the flat-vector convention of ``sam_course._params``.
"""

from . import hessian, landscape, operator, spectrum

__all__ = ["hessian", "landscape", "operator", "spectrum"]
