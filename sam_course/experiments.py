"""The canonical runs of the practical chapters 7, 8 and 9, as functions of the profile.

Chapter 9 draws the loss landscapes of the very networks that chapters 7 and 8 trained. It finds
them in the run cache of :mod:`sam_course.train` only if it asks for exactly the same
:class:`~sam_course.train.RunConfig` (the cache key covers every field), so the configurations
live here, in one place, instead of being typed twice::

    from sam_course import experiments, train

    adam = train.run(experiments.cifar_cnn())                    # chapter 8's baseline
    sam = train.run(experiments.cifar_cnn(sam_rho=experiments.SAM_RHO))
    # chapter 9, later: the same two calls load both runs from the cache.

Every function reads the profile (``SAM_COURSE_PROFILE``, :mod:`sam_course.profiles`) when it is
called: ``ci`` gives tiny runs that only check that a chapter executes, ``book`` the runs of the
rendered book, ``paper`` longer ones (whole datasets, more epochs) for a GPU. Nothing is trained
or loaded at import time.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .profiles import pick
from .train import RunConfig, build_data

__all__ = [
    "MNIST_NOISE_RATE",
    "CIFAR_NOISE_RATE",
    "SAM_RHO",
    "BASE_OPTIMIZERS",
    "seeds",
    "mnist_mlp",
    "cifar_cnn",
    "cifar_resnet",
    "landscape_pairs",
    "landscape_sample",
]

#: Fraction of the MNIST training labels replaced by a uniformly drawn wrong class (chapter 7).
MNIST_NOISE_RATE = 0.8
#: The same fraction for CIFAR-10 or its offline stand-in (chapter 8).
CIFAR_NOISE_RATE = 0.5
#: SAM's radius in the main comparisons of chapters 7-9 (the paper's usual value on CIFAR).
SAM_RHO = 0.05

#: Keyword arguments of the base optimizers the chapters compare, by name. Adam runs at PyTorch's
#: default learning rate (the set-up of the course's seed), SGD with heavy-ball momentum.
BASE_OPTIMIZERS: Mapping[str, Mapping[str, float]] = {
    "adam": {"lr": 1e-3},
    "sgd": {"lr": 0.05, "momentum": 0.9},
}


def _check_optimizer(optimizer) -> str:
    if optimizer not in BASE_OPTIMIZERS:
        allowed = ", ".join(map(repr, BASE_OPTIMIZERS))
        raise ValueError(f"optimizer must be one of {allowed}, got {optimizer!r}")
    return optimizer


def seeds() -> tuple[int, ...]:
    """Seeds of the main comparisons: one under ``ci``, three under ``book``, five under ``paper``."""
    return pick(ci=(0,), book=(0, 1, 2), paper=(0, 1, 2, 3, 4))


def mnist_mlp(optimizer: str = "adam", sam_rho: float | None = None, seed: int = 0) -> RunConfig:
    """Chapter 7's run: the 784-512-512-10 MLP on MNIST with 80 % symmetric label noise.

    10 % of the training images are held out with their clean labels (the validation split that
    picks the best epoch); the rest get :data:`MNIST_NOISE_RATE` symmetric noise. Offline, MNIST is
    the 5,000-digit sample of :func:`sam_course.data.load_mnist` (4,000 train / 1,000 test).

    Args:
        optimizer: ``"adam"`` or ``"sgd"`` (hyper-parameters from :data:`BASE_OPTIMIZERS`).
        sam_rho: SAM's radius around that optimizer; None trains with the optimizer alone.
        seed: the run's seed (initialization, which labels are corrupted, data order).

    Returns:
        A :class:`~sam_course.train.RunConfig`; change any field with ``.replace(...)``.
    """
    kwargs = BASE_OPTIMIZERS[_check_optimizer(optimizer)]
    return RunConfig(
        dataset="mnist",
        n_train=pick(ci=1000, book=None, paper=None),
        n_test=pick(ci=500, book=None, paper=None),
        val_fraction=0.1,
        model="mlp",
        optimizer=optimizer,
        sam_rho=sam_rho,
        noise_rate=MNIST_NOISE_RATE,
        epochs=pick(ci=2, book=30, paper=100),
        batch_size=128,
        seed=seed,
        **kwargs,
    )


def cifar_cnn(optimizer: str = "adam", sam_rho: float | None = None, seed: int = 0) -> RunConfig:
    """Chapter 8's run: :class:`~sam_course.models.SmallCNN` on CIFAR-10 with 50 % symmetric noise.

    A class-balanced subset of the training images (under ``book``: 2,000, of which 1,800 are
    trained on; 1,000 test images) minus a clean 10 % validation split, :data:`CIFAR_NOISE_RATE`
    symmetric noise on the rest; width 16 and batch 32 under ``book`` (about 70 CPU-seconds per
    Adam run on one core, SAM about 1.5 times that, evaluation included). Offline, "CIFAR-10" is
    the labelled stand-in of :func:`sam_course.data.load_cifar10` (Fashion-MNIST padded to
    3x32x32): a chapter using this run must show ``RunResult.source``.

    Args and returns as in :func:`mnist_mlp`.
    """
    kwargs = BASE_OPTIMIZERS[_check_optimizer(optimizer)]
    return RunConfig(
        dataset="cifar10",
        n_train=pick(ci=400, book=2000, paper=None),
        n_test=pick(ci=200, book=1000, paper=None),
        val_fraction=0.1,
        model="cnn",
        model_kwargs={"width": pick(ci=8, book=16, paper=32)},
        optimizer=optimizer,
        sam_rho=sam_rho,
        noise_rate=CIFAR_NOISE_RATE,
        epochs=pick(ci=2, book=30, paper=100),
        # Small batches: four times the steps per epoch of batch 128 at a similar cost per epoch
        # on a CPU, so that the book's 30 epochs reach the phase where the wrong labels are
        # memorized (with batch 128 the network is still learning the clean signal at epoch 25).
        batch_size=32,
        seed=seed,
        **kwargs,
    )


def cifar_resnet(optimizer: str = "adam", sam_rho: float | None = None, seed: int = 0) -> RunConfig:
    """Chapter 8's second network: :class:`~sam_course.models.SmallResNet` (ResNet-8, BatchNorm).

    The data, noise and optimizer of :func:`cifar_cnn`; only the model differs (and, under
    ``book``, fewer epochs, since a ResNet-8 step costs several SmallCNN steps on a CPU).

    Args and returns as in :func:`mnist_mlp`.
    """
    cnn = cifar_cnn(optimizer, sam_rho, seed)
    return cnn.replace(
        model="resnet",
        model_kwargs={"depth": 8, "width": pick(ci=4, book=8, paper=16)},
        epochs=pick(ci=2, book=cnn.epochs, paper=cnn.epochs),
    )


def landscape_pairs() -> dict[str, tuple[RunConfig, RunConfig]]:
    """Chapter 9's subjects: for each network of chapters 7 and 8, its (Adam, SAM-Adam) runs, seed 0.

    Returns:
        ``{"MNIST MLP": (adam, sam_adam), "CIFAR-10 CNN": (adam, sam_adam)}``; SAM at :data:`SAM_RHO`.
    """
    return {
        "MNIST MLP": (mnist_mlp(), mnist_mlp(sam_rho=SAM_RHO)),
        "CIFAR-10 CNN": (cifar_cnn(), cifar_cnn(sam_rho=SAM_RHO)),
    }


def landscape_sample(cfg: RunConfig, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed sample of ``n`` training images of run ``cfg`` with the labels it was trained on.

    Chapter 9 measures losses, sharpness and Hessian eigenvalues of a trained network on the
    objective it minimized: the training loss with the NOISY labels. A full pass over the training
    set is too slow for a 2-D grid on a CPU, so every measurement uses the same ``n`` examples,
    drawn without replacement by a generator seeded with ``seed``, independent of the run's own
    seed. Two runs that differ only in the optimizer (the pairs of :func:`landscape_pairs`) share
    the images and the corrupted labels, so they are measured on the very same sample.

    Args:
        cfg: the run (its data are rebuilt with :func:`~sam_course.train.build_data`, quietly).
        n: number of examples, ``1 <= n <=`` the size of the training set.
        seed: seed of the draw.

    Returns:
        ``(inputs, targets)``: float ``(n, C, H, W)`` images and int64 ``(n,)`` labels.
    """
    if not isinstance(cfg, RunConfig):
        raise ValueError(f"cfg must be a RunConfig, got {type(cfg).__name__}")
    train_set = build_data(cfg, verbose=False).train
    images = train_set.dataset.data if hasattr(train_set, "clean_targets") else train_set.data
    size = len(train_set)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= size:
        raise ValueError(f"n must be an int in [1, {size}] (the training set's size), got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    index = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]
    return images[index], train_set.targets[index]
