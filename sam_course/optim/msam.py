"""m-SAM and m-sharpness (Foret et al., 2021, section 4.1; chapter 12).

With data parallelism each worker computes ``eps_hat`` from its own shard of ``m`` examples. The
gradient SAM then follows is the average over disjoint chunks of ``m`` examples of each chunk's
gradient taken at that chunk's own worst-case point. The paper finds smaller ``m`` generalizes
better, and that m-sharpness with small ``m`` tracks the generalization gap better than the
sharpness of the full training loss.

:func:`msam_gradient` loops over the chunks, except for networks of Linear layers, where
:mod:`sam_course.optim.msam_lowrank` gets the same gradient for about the cost of one plain SAM step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._checks import check_choice, check_instance, check_int
from .._params import LossFn
from .msam_lowrank import lowrank_msam_gradient, lowrank_unsupported_reason
from .perturbation import check_rho, frozen_batchnorm_stats
from .sam import SAM

__all__ = ["MSAM_METHODS", "msam_gradient", "msam_step", "m_sharpness"]

#: How :func:`msam_gradient` computes: ``"auto"`` picks ``"lowrank"`` where it applies and there is
#: more than one chunk, else ``"loop"``.
MSAM_METHODS = ("auto", "loop", "lowrank")


def _chunks(inputs: Tensor, targets: Tensor, m: int) -> list[tuple[Tensor, Tensor]]:
    check_instance("inputs", inputs, Tensor, "torch.Tensor")
    check_instance("targets", targets, Tensor, "torch.Tensor")
    m = check_int("m", m, 1)
    if inputs.ndim == 0 or targets.ndim == 0:
        raise ValueError(f"inputs and targets must have a batch dimension, got shapes {tuple(inputs.shape)} "
                         f"and {tuple(targets.shape)}")
    n = inputs.shape[0]
    if targets.shape[0] != n:
        raise ValueError(f"inputs and targets must have the same batch size, got {n} and {targets.shape[0]}")
    if n % m:
        raise ValueError(f"m must divide the batch size: batch size {n} is not a multiple of m={m}")
    return list(zip(inputs.split(m), targets.split(m)))


def msam_gradient(optimizer: SAM, model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, m: int,
                  method: str = "auto") -> Tensor:
    """Fill ``.grad`` with the m-SAM gradient of one batch and return the batch loss at ``w``.

    The batch is split into ``batch / m`` disjoint chunks of ``m`` consecutive examples. Each chunk
    gets its own ``eps_hat`` (from the chunk's gradient, with the optimizer's ``rho``, ``p`` and
    ``adaptive`` settings) and its gradient at its own perturbed point; ``.grad`` becomes the mean
    of those gradients, ready for ``optimizer.base_optimizer.step()``. With ``m`` equal to the
    batch size this is exactly plain SAM's gradient. ``loss_fn`` must average over examples.

    BatchNorm: the unperturbed pass of each chunk updates the running statistics (as the workers of
    a data-parallel run would), the perturbed pass does not.

    Args:
        optimizer: the :class:`~sam_course.optim.SAM` optimizer over ``model``'s parameters.
        model, loss_fn: ``loss_fn(model(x), y)`` is the mean loss of a chunk.
        inputs, targets: one batch, first dimension the batch size ``n``.
        m: chunk size; must divide ``n``.
        method: ``"loop"`` runs the two passes chunk by chunk (any model; ``2 n / m`` passes);
            ``"lowrank"`` computes the same gradient in about one SAM step's cost for networks of
            Linear layers with ``p = 2`` (:mod:`sam_course.optim.msam_lowrank`; raises if the model or
            optimizer does not qualify); ``"auto"`` (default) takes ``"lowrank"`` when it
            qualifies and ``n / m > 1``, else ``"loop"``. The two agree up to rounding.

    Returns:
        The mean of the chunks' losses at ``w`` (a 0-d tensor, detached).

    Raises:
        TypeError: (the package's ``ArgumentTypeError``, also a ``ValueError``) when ``optimizer`` is not a SAM,
            ``model`` not a module, ``inputs`` or ``targets`` not tensors, ``m`` not an int.
        ValueError: when ``m`` does not divide ``n``, for an unknown ``method``, when
            ``optimizer`` holds parameters that are not ``model``'s, or for ``"lowrank"`` on a model
            that does not qualify (the message says why).
    """
    _check_model(model, loss_fn)
    _check_optimizer(optimizer, model)
    chunks = _chunks(inputs, targets, m)
    check_choice("method", method, MSAM_METHODS)
    # With one chunk the loop is plain SAM's step, bit for bit; auto keeps it.
    if method == "lowrank" or (method == "auto" and len(chunks) > 1):
        reason = lowrank_unsupported_reason(optimizer, model)
        if reason is None:
            loss = lowrank_msam_gradient(optimizer, model, loss_fn, inputs, targets, m)
            if loss is not None:
                return loss
        elif method == "lowrank":
            raise ValueError(f"method='lowrank' does not apply: {reason}; use method='loop'")
    return _loop_msam_gradient(optimizer, model, loss_fn, chunks)


def _check_model(model: nn.Module, loss_fn: LossFn) -> None:
    check_instance("model", model, nn.Module, "torch.nn.Module")
    check_instance("loss_fn", loss_fn, Callable, "callable (loss_fn(model(x), y) -> the mean loss)")


def _check_optimizer(optimizer: SAM, model: nn.Module) -> None:
    check_instance("optimizer", optimizer, SAM, "sam_course.optim.SAM (or a variant)")
    owned = {id(q) for q in model.parameters()}
    foreign = sum(id(q) not in owned for group in optimizer.param_groups for q in group["params"])
    if foreign:
        raise ValueError(f"optimizer must be a SAM over model's parameters: {foreign} of its parameters are not "
                         "model's")


def _loop_msam_gradient(optimizer: SAM, model: nn.Module, loss_fn: LossFn,
                        chunks: list[tuple[Tensor, Tensor]]) -> Tensor:
    """:func:`msam_gradient` chunk by chunk: two passes per chunk, any model."""
    optimizer.zero_grad()
    params = [q for group in optimizer.param_groups for q in group["params"]]
    running: list = [None] * len(params)
    total = torch.zeros(())
    for x, y in chunks:
        for q in params:
            q.grad = None
        with torch.enable_grad():
            loss = loss_fn(model(x), y)
            loss.backward()
        optimizer.first_step()
        # Handing the running sum back as .grad lets autograd add this chunk's perturbed gradient
        # to it in place: no extra pass over the parameters.
        for q, g in zip(params, running):
            q.grad = g
        with torch.enable_grad(), frozen_batchnorm_stats(model):
            loss_fn(model(x), y).backward()
        optimizer._restore()
        running = [q.grad for q in params]
        total = total + loss.detach()
    summed = [g for g in running if g is not None]
    if summed:
        torch._foreach_div_(summed, len(chunks))
    return total / len(chunks)


def msam_step(optimizer: SAM, model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, m: int,
              method: str = "auto") -> Tensor:
    """One m-SAM step: :func:`msam_gradient`, then the base optimizer's step. Returns the loss at ``w``."""
    loss = msam_gradient(optimizer, model, loss_fn, inputs, targets, m, method)
    optimizer.second_step()
    return loss


def _ascent(model: nn.Module, params: list[Tensor], loss_fn: LossFn, x: Tensor, y: Tensor,
            rho: float, steps: int) -> float:
    """Largest ``L(w + eps)`` seen over ``steps + 1`` rounds of ``eps <- rho * grad / ||grad||``."""
    origin = [q.detach().clone() for q in params]
    best = -float("inf")
    try:
        for k in range(steps + 2):
            loss = loss_fn(model(x), y)
            best = max(best, loss.item())
            if k == steps + 1:
                break
            grads = torch.autograd.grad(loss, params)
            norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
            if norm == 0:
                break
            # Projected gradient ascent with an infinite step: the new point is the boundary point
            # that maximizes the linearization at the current one. For a convex loss every round
            # can only raise the loss; round 0 is SAM's own eps_hat.
            with torch.no_grad():
                torch._foreach_copy_(params, origin)
                torch._foreach_add_(params, grads, alpha=rho / norm)
    finally:
        with torch.no_grad():
            torch._foreach_copy_(params, origin)
    return best


def m_sharpness(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, m: int,
                rho: float = 0.05, steps: int = 10) -> float:
    """The m-sharpness of ``model`` on a set of examples (chapter 12).

    The average over disjoint chunks of ``m`` examples of
    ``max_{||eps||_2 <= rho} L_chunk(w + eps) - L_chunk(w)``. The inner maximum is estimated by
    projected gradient ascent with an infinite step size: ``eps_hat`` first, then ``steps`` rounds of
    ``eps <- rho * grad L(w + eps) / ||grad L(w + eps)||``, keeping the largest loss seen. So the
    estimate is at least SAM's first-order one and never above the true maximum. The model's weights and
    BatchNorm buffers are left as they were; call ``model.eval()`` first to measure with running
    statistics.

    Args:
        inputs, targets: the examples, ``n`` of them; ``m`` must divide ``n``.
        m: chunk size.
        rho: radius of the ball, in parameter units.
        steps: ascent rounds per chunk after the first (``eps_hat``) one.

    Returns:
        The m-sharpness (loss units), a float >= 0.

    Raises:
        TypeError: (the package's ``ArgumentTypeError``, also a ``ValueError``) for a ``model``, ``inputs``,
            ``targets``, ``m``, ``rho`` or ``steps`` of the wrong kind (``rho=True`` included).
        ValueError: for ``m < 1``, ``rho`` negative or not finite, ``steps < 0``, or an ``m``
            that does not divide ``n``.
    """
    _check_model(model, loss_fn)
    rho = check_rho(rho)
    steps = check_int("steps", steps, 0)
    chunks = _chunks(inputs, targets, m)
    params = [q for q in model.parameters() if q.requires_grad]
    total = 0.0
    with frozen_batchnorm_stats(model):
        for x, y in chunks:
            with torch.no_grad():
                base = loss_fn(model(x), y).item()
            total += _ascent(model, params, loss_fn, x, y, rho, steps) - base
    return total / len(chunks)
