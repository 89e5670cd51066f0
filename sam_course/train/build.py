"""From a :class:`~sam_course.train.RunConfig` to the pieces of a run: data, model, optimizer, schedule.

Every builder is deterministic in the configuration, so chapters 9 and 13 can rebuild the very
images and the very network a cached run was trained on (:func:`build_data`,
:func:`build_model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from .._checks import check_instance, check_int
from ..base_optimizers import BASE_OPTIMIZERS
from ..data import DataBundle, TensorImageDataset
from ..models import MLP, SmallCNN, SmallResNet
from ..noise import CIFAR10_CLASS_MAP, NoisyLabels
from ..optim.sam import SAM
from ..optim.variants import LookSAM, SAMEveryK
from .config import DATASETS, RunConfig
from .seeds import derive_seed

__all__ = ["RunData", "build_data", "build_model", "build_optimizer", "build_scheduler"]


@dataclass(frozen=True)
class RunData:
    """The datasets of a run, as :func:`build_data` makes them.

    Attributes:
        bundle: the loaded :class:`~sam_course.data.DataBundle` (after subsetting).
        train: the training set (a :class:`~sam_course.noise.NoisyLabels` when noise is on).
        val: the clean validation split, or None.
        test: the test split.
    """

    bundle: DataBundle
    train: Dataset
    val: TensorImageDataset | None
    test: TensorImageDataset

    @property
    def source(self) -> str:
        return self.bundle.source

    @property
    def is_standin(self) -> bool:
        return self.bundle.is_standin

    @property
    def eval_sets(self) -> dict[str, Dataset]:
        """``{"val": ..., "test": ...}`` (no ``val`` without a validation split)."""
        return {"test": self.test} if self.val is None else {"val": self.val, "test": self.test}


def _split_validation(dataset: TensorImageDataset, fraction: float, seed: int):
    """Hold out ``round(fraction * n_c)`` images of every class ``c``, drawn with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    held = []
    for label in range(len(dataset.classes)):
        members = torch.nonzero(dataset.targets == label).flatten()
        count = int(round(fraction * len(members)))
        held.append(members[torch.randperm(len(members), generator=generator)[:count]])
    val_index = torch.sort(torch.cat(held)).values
    keep = torch.ones(len(dataset), dtype=torch.bool)
    keep[val_index] = False
    if len(val_index) == 0 or not keep.any():
        raise ValueError(
            f"RunConfig.val_fraction={fraction} leaves {len(val_index)} validation and "
            f"{int(keep.sum())} training images; both must be at least 1"
        )
    part = lambda idx: TensorImageDataset(dataset.data[idx], dataset.targets[idx], dataset.classes)  # noqa: E731
    return part(keep), part(val_index)


def build_data(cfg: RunConfig, *, verbose: bool = True) -> RunData:
    """Load the data of ``cfg``: subsets, clean validation split, label noise. Deterministic.

    Prints the data source (from :mod:`sam_course.data`) when ``verbose``. Chapters 9 and 13 call
    it to get the very images a cached run was trained on.
    """
    check_instance("cfg", cfg, RunConfig, "sam_course.train.RunConfig")
    bundle = DATASETS[cfg.dataset](n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.data_seed, verbose=verbose)
    train, val = bundle.train, None
    if cfg.val_fraction > 0:
        train, val = _split_validation(train, cfg.val_fraction, derive_seed(cfg.data_seed, "val"))
    if cfg.noise_rate > 0:
        noise_seed = derive_seed(cfg.seed, "noise")
        if cfg.noise_kind == "symmetric":
            train = NoisyLabels.symmetric(train, cfg.noise_rate, noise_seed, bundle.num_classes)
        else:
            train = NoisyLabels.class_map(train, CIFAR10_CLASS_MAP, cfg.noise_rate, noise_seed, bundle.num_classes)
    return RunData(bundle=bundle, train=train, val=val, test=bundle.test)


def build_model(cfg: RunConfig, image_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The model of ``cfg`` for images ``(C, H, W)``, initialized from ``derive_seed(cfg.seed, "model")``.

    The global torch generator is left as it was.
    """
    check_instance("cfg", cfg, RunConfig, "sam_course.train.RunConfig")
    num_classes = check_int("num_classes", num_classes, 1)
    channels, height, width = image_shape
    kwargs = dict(cfg.model_kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "model"))
        if cfg.model == "mlp":
            return MLP(in_features=channels * height * width, num_classes=num_classes, **kwargs)
        if cfg.model == "cnn":
            return SmallCNN(in_channels=channels, num_classes=num_classes, **kwargs)
        return SmallResNet(in_channels=channels, num_classes=num_classes, **kwargs)


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` over ``model``'s parameters.

    The base optimizer alone without ``sam_rho``; else :class:`~sam_course.optim.variants.LookSAM`
    (``sam_variant="looksam"``, period ``sam_every``), :class:`~sam_course.optim.variants.SAMEveryK`
    (``sam_every > 1``) or :class:`~sam_course.optim.SAM` around it.
    """
    check_instance("cfg", cfg, RunConfig, "sam_course.train.RunConfig")
    check_instance("model", model, nn.Module, "torch.nn.Module")
    base = BASE_OPTIMIZERS[cfg.optimizer].cls
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        kwargs["momentum"] = cfg.momentum
    if cfg.sam_rho is None:
        return base(model.parameters(), **kwargs)
    kwargs.update(rho=cfg.sam_rho, p=cfg.sam_p, adaptive=cfg.sam_adaptive)
    if cfg.sam_variant == "looksam":
        return LookSAM(model.parameters(), base, k=cfg.sam_every, alpha=cfg.looksam_alpha, **kwargs)
    if cfg.sam_every > 1:
        return SAMEveryK(model.parameters(), base, k=cfg.sam_every, **kwargs)
    return SAM(model.parameters(), base, **kwargs)


def build_scheduler(cfg: RunConfig, optimizer: torch.optim.Optimizer):
    """None for a constant learning rate; cosine annealing over ``cfg.epochs`` (per epoch) otherwise."""
    check_instance("cfg", cfg, RunConfig, "sam_course.train.RunConfig")
    check_instance("optimizer", optimizer, torch.optim.Optimizer, "torch.optim.Optimizer")
    if cfg.lr_schedule == "constant":
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
