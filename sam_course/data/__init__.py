"""MNIST, Fashion-MNIST and CIFAR-10 as in-memory tensors, with offline fallbacks.

Every loader returns a :class:`~sam_course.data.datasets.DataBundle`: a train and a test
:class:`~sam_course.data.datasets.TensorImageDataset` (images as float32 ``(N, C, H, W)`` in
``[0, 1]``, labels as int64 ``(N,)``), plus where the data came from. The chapters that train
(1, 7, 8, 9, 11-14) show ``bundle.source`` next to their results.

* :mod:`~sam_course.data.sources`: the loaders :func:`load_mnist`, :func:`load_fashion_mnist`,
  :func:`load_cifar10`, the order of their sources (files on disk, a download, packaged data, the
  labelled CIFAR-10 stand-in) and :class:`DatasetUnavailable`;
* :mod:`~sam_course.data.formats`: the IDX and CIFAR-10 file readers (:func:`read_idx`);
* :mod:`~sam_course.data.datasets`: :class:`TensorImageDataset`, :class:`DataBundle`,
  :func:`subset`, :func:`normalize`, :func:`loaders` and the class names.

This package only re-exports those names, so ``from sam_course.data import load_mnist`` and
``sam_course.data.subset`` work. To redirect the loaders in a test (another Debian folder, a fake
download), patch the module that reads the name, :mod:`sam_course.data.sources`.
"""

from .datasets import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    DataBundle,
    TensorImageDataset,
    loaders,
    normalize,
    subset,
)
from .formats import UnsafePickleError, read_idx
from .sources import (
    DEBIAN_FASHION_MNIST_DIR,
    DatasetUnavailable,
    DataSourceWarning,
    data_root,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
)

__all__ = [
    "DatasetUnavailable",
    "DataSourceWarning",
    "UnsafePickleError",
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
