"""The full-data Hessian of the training loss as an operator: ``H v`` by double backward, products counted.

Every curvature measurement of the course is built on :class:`HessianOperator`:
:func:`~sam_course.curvature.hessian.hvp` and :func:`~sam_course.curvature.hessian.gradient`
(chapter 4) and the eigenvalue, trace and density estimators of
:mod:`sam_course.curvature.spectrum` (chapter 13), whose cost is counted in products with ``H``
(``num_hvps``). The conventions (mean loss, data as batches, flat vectors, eval mode) are those
listed in :mod:`sam_course.curvature.hessian`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._params import LossFn, as_batches, check_eval_mode, flatten, num_entries, split_flat, trainable

__all__ = ["HessianOperator"]


class HessianOperator:
    """The full-data Hessian of ``loss_fn`` at the model's current parameters, as an operator that
    counts its products.

    The loss is the average over all examples of ``data``: batch losses weighted by batch size
    ``y.shape[0]``. Products by double backward; see :func:`~sam_course.curvature.hessian.hvp`
    for why.

    Args:
        model: the network; BatchNorm and dropout must be in eval mode (``ValueError`` otherwise).
        loss_fn: ``loss_fn(model(x), y)`` returns the MEAN loss of a batch.
        data: one batch ``(x, y)`` or a sequence of batches, read once into memory so that every
            product sees the same examples.

    Attributes:
        params: the trainable parameters, in ``model.parameters()`` order.
        batches: the batches, on the parameters' device.
        total: the number of examples over all batches.
        dim: the length of a flat vector over ``params``.
        num_hvps: products with ``H`` taken so far (one product = one pass over every batch).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, data) -> None:
        check_eval_mode(model)
        self.model, self.loss_fn = model, loss_fn
        self.params = trainable(model)
        self.batches = as_batches(data, self.params[0].device)
        self.total = sum(y.shape[0] for _, y in self.batches)
        self.dim = num_entries(self.params)
        self.num_hvps = 0

    def _weighted_losses(self):
        for x, y in self.batches:
            yield self.loss_fn(self.model(x), y) * (y.shape[0] / self.total)

    def gradient(self) -> tuple[float, Tensor]:
        """The data-averaged loss (a float) and its gradient, a ``(dim,)`` flat vector in the
        parameters' dtype; ``.grad`` is not touched and no product is counted."""
        loss_value, grad = 0.0, None
        with torch.enable_grad():
            for loss in self._weighted_losses():
                g = flatten(torch.autograd.grad(loss, self.params, allow_unused=True), self.params)
                grad = g if grad is None else grad + g
                loss_value += float(loss.detach())
        return loss_value, grad

    def matvec(self, v: Tensor) -> Tensor:
        """``H v`` for a flat ``(dim,)`` vector ``v`` (any float dtype); returns the parameters' dtype."""
        pieces = split_flat(v, self.params)
        result = None
        with torch.enable_grad():
            for loss in self._weighted_losses():
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                # A gradient that does not depend on the parameters (a loss linear in them, or a
                # parameter the forward pass never uses) contributes a zero block to H v.
                live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
                hv: list[Tensor | None] = [None] * len(self.params)
                if live:
                    second = torch.autograd.grad(
                        [grads[i] for i in live], self.params,
                        grad_outputs=[pieces[i] for i in live], allow_unused=True,
                    )
                    hv = list(second)
                flat = flatten(hv, self.params).detach()
                result = flat if result is None else result + flat
        self.num_hvps += 1
        return result
