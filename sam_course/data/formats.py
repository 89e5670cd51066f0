"""The two on-disk formats the loaders read: IDX (MNIST, Fashion-MNIST) and CIFAR-10's pickled batches.

These parsers read torchvision's files directly, so no checksum of the full dataset is needed and
torchvision (2 s to import) is not loaded at all when the files are already on disk. Every reader
returns uint8 images and int64 labels per split, ``{"train": (images, labels), "test": (...)}``,
or ``None`` when a file of the layout is missing (:func:`missing_files` says which); a malformed
file raises ``ValueError`` naming the file. Nothing is converted on the way: pixels must be
stored as uint8 (0-255) and labels as integers in ``[0, 10)``, anything else is refused rather
than wrapped, truncated or rescaled. CIFAR-10's pickles are read by an unpickler that builds only
builtin containers and NumPy arrays (:class:`UnsafePickleError` for anything else), so a batch
file cannot run code. :mod:`sam_course.data.sources` decides which files to read.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from .._checks import check_instance

__all__ = [
    "IDX_STEMS",
    "CIFAR_DIR",
    "NUM_CLASSES",
    "LAYOUT_FILES",
    "UnsafePickleError",
    "missing_files",
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
#: The files of each layout :func:`missing_files` knows: IDX stems (plain or ``.gz``) and CIFAR-10 batches.
LAYOUT_FILES = {"idx": tuple(s for pair in IDX_STEMS.values() for s in pair), "cifar": _CIFAR_TRAIN + _CIFAR_TEST}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: Number of classes of every dataset these files hold (MNIST, Fashion-MNIST, CIFAR-10): labels lie in [0, 10).
NUM_CLASSES = 10


class UnsafePickleError(ValueError):
    """A CIFAR-10 batch file asks the unpickler for something a batch never holds (``os.system``, say)."""


def _numpy_global(module: str, name: str):
    import importlib

    # NumPy 2 moved numpy.core to numpy._core; old pickles name the first, new ones the second.
    for candidate in (module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(f"{module}.{name}")


# What a pickled dict of NumPy arrays, lists, str and bytes refers to, under every NumPy and protocol.
_SAFE_GLOBALS = {
    (m, n) for n, mods in {
        "_reconstruct": ("numpy.core.multiarray", "numpy._core.multiarray"),
        "_frombuffer": ("numpy.core.numeric", "numpy._core.numeric"),
        "scalar": ("numpy.core.multiarray", "numpy._core.multiarray"),
        "ndarray": ("numpy",), "dtype": ("numpy",),
    }.items() for m in mods
} | {("_codecs", "encode"), ("builtins", "bytearray")}


class _BatchUnpickler(pickle.Unpickler):
    """Builds builtin containers and NumPy arrays only: the content of a CIFAR-10 batch."""

    def __init__(self, file, path: Path) -> None:
        # latin1 is how torchvision reads the original Python 2 pickles;
        # keys then come back as str, or as bytes if written from Python 3.
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_GLOBALS:
            raise UnsafePickleError(
                f"{self.path} refers to {module}.{name}; a CIFAR-10 batch holds only NumPy arrays, lists, "
                "str and bytes, so the file is refused without being loaded (is it really a CIFAR-10 batch?)"
            )
        if module == "_codecs":
            import codecs

            return codecs.encode
        if module == "builtins":
            return bytearray
        return _numpy_global(module, name)


def _load_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, path).load()
    except UnsafePickleError:
        raise
    except OSError:
        raise
    # Anything a truncated or garbled pickle makes the unpickler raise (EOFError, UnpicklingError,
    # ValueError, TypeError, ...) means the same: the file is not a batch.
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"{path} is not a readable CIFAR-10 batch ({type(error).__name__}: {error})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict")
    return batch


def _check_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """``labels`` as int64 when they are integers in [0, NUM_CLASSES); else ValueError naming ``path``."""
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise ValueError(
            f"{path}: labels must be a 1-D sequence of integers in [0, {NUM_CLASSES}), got {labels.dtype} "
            f"of shape {labels.shape}" + (f" (first values {labels.ravel()[:3].tolist()})" if labels.size else "")
        )
    if labels.size and not (0 <= int(labels.min()) and int(labels.max()) < NUM_CLASSES):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise ValueError(f"{path}: labels must lie in [0, {NUM_CLASSES}), found label {bad}")
    return labels.astype(np.int64)


def _check_pixels(pixels: np.ndarray, path: Path) -> np.ndarray:
    """``pixels`` as uint8 when they are integers in [0, 255]; floats and other values are refused."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype.kind not in "iu":
        raise ValueError(f"{path}: pixels must be uint8 (0-255), got {pixels.dtype}; refusing to convert them")
    if pixels.size and not (0 <= int(pixels.min()) and int(pixels.max()) <= 255):
        bad = int(pixels.min()) if pixels.min() < 0 else int(pixels.max())
        raise ValueError(f"{path}: pixels must lie in [0, 255] (uint8), found {bad} in {pixels.dtype} data")
    return pixels.astype(np.uint8)


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzipped or not.

    The header is two zero bytes, a type code (0x08 = uint8), the number of
    dimensions, and one big-endian uint32 per dimension; the values follow in
    row-major order. Gzip is detected from the file's magic bytes, not its name.

    Returns:
        A tensor with the file's shape, e.g. uint8 ``(N, 28, 28)`` for images
        and uint8 ``(N,)`` for labels.

    Raises:
        ValueError: if the file is not a well-formed IDX file (a truncated gzip included); the
            message names the file.
    """
    path = Path(check_instance("path", path, (str, os.PathLike), "str or os.PathLike"))
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise ValueError(f"{path} is not a readable gzip file ({type(error).__name__}: {error})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: header {raw[:4]!r}")
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise ValueError(f"{path} is truncated: header announces {ndim} dimensions")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge header cannot overflow
    if len(raw) - offset != expected:
        raise ValueError(f"{path} holds {len(raw) - offset} data bytes, its header {shape} needs {expected}")
    array = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def missing_files(directory: Path, layout: str) -> list[str]:
    """The files of ``layout`` (``"idx"``: :data:`IDX_STEMS`, plain or ``.gz``; ``"cifar"``: the six
    batches) that ``directory`` lacks, by name; all of them when ``directory`` is not a folder."""
    if layout == "idx":
        return [stem for stem in LAYOUT_FILES["idx"] if _find_file(directory, stem) is None]
    if layout == "cifar":
        return [name for name in LAYOUT_FILES["cifar"] if not (directory / name).is_file()]
    raise ValueError(f"layout must be one of 'idx', 'cifar', got {layout!r}")


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx_splits(directory: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """The four IDX files of ``directory`` (:data:`IDX_STEMS`, plain or ``.gz``) as splits.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}`` with uint8 images
        ``(N, 1, H, W)`` (28x28 for MNIST) and int64 labels ``(N,)``, or None if a file is missing.

    Raises:
        ValueError: naming the file, if a file is malformed, its images are not uint8, its labels
            are not integers in ``[0, 10)``, images and labels do not pair up, or the train and
            test images differ in size.
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
        if images.dtype != torch.uint8:
            raise ValueError(f"{image_path}: pixels must be uint8 (IDX type 0x08), got {images.dtype}; "
                             "refusing to convert them")
        labels = torch.from_numpy(_check_labels(labels.numpy(), label_path))
        splits[split] = (images.unsqueeze(1), labels)
    (train_path, _), (test_path, _) = paths["train"], paths["test"]
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise ValueError(
            f"train images {train_path} are {tuple(splits['train'][0].shape[2:])} but test images {test_path} "
            f"are {tuple(splits['test'][0].shape[2:])}: both splits must hold images of one size"
        )
    return splits


def read_cifar_batches(directory: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """torchvision's ``cifar-10-batches-py`` pickles in ``directory`` as splits.

    Reads ``data_batch_1`` ... ``data_batch_5`` (train) and ``test_batch`` (test).

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}`` with uint8 images
        ``(N, 3, 32, 32)`` (RGB) and int64 labels ``(N,)``, or None if a batch file is missing.

    Raises:
        UnsafePickleError: if a batch refers to anything but NumPy arrays and builtin containers
            (it is not loaded, nothing in it runs).
        ValueError: naming the file, if a batch cannot be unpickled (truncated, garbage), lacks
            its entries, has the wrong shape, pixels that are not uint8 or labels that are not
            integers in ``[0, 10)``.
    """
    names = {"train": _CIFAR_TRAIN, "test": _CIFAR_TEST}
    if not all((directory / n).is_file() for group in names.values() for n in group):
        return None
    splits = {}
    for split, group in names.items():
        images, labels = [], []
        for name in group:
            path = directory / name
            batch = _load_batch(path)
            data = batch.get(b"data", batch.get("data"))
            batch_labels = batch.get(b"labels", batch.get("labels"))
            if data is None or batch_labels is None:
                raise ValueError(f"{path} has no 'data'/'labels' entries (keys: {list(batch)})")
            try:
                data, batch_labels = np.asarray(data), np.asarray(batch_labels)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}: data and labels must be arrays ({error})") from None
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch_labels):
                raise ValueError(f"{path}: data must be (N, 3072) with N labels, got {data.shape} "
                                 f"and {len(batch_labels)} labels")
            data, batch_labels = _check_pixels(data, path), _check_labels(batch_labels, path)
            # Rows are 1024 red, then 1024 green, then 1024 blue values, each row-major.
            images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
            labels.append(torch.from_numpy(batch_labels))
        splits[split] = (torch.cat(images), torch.cat(labels))
    return splits
