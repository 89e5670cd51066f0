"""Loss, accuracy and memorization of a model on a dataset (chapters 7, 9, 11 and 13).

Under label noise one prediction is scored three ways: against the labels trained on (the noisy
ones), against the clean labels of the same images, and, on the corrupted examples only, how often
the network predicts the wrong label it was given (memorization, chapter 11).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_int
from .._params import LossFn
from .tensors import DatasetTensors, as_tensors, device_of

__all__ = ["evaluate", "evaluate_tensors"]


@torch.no_grad()
def _predict(model: nn.Module, tensors: DatasetTensors, loss_fn: LossFn, batch_size: int) -> tuple[float, Tensor]:
    """Mean loss (``loss_fn`` averages over a batch) and argmax predictions, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        # Accumulated in float64 on the device: one host sync per evaluation, not per batch.
        total = torch.zeros((), dtype=torch.float64, device=tensors.targets.device)
        predictions = []
        for x, y in zip(tensors.inputs.split(batch_size), tensors.targets.split(batch_size)):
            logits = model(x)
            total += loss_fn(logits, y).double() * len(y)
            predictions.append(logits.argmax(dim=1))
    finally:
        model.train(was_training)
    return float(total) / len(tensors), torch.cat(predictions)


def _scores(tensors: DatasetTensors, predictions: Tensor) -> dict[str, float]:
    """Accuracy on the labels, on the clean labels, and memorization (counts, then one division)."""
    n = len(tensors)
    scores = {"acc": int((predictions == tensors.targets).sum()) / n}
    if tensors.clean is not None:
        scores["clean_acc"] = int((predictions == tensors.clean).sum()) / n
        corrupted = int(tensors.noise_mask.sum())
        hits = int((predictions[tensors.noise_mask] == tensors.targets[tensors.noise_mask]).sum())
        scores["memorized"] = hits / corrupted if corrupted else math.nan
    return scores


def evaluate_tensors(model: nn.Module, tensors: DatasetTensors, loss_fn: LossFn, batch_size: int) -> dict[str, float]:
    """:func:`evaluate` on a dataset already turned into tensors on ``model``'s device (no checks)."""
    loss, predictions = _predict(model, tensors, loss_fn, batch_size)
    return {"loss": loss, **_scores(tensors, predictions)}


def evaluate(model: nn.Module, data, *, loss_fn: LossFn | None = None, batch_size: int = 1000) -> dict[str, float]:
    """Loss and accuracy of ``model`` on a dataset, in eval mode, without gradients.

    Args:
        model: maps a batch ``(B, ...)`` to logits ``(B, num_classes)``; its mode is restored.
        data: a dataset (or a ``DataLoader``, whose ``.dataset`` is used), see
            :func:`~sam_course.train.fit`.
        loss_fn: averages over a batch; default cross-entropy.
        batch_size: examples per forward pass (only memory depends on it).

    Returns:
        ``{"loss", "acc"}``: the mean loss (nats for cross-entropy) and the fraction of examples
        whose argmax logit equals their label. For a :class:`~sam_course.noise.NoisyLabels` dataset
        the labels are the noisy ones, and ``"clean_acc"`` (accuracy on the clean labels) and
        ``"memorized"`` (fraction of corrupted examples predicted as their noisy label; NaN when
        none is corrupted) are added. Chapters 7, 9, 11 and 13.

    Raises:
        ValueError: on a bad ``batch_size`` or an empty dataset.
    """
    check_int("batch_size", batch_size, low=1)
    tensors = as_tensors(data)
    if len(tensors) == 0:
        raise ValueError("data must hold at least one example")
    return evaluate_tensors(model, tensors.to(device_of(model)), loss_fn or nn.CrossEntropyLoss(), batch_size)
