"""The SAM optimizer family: what you put into your own training code.

Imports torch (and the package's validators) only, never the course's data, models or training
loop, so ``from sam_course.optim import SAM`` costs little more than ``import torch``
(``ARCHITECTURE.md``; a test enforces it).

* :mod:`~sam_course.optim.sam`: :class:`SAM`, the optimizer (chapters 4-5).
* :mod:`~sam_course.optim.perturbation`: :func:`epsilon_hat` for every p-norm, the global norm
  and :func:`frozen_batchnorm_stats` (chapters 3 and 5).
* :mod:`~sam_course.optim.variants`: :class:`LookSAM`, :class:`SAMEveryK` and pass counting
  (chapter 14).
* :mod:`~sam_course.optim.gsam`: :class:`GSAM`, SAM with the surrogate gap's descent (issue 15);
  unnormalized SAM is ``SAM(..., normalize=False)`` and SAM-ON is ``SAM(norm_layer_groups(model))``.
* :mod:`~sam_course.optim.msam`: the m-SAM step and m-sharpness (chapter 12), with its low-rank
  path in :mod:`~sam_course.optim.msam_lowrank`.
* :mod:`~sam_course.optim.friendly`: :class:`FriendlySAM` (F-SAM); :mod:`~sam_course.optim.momentum_sam`:
  :class:`MomentumSAM` (one pass per step); :mod:`~sam_course.optim.schedules`: :class:`RandomizedSAM`
  (RST) and :class:`AdaptiveSAM` (AE-SAM), which choose per step whether to pay for SAM's second pass.
* :mod:`~sam_course.optim.distributed`: :class:`SAMStep` for DDP, FSDP2, gradient accumulation and mixed
  precision (chapter 5b).
"""

from .distributed import SAMStep
from .friendly import FriendlySAM
from .gsam import GSAM
from .momentum_sam import MomentumSAM
from .msam import m_sharpness, msam_gradient, msam_step
from .perturbation import epsilon_hat, frozen_batchnorm_stats, norm_layer_groups
from .sam import SAM
from .schedules import AdaptiveSAM, RandomizedSAM
from .variants import LookSAM, SAMEveryK, forward_backward_passes, orthogonal_component

__all__ = [
    "SAM",
    "epsilon_hat",
    "frozen_batchnorm_stats",
    "LookSAM",
    "SAMEveryK",
    "orthogonal_component",
    "forward_backward_passes",
    "msam_gradient",
    "msam_step",
    "m_sharpness",
    "SAMStep",
    "GSAM",
    "norm_layer_groups",
    "FriendlySAM",
    "MomentumSAM",
    "RandomizedSAM",
    "AdaptiveSAM",
]
