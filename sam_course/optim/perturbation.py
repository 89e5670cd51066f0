"""The perturbation of a SAM step: its radius and norm, ``eps_hat`` itself, and the perturbed pass.

What :class:`~sam_course.optim.sam.SAM` and its variants compute before and between their two
gradients, as functions of plain lists of tensors: the checks of ``rho`` and ``p``, the global
norm over many tensors (robust to underflow and overflow), the first-order worst case
:func:`epsilon_hat` in a p-norm ball (chapter 3) and :func:`frozen_batchnorm_stats` for the
second forward pass (chapter 5), and :func:`norm_layer_groups`, the parameter groups of SAM-ON.
Nothing here holds state; the optimizers do.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from .._checks import check_instance, check_items, check_real

__all__ = ["check_rho", "check_p", "is_dtensor", "global_norm", "finite_norm2", "check_finite_grads", "epsilon_hat",
           "unit_direction", "frozen_batchnorm_stats", "NORM_LAYERS", "norm_layer_groups"]


def check_rho(rho, name: str = "rho") -> float:
    """``rho`` (a radius, in the parameters' units) as a finite float >= 0."""
    return check_real(name, rho, 0)


def check_p(p, name: str = "p") -> float:
    """``p`` (the order of the perturbation's norm) as a float in [1, inf]."""
    return check_real(name, p, 1, allow_inf=True)


def _dual_exponent(p: float) -> float:
    """q with 1/p + 1/q = 1 (q = inf for p = 1, q = 1 for p = inf)."""
    if p == 1:
        return math.inf
    if math.isinf(p):
        return 1.0
    return p / (p - 1.0)


def is_dtensor(tensor) -> bool:
    """True when ``tensor`` is a ``torch.distributed.tensor.DTensor`` (a parameter or gradient
    sharded by FSDP2's ``fully_shard``), recognized by its attributes so that no torch release
    needs the import."""
    return isinstance(tensor, Tensor) and callable(getattr(tensor, "full_tensor", None)) and hasattr(tensor, "placements")


def global_norm(tensors: Sequence[Tensor], order: float) -> Tensor:
    """The ``order``-norm of all ``tensors`` together, as one 0-d tensor (one foreach pass).

    For DTensors (gradients sharded by FSDP2) the norm is over the whole, every shard of every
    rank: ``torch._foreach_norm`` gives each rank a *partial* norm of its shard, and
    ``float()`` of a partial DTensor silently reads this rank's part (torch 2.14: the norm of one
    sharded tensor, or the inf-norm of several), so the result is reduced over the ranks with
    ``full_tensor()`` (an all-reduce) and returned as a plain tensor, equal on every rank.
    """
    norms = torch._foreach_norm(list(tensors), order)
    norm = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms), order)
    return norm.full_tensor() if is_dtensor(norm) else norm


def check_finite_grads(grads: Sequence[Tensor]) -> None:
    """Raise ``ValueError`` when any of ``grads`` holds inf or NaN (checked before a perturbation
    moves any weight, so the error leaves the model as it was)."""
    if not bool(torch.isfinite(global_norm(grads, math.inf))):
        raise ValueError(
            "grads contain inf or NaN; no perturbation was applied and the parameters are unchanged "
            "(check the loss, the learning rate, or use a GradScaler-aware step under mixed precision)"
        )


def finite_norm2(tensors: Sequence[Tensor], raw: Sequence[Tensor]) -> float:
    """The global 2-norm of ``tensors`` as a float, exact even where squaring under- or overflows.

    ``raw`` are the gradients ``tensors`` came from (the same list, or the unscaled gradients of
    ASAM's ``T * g``); a norm that is not finite raises ``ValueError`` through
    :func:`check_finite_grads` on them.
    """
    norm = float(global_norm(tensors, 2.0))
    # Squares of entries below sqrt(tiny) underflow and squares above sqrt(max) overflow; well
    # inside that range the plain norm is exact enough and costs one pass.
    safe_floor = 1e4 * math.sqrt(torch.finfo(tensors[0].dtype).tiny)
    if safe_floor < norm < math.inf:
        return norm
    check_finite_grads(raw)
    peak = global_norm(tensors, math.inf)
    if not bool(peak > 0):
        return 0.0
    return float(peak) * float(global_norm(torch._foreach_div(list(tensors), peak), 2.0))


def epsilon_hat(grads: Sequence[Tensor], rho: float, p: float = 2) -> list[Tensor]:
    """The first-order maximizer of the loss over the p-norm ball of radius ``rho``.

    Solves ``max_{||eps||_p <= rho} <g, eps>`` for the gradient ``g`` given as a list of tensors
    (one per parameter; the norm is taken over all of them together). With ``1/p + 1/q = 1``::

        eps_hat = rho * sign(g) * |g|**(q - 1) / ||g||_q**(q - 1)

    so that ``||eps_hat||_p = rho`` and ``<g, eps_hat> = rho * ||g||_q`` (Hölder's inequality
    holds with equality). Special cases: ``p = 2`` gives ``rho * g / ||g||_2``; ``p = inf`` gives
    ``rho * sign(g)``; ``p = 1`` puts all of ``rho`` on the entries of largest ``|g|``, shared
    equally between ties. A zero gradient gives a zero perturbation. Derived in chapter 3.

    Args:
        grads: gradients, any shapes; returned tensors have the same shapes and dtypes.
        rho: radius of the ball (same units as the parameters), finite and >= 0.
        p: the norm's order, in [1, inf].

    Returns:
        A list of new tensors, ``eps_hat`` split like ``grads``.

    Raises:
        ValueError: on a bad ``rho`` or ``p``, or when a gradient holds inf or NaN.
    """
    check_rho(rho)
    check_p(p)
    grads = [g.detach() for g in check_items("grads", grads, Tensor, "tensors")]
    if not grads:
        return []
    check_finite_grads(grads)
    return unit_direction(grads, float(p), scale=float(rho))


def unit_direction(grads: list[Tensor], p: float, scale: float = 1.0) -> list[Tensor]:
    """``scale`` times the unit p-norm vector maximizing ``<g, .>`` over all ``grads`` together.

    :func:`epsilon_hat` without its checks: ``grads`` must be finite (:func:`check_finite_grads`),
    ``p`` a float in [1, inf]. Returns new tensors shaped like ``grads``.
    """
    if p == 2:
        norm = finite_norm2(grads, grads)
        return torch._foreach_mul(grads, scale / norm if norm > 0 else 0.0)
    if math.isinf(p):
        return torch._foreach_mul([g.sign() for g in grads], scale)
    peak = global_norm(grads, math.inf)
    if not bool(peak > 0):
        return [torch.zeros_like(g) for g in grads]
    # Dividing by max |g| first keeps |g|**(q-1) inside the float range for any q.
    ratios = [g.abs().div_(peak) for g in grads]
    if p == 1:
        ties = [(r == 1).to(g.dtype) for r, g in zip(ratios, grads)]
        count = sum(t.sum() for t in ties)
        return [g.sign().mul_(t).mul_(scale / count) for g, t in zip(grads, ties)]
    q = _dual_exponent(p)
    powered = torch._foreach_pow(ratios, q - 1.0)
    # ||r||_q**(q-1) = (sum r**q)**((q-1)/q) = (sum r**q)**(1/p).
    total = sum((w * r).sum() for w, r in zip(powered, ratios))
    factor = scale / total ** (1.0 / p)
    return [g.sign().mul_(w).mul_(factor) for g, w in zip(grads, powered)]


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Stop BatchNorm layers from updating their running statistics inside the block.

    SAM runs two forward passes per step on the same batch. The second one, at the perturbed
    weights ``w + eps_hat``, should not move BatchNorm's running mean and variance: they would
    then average statistics of weights the model never has, and every batch would count twice
    (``num_batches_tracked`` too). Inside this block batch statistics still normalize each batch in
    training mode, exactly as in the first pass; only the buffers stay untouched. Chapter 5.

    Example::

        loss_fn(model(x), y).backward()
        opt.first_step(zero_grad=True)
        with frozen_batchnorm_stats(model):
            loss_fn(model(x), y).backward()
        opt.second_step(zero_grad=True)
    """
    check_instance("model", model, nn.Module, "torch.nn.Module")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    saved = [m.track_running_stats for m in norms]
    try:
        for m in norms:
            # With track_running_stats off, a training-mode forward uses batch statistics and
            # neither reads nor writes the buffers (see torch.nn.modules.batchnorm).
            m.track_running_stats = False
        yield model
    finally:
        for m, flag in zip(norms, saved):
            m.track_running_stats = flag


#: The normalization layers whose affine parameters SAM-ON perturbs: BatchNorm and InstanceNorm
#: (every ``_NormBase``), LayerNorm, GroupNorm and, where torch has it, RMSNorm.
NORM_LAYERS: tuple[type[nn.Module], ...] = tuple(
    k for k in (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", None)) if k is not None
)


def norm_layer_groups(model: nn.Module, rho: float = 0.05) -> list[dict]:
    """Parameter groups for SAM-ON (Mueller et al., NeurIPS 2023): perturb only the normalization layers.

    Returns ``[{"params": norm_params, "rho": rho}, {"params": others, "rho": 0.0}]``:
    ``norm_params`` are the trainable affine parameters (``weight``, ``bias``) of every module of
    ``model`` that is one of :data:`NORM_LAYERS`, ``others`` every other trainable parameter (the
    second group is left out when empty). Given to :class:`~sam_course.optim.SAM` (or a variant),
    ``eps_hat`` is ``rho * g_N / ||g_N||`` on the normalization parameters, ``g_N`` being their
    gradient alone (groups with ``rho = 0`` stay out of the norm), and zero elsewhere; the base
    optimizer still updates every parameter. Put per-group options (``lr``, ``weight_decay``) on
    the returned dicts before building the optimizer::

        opt = SAM(norm_layer_groups(model, rho=0.5), torch.optim.SGD, lr=0.1, momentum=0.9)

    Each parameter is listed once, in ``model.parameters()`` order. SAM-ON's paper uses a larger
    ``rho`` than SAM's (the ball holds far fewer coordinates).

    Raises:
        ValueError: on a bad ``rho``, a ``model`` that is not a ``torch.nn.Module``, or one
            without a trainable normalization parameter.
    """
    check_instance("model", model, nn.Module, "torch.nn.Module")
    rho = check_rho(rho)
    norm_ids = {id(q) for m in model.modules() if isinstance(m, NORM_LAYERS) for q in m.parameters(recurse=False)}
    trainable = [q for q in model.parameters() if q.requires_grad]
    norm_params = [q for q in trainable if id(q) in norm_ids]
    if not norm_params:
        raise ValueError(f"model has no trainable affine parameter in a normalization layer "
                         f"({', '.join(k.__name__ for k in NORM_LAYERS)}), got {type(model).__name__}: SAM-ON "
                         "would perturb nothing")
    others = [q for q in trainable if id(q) not in norm_ids]
    return [{"params": norm_params, "rho": rho}] + ([{"params": others, "rho": 0.0}] if others else [])
