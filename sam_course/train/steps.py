"""What :func:`~sam_course.train.fit` does with one minibatch: the per-batch step functions.

A *step* is any callable ``step(model, optimizer, loss_fn, x, y) -> loss`` that updates the
model's weights once from the batch ``x`` ``(B, ...)``, ``y`` ``(B,)`` and returns the batch loss
at the weights before the update, as a 0-d tensor (``fit`` averages these into ``batch_loss``).
``loss_fn(model(x), y)`` is the mean loss of the batch. ``fit`` calls the step once per batch, in
train mode unless told otherwise; the step must not touch the data order or the history.

* :func:`optimizer_step` (the default): ``optimizer.step(closure)``, which serves plain
  ``torch.optim`` optimizers, :class:`~sam_course.optim.SAM`, :class:`~sam_course.optim.variants.SAMEveryK`
  and :class:`~sam_course.optim.variants.LookSAM` alike (chapters 5 and 14);
* :class:`MSAMStep`: the m-SAM step of chapter 12;
* chapter 4 plugs in the exact SAM gradient (:func:`sam_course.theory.sam_gradient.fit_sam_gradient`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from .._checks import check_instance, check_int
from .._params import LossFn
from ..optim.momentum_sam import MomentumSAM
from ..optim.msam import msam_step
from ..optim.perturbation import frozen_batchnorm_stats
from ..optim.sam import SAM
from ..optim.variants import SAMEveryK

__all__ = ["Step", "optimizer_step", "MSAMStep"]

class Step(Protocol):
    """What :func:`~sam_course.train.fit` calls once per minibatch (see the module docstring)."""

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, x: Tensor,
                 y: Tensor) -> Tensor:
        """Update ``model`` once from the batch; return the batch loss before the update (0-d tensor)."""


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, x: Tensor,
                   y: Tensor) -> Tensor:
    """One ``optimizer.step(closure)`` on the batch; returns the loss at the weights before the step.

    The closure zeroes the gradients, runs forward and backward and returns the loss. A SAM
    optimizer calls it a second time at ``w + eps_hat``; that call (while ``optimizer.perturbed``)
    runs under :func:`~sam_course.optim.frozen_batchnorm_stats`, so BatchNorm's running statistics
    see each batch once, at ``w`` (chapter 5). :class:`~sam_course.optim.momentum_sam.MomentumSAM`
    takes its only pass at ``w + eps``: that pass updates them.
    """
    check_instance("model", model, nn.Module, "torch.nn.Module")
    check_instance("optimizer", optimizer, torch.optim.Optimizer, "torch.optim.Optimizer")
    # MomentumSAM's one pass is perturbed, and the only one: BatchNorm must see it.
    is_sam = isinstance(optimizer, SAM) and not isinstance(optimizer, MomentumSAM)

    def closure() -> Tensor:
        optimizer.zero_grad()
        frozen = frozen_batchnorm_stats(model) if is_sam and optimizer.perturbed else contextlib.nullcontext()
        with frozen:
            loss = loss_fn(model(x), y)
            loss.backward()
        return loss

    # Every torch optimizer accepts a closure and returns its (first) loss, so plain optimizers
    # and the SAM family share this one line.
    return optimizer.step(closure)


@dataclass(frozen=True)
class MSAMStep:
    """The m-SAM step (chapter 12) as a :data:`Step`: :func:`~sam_course.optim.msam.msam_step` with chunks of ``m``.

    The optimizer must be a :class:`~sam_course.optim.SAM`. With a
    :class:`~sam_course.optim.variants.SAMEveryK`, only its SAM steps are m-SAM steps; the steps
    in between are its plain base-optimizer steps (:func:`optimizer_step`). The batch size must be
    a multiple of ``m`` (``fit`` cuts each batch to one).

    Attributes:
        m: examples per chunk, an int >= 1.
    """

    m: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "m", check_int("m", self.m, low=1))

    def __call__(self, model: nn.Module, optimizer: SAM, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
        if isinstance(optimizer, SAMEveryK) and not optimizer.next_is_sam:
            return optimizer_step(model, optimizer, loss_fn, x, y)
        # msam_step ends with optimizer.second_step(), which also counts SAMEveryK's step.
        return msam_step(optimizer, model, loss_fn, x, y, self.m)
