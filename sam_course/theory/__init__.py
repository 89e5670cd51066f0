"""The theory chapters' computations: the PAC-Bayes bound behind SAM (:mod:`~sam_course.theory.bound`,
chapter 2) and the SAM gradient with the Hessian term it drops
(:mod:`~sam_course.theory.sam_gradient`, chapter 4).
"""

from . import bound, sam_gradient

__all__ = ["bound", "sam_gradient"]
