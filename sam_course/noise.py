"""Label noise at an exact, seeded rate.

Chapters 7, 8 and 11 train on corrupted labels. The paper's label-noise
experiments (Foret et al. 2021, Table 4) use *symmetric* noise: a fixed fraction
of the training labels is replaced by a wrong class drawn uniformly. The
*class-map* (asymmetric) variant flips each class to one confusable class, as
in the CIFAR-10 protocol of Patrini et al. (2017) where truck -> automobile,
bird -> airplane, cat <-> dog and deer -> horse.

Both corruptions change *exactly* ``round(rate * n)`` labels rather than
flipping each label with probability ``rate``: the realised rate then matches
the requested one, so a chapter that says "80 % noise" trains on 80 % noise.
``round`` is Python's built-in (halves round to the even integer).

Everything here is deterministic given ``seed``: the randomness comes from a
private :class:`torch.Generator`, never from the global RNG, so corrupting
labels does not disturb the seeds of the training run that follows.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import Dataset, Subset

from ._checks import check_int, check_real, is_int
from ._params import seeded_generator

__all__ = [
    "CIFAR10_CLASS_MAP",
    "symmetric_noise",
    "class_map_noise",
    "transition_matrix",
    "NoisyLabels",
]

#: The asymmetric CIFAR-10 corruption: clean class -> noisy class.
#: Class indices are torchvision's CIFAR-10 order: 0 airplane, 1 automobile,
#: 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
CIFAR10_CLASS_MAP: Mapping[int, int] = {
    9: 1,  # truck -> automobile
    2: 0,  # bird -> airplane
    3: 5,  # cat -> dog
    5: 3,  # dog -> cat
    4: 7,  # deer -> horse
}


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------

# Seeds are ints in [0, 2**63): the range of a non-negative int64.
_SEED_HIGH = 2**63 - 1
# Rates lie in [0, 1): with rate 1 every label is replaced, nothing is left to learn from and
# the "fraction of correct labels" the chapters plot is identically zero.
_RATE_RANGE = dict(low=0.0, high=1.0, high_open=True)


def _as_labels(labels, name: str, num_classes: int | None = None) -> torch.Tensor:
    """Return ``labels`` as a fresh 1-D int64 tensor, validated.

    Accepts a tensor, a numpy array or a sequence of ints. ``name`` is the
    argument name used in error messages. With ``num_classes`` the labels must
    lie in ``[0, num_classes)``; without it they must be non-negative.
    """
    try:
        tensor = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a 1-D sequence of integer labels ({err})") from None
    if tensor.dim() != 1:
        raise ValueError(
            f"{name} must be 1-D (one label per example), got shape {tuple(tensor.shape)}"
        )
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        # An empty list becomes a float tensor; that is fine, it holds no labels.
        if tensor.numel() > 0:
            raise ValueError(f"{name} must hold integer labels, got dtype {tensor.dtype}")
    tensor = tensor.to(dtype=torch.long, device="cpu").clone()
    if tensor.numel() > 0:
        low, high = int(tensor.min()), int(tensor.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            allowed = f"[0, {num_classes})" if num_classes is not None else "[0, inf)"
            bad = low if low < 0 else high
            raise ValueError(f"{name} must lie in {allowed}, found label {bad}")
    return tensor


def _count(rate: float, n: int) -> int:
    return int(round(rate * n))


# --------------------------------------------------------------------------
# corruptions
# --------------------------------------------------------------------------

def symmetric_noise(targets, num_classes: int, rate: float, seed: int) -> torch.Tensor:
    """Replace exactly ``round(rate * n)`` labels by a different, uniformly drawn class.

    The corrupted positions are drawn uniformly without replacement; each
    corrupted label moves to one of the other ``num_classes - 1`` classes with
    equal probability, so a corrupted label is never accidentally correct.
    (Some papers redraw from all classes, which makes the realised rate about
    ``rate * (C - 1) / C``; here the rate is exact.) Used by chapters 7, 8, 11.

    Args:
        targets: 1-D tensor, numpy array or sequence of ``n`` integer labels in
            ``[0, num_classes)``. Not modified.
        num_classes: number of classes ``C >= 2``.
        rate: fraction of labels to corrupt, in ``[0, 1)``.
        seed: seed of the private generator, an integer in ``[0, 2**63)``.

    Returns:
        A new int64 tensor of shape ``(n,)`` with the noisy labels.

    Raises:
        ValueError: on a rate outside ``[0, 1)``, ``num_classes < 2``, labels
            outside ``[0, num_classes)``, non-1-D targets or a bad seed.
    """
    num_classes = check_int("num_classes", num_classes, 2)
    rate = check_real("rate", rate, **_RATE_RANGE)
    seed = check_int("seed", seed, 0, _SEED_HIGH)
    clean = _as_labels(targets, "targets", num_classes)

    generator = seeded_generator(seed)
    n = clean.numel()
    chosen = torch.randperm(n, generator=generator)[: _count(rate, n)]
    # An offset uniform on {1, ..., C-1}, added modulo C, lands uniformly on
    # the C-1 classes that differ from the clean one.
    offset = torch.randint(1, num_classes, (chosen.numel(),), generator=generator)
    noisy = clean.clone()
    noisy[chosen] = (clean[chosen] + offset) % num_classes
    return noisy


def _check_class_map(class_map, num_classes: int) -> dict[int, int]:
    if not isinstance(class_map, Mapping):
        raise ValueError(
            "class_map must be a mapping clean class -> noisy class, "
            f"got {type(class_map).__name__}"
        )
    checked = {}
    for source, target in class_map.items():
        if not (is_int(source) and is_int(target)):
            raise ValueError(
                f"class_map must map integer classes to integer classes, got {source!r}: {target!r}"
            )
        for cls in (source, target):
            if not 0 <= cls < num_classes:
                raise ValueError(
                    f"class_map entries must lie in [0, {num_classes}), got {source}: {target}"
                )
        if source == target:
            raise ValueError(
                f"class_map must map each class to a different class, got {source}: {target}"
            )
        checked[int(source)] = int(target)
    return checked


def _infer_num_classes(clean: torch.Tensor, class_map) -> int:
    largest = int(clean.max()) if clean.numel() else 0
    if isinstance(class_map, Mapping):
        # Malformed entries are skipped here and reported by _check_class_map.
        for pair in class_map.items():
            largest = max([largest] + [int(c) for c in pair if is_int(c)])
    return max(largest + 1, 2)


def class_map_noise(
    targets, class_map: Mapping[int, int], rate: float, seed: int, num_classes: int | None = None
) -> torch.Tensor:
    """Asymmetric noise: flip exactly ``round(rate * n_c)`` examples of each mapped class ``c``.

    For every class ``c`` in ``class_map`` (in increasing order, so the draw is
    reproducible), ``round(rate * n_c)`` of its ``n_c`` examples are chosen
    uniformly without replacement and relabelled ``class_map[c]``. Classes not
    in the map keep their labels. Examples are chosen by their *clean* label, so
    a swap such as cat <-> dog flips two disjoint sets (no example is flipped
    twice). Used by chapters 8 and 11, with :data:`CIFAR10_CLASS_MAP`.

    Args:
        targets: 1-D tensor, numpy array or sequence of integer labels. Not modified.
        class_map: mapping clean class -> noisy class; each entry must map a
            class in ``[0, num_classes)`` to a *different* class in that range.
        rate: fraction of each mapped class to flip, in ``[0, 1)``.
        seed: seed of the private generator, an integer in ``[0, 2**63)``.
        num_classes: number of classes ``C >= 2``. If ``None``, it is taken as
            one more than the largest label appearing in ``targets`` or in
            ``class_map``.

    Returns:
        A new int64 tensor of shape ``(n,)`` with the noisy labels.

    Raises:
        ValueError: on a bad rate, seed, ``num_classes``, labels out of range,
            non-1-D targets, or a class-map entry mapping a class to itself or
            out of ``[0, num_classes)``.
    """
    rate = check_real("rate", rate, **_RATE_RANGE)
    seed = check_int("seed", seed, 0, _SEED_HIGH)
    if num_classes is None:
        clean = _as_labels(targets, "targets")
        num_classes = _infer_num_classes(clean, class_map)
    else:
        num_classes = check_int("num_classes", num_classes, 2)
        clean = _as_labels(targets, "targets", num_classes)
    mapping = _check_class_map(class_map, num_classes)

    generator = seeded_generator(seed)
    noisy = clean.clone()
    for source in sorted(mapping):
        members = torch.nonzero(clean == source).flatten()
        order = torch.randperm(members.numel(), generator=generator)
        noisy[members[order[: _count(rate, members.numel())]]] = mapping[source]
    return noisy


def transition_matrix(clean, noisy, num_classes: int) -> torch.Tensor:
    """Empirical noise transition matrix ``T[i, j] = P(noisy = j | clean = i)``.

    ``T[i, j]`` is the fraction of examples whose clean label is ``i`` that
    carry noisy label ``j``. Each row of a class that occurs in ``clean`` sums
    to 1; the row of a class that does not occur is all zeros (there is
    nothing to estimate it from, and zeros make that visible in a heat map
    rather than inventing a distribution). Used by chapters 7 and 11.

    Args:
        clean: 1-D integer labels in ``[0, num_classes)``, shape ``(n,)``.
        noisy: 1-D integer labels in ``[0, num_classes)``, shape ``(n,)``.
        num_classes: number of classes ``C >= 2``.

    Returns:
        A float64 tensor of shape ``(C, C)``.

    Raises:
        ValueError: on ``num_classes < 2``, labels out of range, non-1-D inputs
            or inputs of different lengths.
    """
    num_classes = check_int("num_classes", num_classes, 2)
    clean = _as_labels(clean, "clean", num_classes)
    noisy = _as_labels(noisy, "noisy", num_classes)
    if clean.numel() != noisy.numel():
        raise ValueError(
            f"clean and noisy must have the same length, got {clean.numel()} and {noisy.numel()}"
        )
    counts = torch.bincount(clean * num_classes + noisy, minlength=num_classes**2)
    counts = counts.reshape(num_classes, num_classes).to(torch.float64)
    totals = counts.sum(dim=1, keepdim=True)
    # clamp only guards 0 / 0 for absent classes; their rows stay exactly zero.
    return counts / totals.clamp_min(1.0)


# --------------------------------------------------------------------------
# dataset wrapper
# --------------------------------------------------------------------------

def _read_targets(dataset) -> torch.Tensor:
    """The clean labels of ``dataset``, from ``.targets`` when it has one.

    torchvision's datasets keep their labels in ``.targets`` (a tensor for
    MNIST, a list for CIFAR-10), which is read without loading a single image.
    A :class:`~torch.utils.data.Subset` of such a dataset is resolved through
    its indices. Anything else is indexed once, ``dataset[i][1]`` for every
    ``i``, which loads every example: slow for image folders, but done once.
    """
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return _as_labels(targets, "dataset.targets")
    if isinstance(dataset, Subset):
        parent = _read_targets(dataset.dataset)
        return parent[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    # .item(), not int(): a float label 2.7 must reach _as_labels as a float and be refused.
    labels = [torch.as_tensor(dataset[i][1]).item() for i in range(len(dataset))]
    return _as_labels(labels, "dataset labels")


def _class_count(dataset) -> int | None:
    """``len(dataset.classes)`` (torchvision datasets, TensorImageDataset, and subsets of them), else None."""
    while isinstance(dataset, Subset) and getattr(dataset, "classes", None) is None:
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return None if classes is None else len(classes)


class NoisyLabels(Dataset):
    """A dataset whose labels are replaced by noisy ones; images are untouched.

    ``NoisyLabels(dataset, noisy_targets)[i]`` is ``(x, noisy_targets[i])``
    where ``x`` is the input of ``dataset[i]``. The clean labels are kept, so a
    training loop can report accuracy on the clean labels of the training set
    (chapters 7, 8, 11: how much noise a model memorizes); evaluating on the
    wrapped ``dataset`` itself gives the clean view.

    Build one with :meth:`symmetric` or :meth:`class_map`, or pass labels made
    any other way. Clean labels are read from ``dataset.targets`` when present
    (torchvision datasets, and subsets of them), otherwise by indexing the
    dataset once; a float label is refused, never truncated. Noisy labels must
    lie in ``[0, num_classes)``: ``num_classes`` given, else the number of
    ``dataset.classes``, else the classes the clean labels show (``max + 1``).

    Attributes:
        dataset: the wrapped dataset.
        clean_targets: int64 tensor ``(n,)`` of the original labels.
        targets: int64 tensor ``(n,)`` of the noisy labels returned by indexing.
        noise_mask: bool tensor ``(n,)``, True where the label was corrupted.
        rate: realised fraction of corrupted labels (float; 0.0 for an empty dataset).
    """

    def __init__(self, dataset, noisy_targets, num_classes: int | None = None):
        clean = _read_targets(dataset)
        if num_classes is not None:
            num_classes = check_int("num_classes", num_classes, 2)
        else:
            num_classes = _class_count(dataset)
        if num_classes is None and clean.numel():
            # Without class names, the classes are those the clean labels show: 0 ... max.
            high = int(clean.max()) + 1
            noisy = _as_labels(noisy_targets, "noisy_targets")
            if noisy.numel() and int(noisy.max()) >= high:
                raise ValueError(
                    f"noisy_targets must lie in [0, {high}) (the classes of the clean labels), found label "
                    f"{int(noisy.max())}; pass num_classes if the dataset has more classes than its labels show"
                )
        else:
            noisy = _as_labels(noisy_targets, "noisy_targets", num_classes)
        if num_classes is not None and clean.numel() and int(clean.max()) >= num_classes:
            raise ValueError(f"dataset labels must lie in [0, {num_classes}), found label {int(clean.max())}")
        if noisy.numel() != clean.numel():
            raise ValueError(
                f"noisy_targets must have one label per example: len(dataset) is "
                f"{clean.numel()}, got {noisy.numel()} labels"
            )
        self.dataset = dataset
        self.clean_targets = clean
        self.targets = noisy
        self.noise_mask = clean != noisy
        self.rate = float(self.noise_mask.float().mean()) if clean.numel() else 0.0

    @classmethod
    def symmetric(cls, dataset, rate: float, seed: int, num_classes: int) -> "NoisyLabels":
        """Wrap ``dataset`` with :func:`symmetric_noise` labels (exact ``rate``, seeded)."""
        clean = _read_targets(dataset)
        return cls(dataset, symmetric_noise(clean, num_classes, rate, seed), num_classes)

    @classmethod
    def class_map(
        cls,
        dataset,
        class_map: Mapping[int, int],
        rate: float,
        seed: int,
        num_classes: int | None = None,
    ) -> "NoisyLabels":
        """Wrap ``dataset`` with :func:`class_map_noise` labels (exact rate per class, seeded)."""
        clean = _read_targets(dataset)
        noisy = class_map_noise(clean, class_map, rate, seed, num_classes)
        return cls(dataset, noisy, num_classes if num_classes is not None else _infer_num_classes(clean, class_map))

    def __len__(self) -> int:
        return self.targets.numel()

    def __getitem__(self, index: int):
        x = self.dataset[index][0]
        # A Python int, like torchvision's datasets, so default collation is unchanged.
        return x, int(self.targets[index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, rate={self.rate:.4f}, "
            f"dataset={type(self.dataset).__name__})"
        )
