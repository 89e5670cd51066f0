"""A dataset as whole tensors: how :func:`~sam_course.train.fit` batches and evaluates without a
per-example loop (chapters 7, 9, 11 and 13).

The course's datasets already hold their images in one tensor; reading them example by example
through a ``DataLoader`` costs about ten times the indexing of that tensor by a seeded
permutation. :func:`as_tensors` finds the tensors behind the datasets the course uses, the clean
labels and the noise mask of a :class:`~sam_course.noise.NoisyLabels` included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .._checks import check_instance
from ..data import TensorImageDataset
from ..noise import NoisyLabels

__all__ = ["DatasetTensors", "as_tensors", "device_of"]


@dataclass
class DatasetTensors:
    """A dataset as whole tensors.

    Attributes:
        inputs: ``(N, ...)``, the examples.
        targets: ``(N,)`` int64, the labels the dataset yields (the noisy ones for NoisyLabels).
        clean: ``(N,)`` int64 clean labels, or None for a dataset without label noise.
        noise_mask: ``(N,)`` bool, True where the label was corrupted (None without noise).
    """

    inputs: Tensor
    targets: Tensor
    clean: Tensor | None = None
    noise_mask: Tensor | None = None

    def to(self, device: torch.device) -> "DatasetTensors":
        """The same tensors on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return DatasetTensors(move(self.inputs), move(self.targets), move(self.clean), move(self.noise_mask))

    def __len__(self) -> int:
        return len(self.targets)


def _integer_targets(targets, what: str) -> Tensor:
    """``targets`` as int64 when they are integer class indices; floats and bools are refused, never truncated."""
    targets = torch.as_tensor(targets)
    wrong_kind = targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool
    if targets.ndim != 1 or (targets.numel() and wrong_kind):
        raise ValueError(f"{what} must be a 1-D tensor of integer class indices, got {targets.dtype} of shape "
                         f"{tuple(targets.shape)} (labels are not rounded or truncated; convert them explicitly)")
    if targets.numel() and int(targets.min()) < 0:
        raise ValueError(f"{what} must be class indices >= 0, found {int(targets.min())}")
    return targets.long()


def as_tensors(dataset) -> DatasetTensors:
    """The whole of ``dataset`` as tensors, without a per-example loop for the course's datasets.

    Understands :class:`~sam_course.data.TensorImageDataset`, ``TensorDataset`` (inputs,
    targets), :class:`~sam_course.noise.NoisyLabels` and ``Subset`` of any of these; a
    ``DataLoader`` stands for its ``.dataset``. Anything else is indexed once, example by example.

    Raises:
        ValueError: if ``dataset`` is neither a Dataset nor indexable, or its targets are not
            integer class indices >= 0 (float targets are refused, not truncated).
    """
    if isinstance(dataset, DataLoader):
        return as_tensors(dataset.dataset)
    if isinstance(dataset, NoisyLabels):
        inner = as_tensors(dataset.dataset)
        return DatasetTensors(inner.inputs, dataset.targets, dataset.clean_targets, dataset.noise_mask)
    if isinstance(dataset, TensorImageDataset):
        return DatasetTensors(dataset.data, dataset.targets)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return DatasetTensors(dataset.tensors[0], _integer_targets(dataset.tensors[1], "a TensorDataset's targets"))
    if isinstance(dataset, Subset):
        inner = as_tensors(dataset.dataset)
        index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return DatasetTensors(pick(inner.inputs), pick(inner.targets), pick(inner.clean), pick(inner.noise_mask))
    if isinstance(dataset, (str, bytes)) or not (isinstance(dataset, Dataset) or hasattr(dataset, "__getitem__")):
        check_instance("dataset", dataset, Dataset, "Dataset or DataLoader")  # raises
    items = [dataset[i] for i in range(len(dataset))]
    inputs = torch.stack([torch.as_tensor(x) for x, _ in items])
    return DatasetTensors(inputs, _integer_targets([torch.as_tensor(y).item() for _, y in items], "the dataset's labels"))


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
