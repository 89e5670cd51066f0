"""The flat-vector convention over a model's trainable parameters, data as batches, and ``LossFn``.

Shared by the curvature tools (chapters 4, 9, 13), the SAM-gradient decomposition (chapter 4)
and the optimizer core:

* ``LossFn``: ``loss_fn(model(x), y)`` returns the MEAN loss of a batch, a 0-d tensor.
* A *flat vector* is a 1-D tensor over the parameters that require grad, concatenated in
  ``model.parameters()`` order (the order of ``torch.nn.utils.parameters_to_vector``); its length
  is :func:`num_entries` of :func:`trainable`.
* ``data`` is one batch ``(x, y)`` or a sequence of batches (a list, or a ``DataLoader``, read
  once into a list by :func:`as_batches`).

Imports torch only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ._checks import check_instance, check_int

__all__ = [
    "LossFn",
    "trainable",
    "num_entries",
    "split_flat",
    "flatten",
    "as_batches",
    "seeded_generator",
    "check_eval_mode",
]

LossFn = Callable[[Tensor, Tensor], Tensor]

_STOCHASTIC_MODULES = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def trainable(model: nn.Module) -> list[Tensor]:
    """The parameters of ``model`` that require grad, in ``model.parameters()`` order."""
    check_instance("model", model, nn.Module, "torch.nn.Module")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters that require grad")
    return params


def check_eval_mode(model: nn.Module) -> None:
    """Raise ``ValueError`` when a BatchNorm or dropout layer of ``model`` is in training mode.

    There the loss depends on batch composition or on random masks, so it has no single Hessian
    or gradient to measure (chapter 4).
    """
    check_instance("model", model, nn.Module, "torch.nn.Module")
    for name, module in model.named_modules():
        if module.training and isinstance(module, _STOCHASTIC_MODULES):
            kind = "BatchNorm" if isinstance(module, nn.modules.batchnorm._BatchNorm) else "dropout"
            raise ValueError(
                f"model has a {kind} layer in training mode ({name or 'model'}: {type(module).__name__}); "
                "there the loss depends on batch composition or on random masks, so it has no single "
                "Hessian. Call model.eval() first (BatchNorm then uses its running statistics)."
            )


def as_batches(data, device: torch.device | None = None) -> list[tuple[Tensor, Tensor]]:
    """``data`` (one batch ``(x, y)`` or a sequence of batches) as a list of batches on ``device``."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor) and isinstance(data[1], Tensor):
        batches = [tuple(data)]
    else:
        try:
            batches = [tuple(batch) for batch in data]
        except TypeError:
            raise ValueError("data must be a batch (x, y) of tensors or a sequence of such batches") from None
    if not batches:
        raise ValueError("data must hold at least one batch, got none")
    out = []
    for i, batch in enumerate(batches):
        if len(batch) != 2 or not all(isinstance(t, Tensor) for t in batch):
            raise ValueError(f"data[{i}] must be a pair (x, y) of tensors")
        x, y = batch
        if y.ndim == 0 or y.shape[0] == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"data[{i}]: x and y must have the same, non-zero batch size, got shapes "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        if device is not None:
            x, y = x.to(device), y.to(device)
        out.append((x, y))
    return out


def num_entries(params: Sequence[Tensor]) -> int:
    """The length of a flat vector over ``params``."""
    return sum(p.numel() for p in params)


def split_flat(vector: Tensor, params: Sequence[Tensor], name: str = "v") -> list[Tensor]:
    """Cut a flat vector into pieces shaped (and typed) like ``params``."""
    dim = num_entries(params)
    check_instance(name, vector, Tensor, f"1-D torch.Tensor with {dim} entries (one per trainable parameter)")
    if vector.ndim != 1 or vector.numel() != dim:
        shape = tuple(vector.shape) if isinstance(vector, Tensor) else type(vector).__name__
        raise ValueError(f"{name} must be a 1-D tensor with {dim} entries (one per trainable parameter), got {shape}")
    pieces = vector.split([p.numel() for p in params])
    return [piece.reshape(p.shape).to(dtype=p.dtype, device=p.device) for piece, p in zip(pieces, params)]


def flatten(tensors: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    """Concatenate per-parameter tensors into a flat vector, ``None`` (no dependence) meaning zeros."""
    return torch.cat([(torch.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(tensors, params)])


def seeded_generator(seed) -> torch.Generator:
    """A private CPU ``torch.Generator`` seeded by ``seed`` (an int >= 0); the global state is untouched."""
    return torch.Generator().manual_seed(check_int("seed", seed, 0))
