"""The two on-disk formats the loaders read: IDX (MNIST, Fashion-MNIST) and CIFAR-10's pickled batches.

These parsers read torchvision's files directly, so no checksum of the full dataset is needed and
torchvision (2 s to import) is not loaded at all when the files are already on disk. Every reader
returns uint8 images and int64 labels per split, ``{"train": (images, labels), "test": (...)}``,
or ``None`` when a file of the layout is missing; a malformed file raises ``ValueError``.
:mod:`sam_course.data.sources` decides which files to read.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "IDX_STEMS",
    "CIFAR_DIR",
    "read_idx",
    "read_idx_splits",
    "read_cifar_batches",
]

#: The four IDX file names (without ``.gz``) of torchvision's MNIST-style ``raw`` folders, per split.
IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: The folder, under the data root, that torchvision extracts CIFAR-10's python archive into.
CIFAR_DIR = "cifar-10-batches-py"

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def read_idx_splits(directory: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """The four IDX files of ``directory`` (:data:`IDX_STEMS`, plain or ``.gz``) as splits.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}`` with uint8 images
        ``(N, 1, 28, 28)`` and int64 labels ``(N,)``, or None if a file is missing.

    Raises:
        ValueError: if a file is malformed or images and labels do not pair up.
    """
    paths = {split: [_find_file(directory, stem) for stem in stems] for split, stems in IDX_STEMS.items()}
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


def read_cifar_batches(directory: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """torchvision's ``cifar-10-batches-py`` pickles in ``directory`` as splits.

    Reads ``data_batch_1`` ... ``data_batch_5`` (train) and ``test_batch`` (test).

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}`` with uint8 images
        ``(N, 3, 32, 32)`` (RGB) and int64 labels ``(N,)``, or None if a batch file is missing.

    Raises:
        ValueError: if a batch lacks its entries or has the wrong shape.
    """
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
