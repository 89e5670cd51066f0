"""The canonical runs of the practical chapters (7-9 and 11-14), as functions of the profile.

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

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor

from ._checks import check_choice, check_int, check_real
from .profiles import pick
from .train import RunConfig, RunResult, build_data

__all__ = [
    "MNIST_NOISE_RATE",
    "SEED_RESULT",
    "reproduces_seed_gap",
    "CIFAR_NOISE_RATE",
    "SAM_RHO",
    "BASE_HYPERPARAMETERS",
    "seeds",
    "mnist_mlp",
    "cifar_cnn",
    "cifar_resnet",
    "landscape_pairs",
    "landscape_sample",
    "LABEL_NOISE_RATES",
    "MEMORIZATION_THRESHOLD",
    "label_noise_rhos",
    "label_noise_seeds",
    "label_noise_run",
    "pick_rho_on_validation",
    "memorization_onset",
    "MSHARPNESS_BATCH",
    "VARIANTS_NOISE_RATE",
    "msharpness_run",
    "hessian_run",
    "variants_run",
]

#: Fraction of the MNIST training labels replaced by a uniformly drawn wrong class (chapter 7).
MNIST_NOISE_RATE = 0.8
#: The same fraction for CIFAR-10 or its offline stand-in (chapter 8).
CIFAR_NOISE_RATE = 0.5
#: SAM's radius in the main comparisons of chapters 7-9 (the paper's usual value on CIFAR).
SAM_RHO = 0.05
#: The seminar's own result on MNIST with 80 % label noise (chapter 7): test accuracy with Adam and
#: with Adam inside SAM (its radius unreported).
SEED_RESULT = {"Adam": 0.88, "SAM-Adam": 0.46}


def reproduces_seed_gap(*gaps: float) -> bool:
    """Whether a measured SAM-Adam minus Adam accuracy difference reproduces the seed's collapse.

    The seed's difference is 0.46 - 0.88 = -0.42 (:data:`SEED_RESULT`); a difference counts as
    reproducing it when it is a drop of at least half that size, -0.21 or lower. Chapters 7 and 15
    pass the differences at both readings (best epoch, last epoch): any one of them may reproduce it.
    """
    if not gaps:
        raise ValueError("gaps must hold at least one accuracy difference, got none")
    values = [check_real(f"gaps[{i}]", g, -1.0, 1.0) for i, g in enumerate(gaps)]
    seed_gap = SEED_RESULT["SAM-Adam"] - SEED_RESULT["Adam"]
    return min(values) <= seed_gap / 2

#: The hyper-parameters (``RunConfig`` keyword arguments) of the base optimizers the chapters
#: compare, by :data:`sam_course.base_optimizers.BASE_OPTIMIZERS` key. Adam runs at PyTorch's
#: default learning rate (the set-up of the course's seed), SGD with heavy-ball momentum.
BASE_HYPERPARAMETERS: Mapping[str, Mapping[str, float]] = {
    "adam": {"lr": 1e-3},
    "sgd": {"lr": 0.05, "momentum": 0.9},
}


def seeds() -> tuple[int, ...]:
    """Seeds of the main comparisons: one under ``ci``, three under ``book``, five under ``paper``."""
    return pick(ci=(0,), book=(0, 1, 2), paper=(0, 1, 2, 3, 4))


def mnist_mlp(optimizer: str = "adam", sam_rho: float | None = None, seed: int = 0) -> RunConfig:
    """Chapter 7's run: the 784-512-512-10 MLP on MNIST with 80 % symmetric label noise.

    10 % of the training images are held out with their clean labels (the validation split that
    picks the best epoch); the rest get :data:`MNIST_NOISE_RATE` symmetric noise. Offline, MNIST is
    the 5,000-digit sample of :func:`sam_course.data.load_mnist` (4,000 train / 1,000 test).

    Args:
        optimizer: ``"adam"`` or ``"sgd"`` (hyper-parameters from :data:`BASE_HYPERPARAMETERS`).
        sam_rho: SAM's radius around that optimizer; None trains with the optimizer alone.
        seed: the run's seed (initialization, which labels are corrupted, data order).

    Returns:
        A :class:`~sam_course.train.RunConfig`; change any field with ``.replace(...)``.
    """
    kwargs = BASE_HYPERPARAMETERS[check_choice("optimizer", optimizer, BASE_HYPERPARAMETERS)]
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
    kwargs = BASE_HYPERPARAMETERS[check_choice("optimizer", optimizer, BASE_HYPERPARAMETERS)]
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
    n = check_int("n", n, 1, size)  # at most the training set's size
    seed = check_int("seed", seed, 0)
    index = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]
    return images[index], train_set.targets[index]


# =========================================================================== chapter 11
# Label noise at 20, 40, 60 and 80 %: SGD against SAM-SGD on Fashion-MNIST, with SAM's radius
# chosen per noise rate on the clean validation split (as the paper chose its hyper-parameters).
# Chapter 15 reloads the same cached runs by calling these functions with the same arguments.

#: The symmetric label-noise rates of chapter 11: the columns of Table 4 of the paper.
LABEL_NOISE_RATES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
#: Chapter 11's onset of memorization: the first epoch at which the network predicts the wrong
#: (noisy) label of at least this fraction of the relabelled training images. A network that
#: ignores the wrong labels predicts about 0 of them (or 1/9 by chance over the 9 wrong classes).
MEMORIZATION_THRESHOLD = 0.25


def label_noise_rhos() -> tuple[float, ...]:
    """Chapter 11's grid of SAM radii, from which the clean validation split picks one per rate.

    ``ci``: (0.05, 0.1); ``book``: (0.05, 0.1, 0.2), the paper's choices (0.1 at 20-60 %, 0.05
    at 80 %) and one above; ``paper``: the paper's whole grid {0.01, 0.02, 0.05, 0.1, 0.2, 0.5}.
    """
    return pick(ci=(0.05, 0.1), book=(0.05, 0.1, 0.2), paper=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5))


def label_noise_seeds() -> tuple[int, ...]:
    """Chapter 11's seeds: one under ``ci``, two under ``book`` (the chapter trains 32 networks,
    and the budget of 8 minutes on 2 CPU cores does not fit a third seed), five under ``paper``."""
    return pick(ci=(0,), book=(0, 1), paper=(0, 1, 2, 3, 4))


def label_noise_run(rate: float, sam_rho: float | None = None, seed: int = 0) -> RunConfig:
    """Chapter 11's run: SGD (or SAM-SGD) on Fashion-MNIST with ``rate`` symmetric label noise.

    A class-balanced subset of Fashion-MNIST's training images (``book``: 2,000; ``ci``: 300;
    ``paper``: all 60,000), of which 10 % are held out with their clean labels as the validation
    split, ``rate`` symmetric noise on the rest; 2,000 test images (``paper``: all 10,000). The
    784-256-256-10 MLP, SGD with learning rate 0.05 and momentum 0.9, cosine schedule, batch 32,
    30 epochs under ``book`` (about 5 CPU-seconds for an SGD run on one core, twice that for
    SAM-SGD, evaluation included). The decaying learning rate is what lets SGD memorize the wrong
    labels within 30 epochs on this small set.

    Args:
        rate: fraction of the training labels replaced by a uniformly drawn wrong class, in
            [0, 1) (the chapter uses :data:`LABEL_NOISE_RATES`).
        sam_rho: SAM's radius around SGD; None trains with SGD alone.
        seed: the run's seed (initialization, which labels are corrupted, data order).

    Returns:
        A :class:`~sam_course.train.RunConfig` (``RunConfig`` rejects a bad ``rate`` or
        ``sam_rho`` with a ``ValueError`` naming the field).
    """
    return RunConfig(
        dataset="fashion_mnist",
        # pick() reads paper=None as "the book's value", so the whole splits are given by size.
        n_train=pick(ci=300, book=2000, paper=60_000),
        n_test=pick(ci=300, book=2000, paper=10_000),
        val_fraction=0.1,
        model="mlp",
        model_kwargs={"hidden": pick(ci=(64, 64), book=(256, 256), paper=(256, 256))},
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        lr_schedule="cosine",
        sam_rho=sam_rho,
        noise_rate=rate,
        epochs=pick(ci=2, book=30, paper=200),
        batch_size=pick(ci=32, book=32, paper=128),
        seed=seed,
    )


def pick_rho_on_validation(runs_by_rho: Mapping[float, Sequence[RunResult]], reading: str = "best") -> float:
    """The radius whose runs have the highest mean clean validation accuracy (chapter 11).

    Args:
        runs_by_rho: radius -> the runs (one per seed) trained with it; every run needs a
            ``val_acc`` column (a validation split).
        reading: ``"best"``: each run's highest validation accuracy over its epochs (the epoch
            early stopping would keep); ``"last"``: its validation accuracy after the last epoch.

    Returns:
        The radius with the highest mean over its runs; ties go to the radius listed first.

    Raises:
        ValueError: on an unknown ``reading``, no radii, a radius without runs, or a run
            without validation accuracy.
    """
    check_choice("reading", reading, ("best", "last"))
    if not runs_by_rho:
        raise ValueError("runs_by_rho must hold at least one radius")
    chosen, chosen_score = None, None
    for rho, results in runs_by_rho.items():
        if not results:
            raise ValueError(f"runs_by_rho[{rho!r}] must hold at least one run")
        scores = []
        for result in results:
            if "val_acc" not in result.history:
                raise ValueError(f"every run needs a validation split (val_acc); the run with rho={rho!r} has none")
            val = result.history["val_acc"]
            scores.append(float(val.max() if reading == "best" else val.iloc[-1]))
        score = sum(scores) / len(scores)
        if chosen_score is None or score > chosen_score:  # strict: the first of equal scores wins
            chosen, chosen_score = rho, score
    return chosen


def memorization_onset(history: pd.DataFrame, threshold: float = MEMORIZATION_THRESHOLD) -> float:
    """First epoch whose ``train_memorized`` is at least ``threshold``; NaN if none (chapter 11).

    Args:
        history: a :func:`~sam_course.train.fit` history (columns ``epoch``, ``train_memorized``:
            the fraction of relabelled training images predicted as their wrong label).
        threshold: in (0, 1].

    Returns:
        The epoch as a float (NaN when the run never reaches ``threshold``).

    Raises:
        ValueError: on a threshold outside (0, 1] or a history without those columns.
    """
    threshold = check_real("threshold", threshold, 0, 1, low_open=True)
    missing = {"epoch", "train_memorized"} - set(history.columns)
    if missing:
        raise ValueError(f"history must have the columns 'epoch' and 'train_memorized'; missing {sorted(missing)}")
    reached = history.loc[history["train_memorized"] >= threshold, "epoch"]
    return float(reached.min()) if len(reached) else math.nan


# --------------------------------------------------------------------------- chapters 12-14

#: The batch size of chapter 12's runs; an m-SAM chunk size ``m`` divides it.
MSHARPNESS_BATCH = 32
#: Fraction of the training labels replaced by a wrong class in chapter 14's comparison of variants.
VARIANTS_NOISE_RATE = 0.6


def msharpness_run(noise_rate: float = 0.0, m: int | None = None, seed: int = 0, **changes) -> RunConfig:
    """Chapter 12's run: SGD alone (``m=None``) or SAM around it with chunks of ``m`` examples.

    The 784-256-10 MLP on a class-balanced subset of Fashion-MNIST (``book``: 1,024 training and
    2,000 test images), SGD with learning rate 0.05 and momentum 0.9, batch
    :data:`MSHARPNESS_BATCH`, 20 epochs under ``book``. ``changes`` replaces any other field;
    with ``m`` set, SAM's radius is ``changes["sam_rho"]`` or :data:`SAM_RHO`.
    """
    base = RunConfig(
        dataset="fashion_mnist", n_train=pick(ci=256, book=1024, paper=10_000),
        n_test=pick(ci=200, book=2000, paper=None), model="mlp", model_kwargs={"hidden": (256,)},
        optimizer="sgd", lr=0.05, momentum=0.9, epochs=pick(ci=1, book=20, paper=60),
        batch_size=MSHARPNESS_BATCH,
    )
    cfg = base.replace(noise_rate=noise_rate, seed=seed, **changes)
    return cfg if m is None else cfg.replace(sam_rho=changes.get("sam_rho", SAM_RHO), msam_m=m)


def hessian_run(sam_rho: float | None = None, epochs: int | None = None, seed: int = 0) -> RunConfig:
    """Chapter 13's run: the MLP on Fashion-MNIST with SGD (``sam_rho=None``) or SAM-SGD, clean labels.

    Two hidden layers of 256 units (``book``; 32 under ``ci``, 512 under ``paper``), 4,000
    training and 1,000 test images under ``book``, SGD with :data:`BASE_HYPERPARAMETERS` ``["sgd"]``,
    batch 128, 40 epochs under ``book`` unless ``epochs`` is given.
    """
    return RunConfig(
        dataset="fashion_mnist", n_train=pick(ci=500, book=4000, paper=None), n_test=pick(ci=200, book=1000, paper=None),
        model="mlp", model_kwargs={"hidden": pick(ci=(32, 32), book=(256, 256), paper=(512, 512))}, optimizer="sgd",
        sam_rho=sam_rho, epochs=pick(ci=2, book=40, paper=200) if epochs is None else epochs, batch_size=128,
        seed=seed, **BASE_HYPERPARAMETERS["sgd"],
    )


def variants_run(seed: int = 0, **changes) -> RunConfig:
    """Chapter 14's run: a one-hidden-layer MLP on Fashion-MNIST with 60 % symmetric noise, Adam.

    256 hidden units, 5,000 training images (10 % held out, with clean labels, for validation) and
    2,000 test images under ``book``, :data:`VARIANTS_NOISE_RATE` symmetric noise, Adam with
    :data:`BASE_HYPERPARAMETERS` ``["adam"]``, batch 128, 20 epochs under ``book``. ``changes``
    replaces any field (``sam_rho``, ``sam_every``, ``sam_variant``...).
    """
    fields = dict(dataset="fashion_mnist", n_train=pick(ci=600, book=5000, paper=None),
                  n_test=pick(ci=300, book=2000, paper=None), val_fraction=0.1, model="mlp",
                  model_kwargs={"hidden": (256,)}, optimizer="adam", noise_rate=VARIANTS_NOISE_RATE,
                  epochs=pick(ci=2, book=20, paper=60), batch_size=128, seed=seed, **BASE_HYPERPARAMETERS["adam"])
    return RunConfig(**{**fields, **changes})
