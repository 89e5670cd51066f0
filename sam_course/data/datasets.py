"""Datasets in memory: :class:`TensorImageDataset`, :class:`DataBundle`, and what the chapters do with them.

A bundle is a train and a test split of float32 images ``(N, C, H, W)`` with int64 labels
``(N,)`` and one line of provenance. This module shapes bundles: class-balanced seeded subsets
(:func:`subset`, the chapters' small budgets), per-channel standardization (:func:`normalize`) and
seeded DataLoaders (:func:`loaders`). It reads no file; :mod:`sam_course.data.sources` builds the
bundles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from .._checks import check_bool, check_instance, check_int, check_items, check_optional_int, check_real

__all__ = [
    "TensorImageDataset",
    "DataBundle",
    "subset",
    "normalize",
    "loaders",
    "balanced_indices",
    "take_balanced",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
]

#: Class names of MNIST, ``MNIST_CLASSES[k]`` naming digit ``k``.
MNIST_CLASSES = (
    "0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
    "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine",
)
#: Class names of Fashion-MNIST, in its label order.
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Class names of CIFAR-10, in torchvision's label order.
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


class TensorImageDataset(Dataset):
    """An image classification dataset held entirely in memory.

    Attributes:
        data: float32 tensor ``(N, C, H, W)``; pixels in ``[0, 1]`` unless the
            bundle was passed through :func:`normalize`.
        targets: int64 tensor ``(N,)`` of class indices. Label-noise wrappers
            (``sam_course.noise``) read and copy this attribute.
        classes: class names, ``classes[k]`` naming label ``k``.

    ``dataset[i]`` returns ``(data[i], targets[i])``; a ``DataLoader`` stacks
    these into ``(B, C, H, W)`` float and ``(B,)`` int64 batches.
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, classes: Sequence[str]) -> None:
        check_instance("data", data, torch.Tensor, "torch.Tensor")
        check_instance("targets", targets, torch.Tensor, "torch.Tensor")
        if data.ndim != 4 or not data.is_floating_point():
            raise ValueError(f"data must be a float tensor of shape (N, C, H, W), got {data.dtype} {tuple(data.shape)}")
        if targets.ndim != 1 or targets.dtype != torch.int64 or len(targets) != len(data):
            raise ValueError(
                f"targets must be an int64 tensor of shape ({len(data)},), got {targets.dtype} {tuple(targets.shape)}"
            )
        if len(targets) and not 0 <= int(targets.min()) <= int(targets.max()) < len(classes):
            raise ValueError(f"targets must lie in [0, {len(classes) - 1}] (one per class name)")
        self.data = data
        self.targets = targets
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        return self.data[index], self.targets[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(N={len(self)}, image_shape={tuple(self.data.shape[1:])})"


@dataclass(frozen=True)
class DataBundle:
    """A dataset's train and test splits and where they came from.

    Attributes:
        name: what the tensors actually hold, e.g. ``"MNIST"`` or
            ``"Fashion-MNIST (CIFAR-10 stand-in)"``.
        train, test: the two splits.
        source: one human-readable line naming the source, for the chapter's
            provenance admonition.
        is_standin: True when the data is NOT the requested dataset (the
            CIFAR-10 stand-in); chapters must say so next to their results.
        normalization: ``(mean, std)`` per channel if :func:`normalize` was
            applied, else None (pixels in ``[0, 1]``).
    """

    name: str
    train: TensorImageDataset
    test: TensorImageDataset
    source: str
    is_standin: bool = False
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def __post_init__(self) -> None:
        check_instance("name", self.name, str)
        check_instance("train", self.train, TensorImageDataset)
        check_instance("test", self.test, TensorImageDataset)
        check_instance("source", self.source, str)
        check_bool("is_standin", self.is_standin)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; ``classes[k]`` names label ``k``."""
        return self.train.classes

    @property
    def num_classes(self) -> int:
        """Number of classes (10 for every dataset here)."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train.data.shape[1:])

    def describe(self) -> str:
        """One line: name, split sizes, image shape and source."""
        c, h, w = self.image_shape
        return (
            f"{self.name}: {len(self.train):,} train / {len(self.test):,} test images, "
            f"{c}x{h}x{w}; source: {self.source}"
        )


# --------------------------------------------------------------------------- subsets


def balanced_indices(targets: torch.Tensor, n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` sorted indices into ``targets``, ``n // num_classes`` per class, drawn without replacement.

    The first ``n % num_classes`` labels get one more. The draw consumes ``generator`` class by
    class, in label order, so the same generator state gives the same indices.

    Raises:
        ValueError: if a class has fewer images than its quota.
    """
    per_class, extra = divmod(n, num_classes)
    chosen = []
    for label in range(num_classes):
        members = torch.nonzero(targets == label).flatten()
        quota = per_class + (label < extra)
        if quota > len(members):
            raise ValueError(
                f"a class-balanced subset of {n} needs {quota} images of class {label}, only {len(members)} exist"
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:quota]])
    return torch.sort(torch.cat(chosen)).values


def take_balanced(
    split: tuple[torch.Tensor, torch.Tensor], n: int | None, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(images, labels)`` of :func:`balanced_indices` of ``split``; ``n=None`` keeps it whole."""
    if n is None:
        return split
    index = balanced_indices(split[1], n, num_classes, generator)
    return split[0][index], split[1][index]


def subset(bundle: DataBundle, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> DataBundle:
    """A class-balanced, seeded subset of a bundle (the chapters' small budgets).

    Each split keeps ``n // num_classes`` images per class (the lowest
    ``n % num_classes`` labels get one more), drawn without replacement by a
    ``torch.Generator`` seeded with ``seed``, and kept in their original order.
    ``None`` keeps a split whole. Same arguments, same subset. The chapters'
    budgets (``sam_course.profiles``) are applied this way, or through the
    loaders' ``n_train``/``n_test``, which subset before converting to float.

    Raises:
        ValueError: if ``n_train``/``n_test`` is outside ``[1, len(split)]`` or
            a class has too few images.
    """
    seed = check_int("seed", seed, 0)
    n_train = check_optional_int("n_train", n_train, 1, len(bundle.train))
    n_test = check_optional_int("n_test", n_test, 1, len(bundle.test))
    generator = torch.Generator().manual_seed(seed)
    datasets = []
    for dataset, n in ((bundle.train, n_train), (bundle.test, n_test)):
        images, targets = take_balanced((dataset.data, dataset.targets), n, bundle.num_classes, generator)
        datasets.append(TensorImageDataset(images, targets, dataset.classes))
    return dataclasses.replace(bundle, train=datasets[0], test=datasets[1])


# --------------------------------------------------------------------------- normalization and loaders


def normalize(
    bundle: DataBundle, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> DataBundle:
    """Standardize each channel: ``(x - mean[c]) / std[c]``, for both splits.

    By default ``mean`` and ``std`` are the per-channel pixel statistics of the
    *training* split (population std), so no test information leaks in. The
    values used are stored in ``bundle.normalization``. Optional: the
    loaders return pixels in ``[0, 1]``, which the chapters' small nets train
    on directly.

    Raises:
        ValueError: if the bundle is already normalized, if ``mean``/``std``
            do not have one entry per channel, or if a std is not positive.
    """
    if bundle.normalization is not None:
        raise ValueError("bundle is already normalized (bundle.normalization is set)")
    channels = bundle.image_shape[0]
    train = bundle.train.data
    if mean is not None:
        mean = [check_real(f"mean[{i}]", m) for i, m in enumerate(check_items("mean", mean, object, "numbers"))]
    if std is not None:
        std = [check_real(f"std[{i}]", s) for i, s in enumerate(check_items("std", std, object, "numbers"))]
    mean = train.mean(dim=(0, 2, 3)).tolist() if mean is None else mean
    std = train.std(dim=(0, 2, 3), unbiased=False).tolist() if std is None else std
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} entries (one per channel), got {len(mean)} and {len(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be > 0 in every channel, got {std}")
    shift = torch.tensor(mean).view(1, -1, 1, 1)
    scale = torch.tensor(std).view(1, -1, 1, 1)
    train_set, test_set = (
        TensorImageDataset((d.data - shift) / scale, d.targets, d.classes) for d in (bundle.train, bundle.test)
    )
    return dataclasses.replace(bundle, train=train_set, test=test_set, normalization=(tuple(mean), tuple(std)))


def loaders(
    bundle: DataBundle, batch_size: int = 128, seed: int = 0, test_batch_size: int = 1000
) -> tuple[DataLoader, DataLoader]:
    """Shuffled train and ordered test DataLoaders; shuffling is seeded so runs repeat.

    No worker processes: the data is already in memory, and workers would only
    add start-up time on the 2-core machines the book is built on. Chapters
    that train (7, 8, 11-14) may use these or ``sam_course.train``'s own batching.
    """
    seed = check_int("seed", seed, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    test_batch_size = check_int("test_batch_size", test_batch_size, 1)
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(bundle.train, batch_size=batch_size, shuffle=True, generator=generator)
    test = DataLoader(bundle.test, batch_size=test_batch_size, shuffle=False)
    return train, test
