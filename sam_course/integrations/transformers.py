"""SAM in the Hugging Face ``transformers.Trainer``: :class:`SAMTrainer`.

``SAMTrainer(model=..., args=..., train_dataset=..., rho=0.05)`` trains like ``Trainer`` (the
same optimizer, AdamW by default, with the same parameter groups and weight decay, the same
scheduler, gradient accumulation, clipping, logging, checkpoints and resume), but every update
is a SAM step around that optimizer (:class:`~sam_course.optim.SAM`).

How a step runs, through the Trainer's accelerator:

* first pass: ``Trainer.training_step`` on each micro-batch of the accumulation window (its
  forward, loss scaling and ``accelerator.backward``), accumulating the gradient at ``w``;
* at the window's last micro-batch: ``first_step`` moves to ``w + eps_hat`` (``eps_hat`` from
  the window's accumulated gradient), then every micro-batch of the window runs again, the
  same way, so ``.grad`` holds the window's gradient at ``w + eps_hat`` (BatchNorm statistics
  frozen);
* the Trainer then clips that gradient (``max_grad_norm``: the gradient the base applies, as it
  should be) and calls ``optimizer.step()``, which on a perturbed SAM is ``second_step``.

So with ``gradient_accumulation_steps=k`` a step is SAM on the union of the ``k`` micro-batches
(for a mean loss and equal micro-batches: SAM on the concatenated batch), at the cost of two
passes over each. The logged training loss is the first pass's (at ``w``). ``fp16`` (a
GradScaler) is refused: a skipped step would leave the weights perturbed; ``bf16`` works.
"""

from __future__ import annotations

import contextlib
import inspect

from torch import nn
from transformers import Trainer

from .._checks import check_bool, check_real
from ..optim.perturbation import check_p, check_rho, frozen_batchnorm_stats
from ..optim.sam import SAM
from ..optim.variants import LookSAM

__all__ = ["SAMTrainer"]


class SAMTrainer(Trainer):
    """A ``transformers.Trainer`` whose optimizer steps are SAM steps (see the module docstring).

    Args:
        args, kwargs: the positional and keyword arguments of ``transformers.Trainer``. ``optimizers=(opt, scheduler)`` may
            hand in a :class:`~sam_course.optim.SAM` (or ``SAMEveryK``) built by the caller;
            any other optimizer is refused, since its scheduler would follow the wrong object.
        rho, p, adaptive, eta: SAM's perturbation (:class:`~sam_course.optim.SAM`), used when
            the Trainer builds the optimizer.
        freeze_bn_stats: keep BatchNorm running statistics out of the second pass.

    Raises:
        ValueError: on a bad ``rho``, ``p``, ``eta`` or ``adaptive``, with ``fp16=True``, or for
            a given optimizer that is not SAM (or is ``LookSAM``, which needs a closure).
    """

    def __init__(self, *args, rho: float = 0.05, p: float = 2, adaptive: bool = False, eta: float = 0.01,
                 freeze_bn_stats: bool = True, **kwargs) -> None:
        self.sam_kwargs = {"rho": check_rho(rho), "p": check_p(p), "adaptive": check_bool("adaptive", adaptive),
                           "eta": check_real("eta", eta, 0)}
        self.freeze_bn_stats = check_bool("freeze_bn_stats", freeze_bn_stats)
        given = kwargs.get("optimizers", (None, None))[0]
        if given is not None and (not isinstance(given, SAM) or isinstance(given, LookSAM)):
            raise ValueError("optimizers[0] must be a sam_course SAM or SAMEveryK (LookSAM needs a closure), "
                             f"got {type(given).__name__}; or pass none and let SAMTrainer wrap the Trainer's own")
        self._sam_window: list = []
        super().__init__(*args, **kwargs)
        if self.args.fp16:
            raise ValueError("fp16=True is not supported by SAMTrainer (a GradScaler that skips a step would leave "
                             "the weights at w + eps_hat); use bf16=True or float32")

    def create_optimizer(self, model=None):
        """The Trainer's own optimizer (class, groups, hyper-parameters), wrapped in SAM."""
        if self.optimizer is None:
            base = super().create_optimizer(model)
            if not isinstance(base, SAM):
                # The groups carry every hyper-parameter; the class's defaults serve later groups.
                accepted = inspect.signature(type(base).__init__).parameters
                defaults = {k: v for k, v in base.defaults.items() if k in accepted}
                self.optimizer = SAM(base.param_groups, type(base), **self.sam_kwargs, **defaults)
        return self.optimizer

    @property
    def sam(self) -> SAM:
        """The SAM optimizer (inside accelerate's wrapper once training runs)."""
        return getattr(self.optimizer, "optimizer", self.optimizer)

    def training_step(self, model: nn.Module, inputs: dict, num_items_in_batch=None):
        """``Trainer.training_step`` (the pass at ``w``); at the window's last micro-batch also the
        pass at ``w + eps_hat`` over the whole window. Returns the loss at ``w``."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._sam_window.append(inputs)
        if not self.accelerator.sync_gradients:
            return loss
        window, self._sam_window = self._sam_window, []
        sam = self.sam
        if not getattr(sam, "next_is_sam", True):
            return loss  # SAMEveryK between SAM steps: the base step with the plain gradient
        sam.first_step(zero_grad=True)
        bn = frozen_batchnorm_stats(model) if self.freeze_bn_stats else contextlib.nullcontext()
        try:
            with bn:
                for micro in window:
                    super().training_step(model, micro, num_items_in_batch)
        except BaseException:
            sam.restore()
            raise
        return loss
