"""SAM in a Lightning ``LightningModule``, with automatic or manual optimization.

Mix :class:`SAMMixin` in front of ``LightningModule`` and return a
:class:`~sam_course.optim.SAM` (or :class:`~sam_course.optim.SAMEveryK`,
:class:`~sam_course.optim.LookSAM`) from ``configure_optimizers``::

    class Net(SAMMixin, L.LightningModule):
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)          # once per step: the second pass does not log
            return loss

        def configure_optimizers(self):
            return SAM(self.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)

Automatic optimization: Lightning calls ``optimizer.step(closure)``, which runs ``training_step``
and backward twice, the second time at ``w + eps_hat``. What the mixin adds:

* ``accumulate_grad_batches=k``: the step is SAM on the union of the ``k`` micro-batches.
  ``eps_hat`` comes from their accumulated gradient (Lightning's own accumulation), and the
  second pass re-runs every micro-batch of the window at ``w + eps_hat`` (Lightning's closure
  alone would re-run only the last one). Each loss is divided by ``k``, as Lightning does, so
  for equal micro-batches and a mean loss this is SAM on the concatenated batch.
* The second pass runs under ``sam_second_pass``: ``self.log`` and ``self.log_dict`` do
  nothing there (logging happens once per step, with the loss at ``w``), and BatchNorm running
  statistics stay frozen (:func:`~sam_course.optim.frozen_batchnorm_stats`; set
  ``sam_freeze_bn_stats = False`` to let them move).
* ``gradient_clip_val`` (``gradient_clip_algorithm`` ``"norm"`` or ``"value"``): the clip applies
  to the gradient the base optimizer applies, after the second pass, never to the first gradient
  (the one ``eps_hat`` comes from). Lightning calls ``configure_gradient_clipping`` after each
  pass; the mixin's does nothing after the first pass of a two-pass step (there a norm clip would
  change nothing for ``p = 2``, ``eps_hat`` being normalized, but a value clip would change its
  direction) and calls ``super()`` otherwise, and ``clip_gradients`` does nothing there either,
  so an override of ``configure_gradient_clipping`` that calls ``self.clip_gradients`` clips only
  the second gradient too (one that clips by other means can read ``self.sam_first_pass``). On the
  one-pass steps of ``SAMEveryK`` and ``LookSAM`` the clip applies to that pass's gradient.
  ``on_before_optimizer_step`` runs after each pass, so twice on a SAM step.
* Schedulers, ``max_steps``, checkpoints and ``BaseFinetuning`` work as with any optimizer
  (``SAM.state_dict`` holds the base optimizer's state; ``add_param_group`` adds once).
* What the step reports is the first pass's, at the weights ``w`` the step starts from, as with a
  plain optimizer: the ``outputs`` of ``on_train_batch_end`` (the returned loss and any other
  entries of ``training_step``'s dict) and what ``self.log`` records. The loss at
  ``w + eps_hat`` is neither logged nor returned (``training_step`` can read
  ``self.sam_second_pass`` to record it).

A GradScaler (``"16-mixed"`` on a GPU) is refused with a ``RuntimeError``: Lightning's plugin
then runs one pass and calls ``optimizer.step()`` itself; ``"bf16-mixed"`` needs no scaler and
works. DDP synchronizes both passes (one shared ``eps_hat``, SAM on the global batch).

Manual optimization (``self.automatic_optimization = False``): call
:meth:`SAMMixin.sam_manual_step` from ``training_step``; it counts as one optimizer step
(``max_steps``, ``global_step``). Lightning forbids ``accumulate_grad_batches`` and
``gradient_clip_val`` there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.loops.optimization.closure import AbstractClosure
from torch import Tensor

from ..optim.perturbation import frozen_batchnorm_stats
from ..optim.sam import SAM
from ..optim.variants import LookSAM, SAMEveryK

__all__ = ["SAMMixin", "unwrap_optimizer"]


def unwrap_optimizer(optimizer) -> Any:
    """The optimizer inside Lightning's ``LightningOptimizer`` wrapper (or ``optimizer`` itself)."""
    return optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer


def _two_passes(sam: SAM) -> bool:
    """Whether ``sam``'s next ``step(closure)`` calls the closure twice (perturbs after the first call)."""
    if isinstance(sam, SAMEveryK):
        return sam.next_is_sam
    if isinstance(sam, LookSAM):
        return sam.next_is_full
    return True


class SAMMixin:
    """What a ``LightningModule`` needs to train with SAM; put it first in the bases.

    Overrides ``optimizer_step``, ``on_train_batch_start`` (call ``super()`` if you override it
    too), ``configure_gradient_clipping``, ``clip_gradients``, ``log`` and ``log_dict``. See the
    module docstring for the semantics.
    """

    #: Keep BatchNorm running statistics out of the second (perturbed) pass.
    sam_freeze_bn_stats: bool = True

    @property
    def sam_second_pass(self) -> bool:
        """True while the pass at ``w + eps_hat`` runs (``training_step`` can read it)."""
        return getattr(self, "_sam_in_second_pass", False)

    @property
    def sam_first_pass(self) -> bool:
        """True from the first pass of a two-pass SAM step until ``eps_hat`` is taken from its
        gradient: in that pass and in the hooks Lightning runs after its backward
        (``on_before_optimizer_step``, ``configure_gradient_clipping``). False on the one-pass
        steps of ``SAMEveryK`` and ``LookSAM``, whose gradient the base optimizer applies."""
        return getattr(self, "_sam_in_first_pass", False)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning's clipping, but not of the first gradient of a SAM step (see the module docstring)."""
        if not self.sam_first_pass:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def clip_gradients(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """``LightningModule.clip_gradients``, except after the first pass of a SAM step."""
        if not self.sam_first_pass:
            super().clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    @contextlib.contextmanager
    def _second_pass(self) -> Iterator[None]:
        bn = frozen_batchnorm_stats(self) if self.sam_freeze_bn_stats else contextlib.nullcontext()
        self._sam_in_second_pass = True
        try:
            with bn:
                yield
        finally:
            self._sam_in_second_pass = False

    def log(self, *args, **kwargs) -> None:
        """``LightningModule.log``, except in the second pass (one record per step)."""
        if not self.sam_second_pass:
            super().log(*args, **kwargs)

    def log_dict(self, *args, **kwargs) -> None:
        """``LightningModule.log_dict``, except in the second pass (one record per step)."""
        if not self.sam_second_pass:
            super().log_dict(*args, **kwargs)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
        # With accumulation, the earlier micro-batches of the window must be re-run at
        # w + eps_hat; only their references are kept, until the window's step.
        if self.automatic_optimization and self.trainer.accumulate_grad_batches > 1:
            if not hasattr(self, "_sam_window"):
                self._sam_window = []
            self._sam_window.append((batch, batch_idx))
        return super().on_train_batch_start(batch, batch_idx)

    def _replay(self, optimizer) -> None:
        """Forward and backward, at the current (perturbed) weights, of the window's earlier micro-batches."""
        window = getattr(self, "_sam_window", [])[:-1]  # the last one is the closure's own batch
        strategy = self.trainer.strategy
        for batch, batch_idx in window:
            out = strategy.training_step(batch, batch_idx)
            loss = out.get("loss") if isinstance(out, Mapping) else out
            if loss is not None:
                strategy.backward(loss / self.trainer.accumulate_grad_batches, optimizer)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure: Callable | None = None) -> None:
        """``optimizer.step(closure)`` with the closure's second call run as SAM's second pass.

        The step's outputs (``on_train_batch_end``'s ``outputs``) stay those of the first pass.
        """
        sam = unwrap_optimizer(optimizer)
        if not isinstance(sam, SAM) or optimizer_closure is None:
            self._sam_window = []
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            # MixedPrecision with a scaler runs the closure once, then scaler.step(optimizer).
            raise RuntimeError("SAMMixin cannot train under a GradScaler (Trainer(precision='16-mixed')): it runs one "
                               "pass and calls optimizer.step() itself. Use precision='bf16-mixed' or '32-true'")

        def closure():
            if not sam.perturbed:
                # Lightning clips after this call returns: the flag stays up until the second
                # pass starts, so configure_gradient_clipping leaves the gradient of eps_hat alone.
                self._sam_in_first_pass = _two_passes(sam)
                return optimizer_closure()
            self._sam_in_first_pass = False
            with self._second_pass():
                self._replay(optimizer)
                if isinstance(optimizer_closure, AbstractClosure):
                    # Lightning reports what the closure's last __call__ cached (the batch's
                    # outputs and loss); .closure() runs the same pass without caching, so what
                    # it reports stays the first pass's, at w, as for a plain optimizer.
                    return optimizer_closure.closure().loss
                return optimizer_closure()

        try:
            optimizer.step(closure=closure)
        finally:
            self._sam_in_first_pass = False
            self._sam_window = []

    def sam_manual_step(self, compute_loss: Callable[[], Tensor], optimizer=None) -> Tensor:
        """One SAM step under manual optimization; returns the (detached) loss at ``w``.

        ``compute_loss()`` runs the forward pass of the current batch and returns its loss; it is
        called once per pass (twice on a SAM step). The gradients are zeroed first, then
        ``optimizer.step(closure)`` (through Lightning, so it counts towards ``max_steps``) runs
        the passes: SAM, SAMEveryK and LookSAM alike. ``optimizer`` defaults to
        ``self.optimizers()``.
        """
        if self.automatic_optimization:
            raise RuntimeError("sam_manual_step is for manual optimization: set self.automatic_optimization = False")
        optimizer = self.optimizers() if optimizer is None else optimizer
        sam = unwrap_optimizer(optimizer)
        if not isinstance(sam, SAM):
            raise ValueError(f"optimizer must be a sam_course SAM, got {type(sam).__name__}")

        def closure():
            if not sam.perturbed:
                loss = compute_loss()
                self.manual_backward(loss)
                return loss
            with self._second_pass():
                loss = compute_loss()
                self.manual_backward(loss)
                return loss

        optimizer.zero_grad()
        loss = optimizer.step(closure=closure)
        return loss.detach()
