"""What defines a training run: :class:`RunConfig`, the names it accepts, and its validation.

A :class:`RunConfig` is also the key of the run cache (:mod:`~sam_course.train.cache`): two
configurations that compare equal are the same run, so every field is normalized here (``0`` and
``None`` radii, numbers as floats, ``model_kwargs`` as sorted pairs). Chapters 1, 2, 4 and 7-14.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .. import data as _data
from .._checks import check_bool, check_choice, check_int, check_optional_int, check_real
from ..base_optimizers import BASE_OPTIMIZERS
from ..optim.variants import DEFAULT_ALPHA

__all__ = ["DATASETS", "MODELS", "SAM_VARIANTS", "NOISE_KINDS", "LR_SCHEDULES", "RunConfig"]

#: ``RunConfig.dataset`` values and their loaders.
DATASETS: dict[str, Callable[..., _data.DataBundle]] = {
    "mnist": _data.load_mnist,
    "fashion_mnist": _data.load_fashion_mnist,
    "cifar10": _data.load_cifar10,
}
#: ``RunConfig.model`` values and the keyword arguments each accepts in ``model_kwargs``.
MODELS: dict[str, tuple[str, ...]] = {
    "mlp": ("hidden",),
    "cnn": ("width", "batch_norm"),
    "resnet": ("depth", "width"),
}
#: ``RunConfig.sam_variant`` values: plain SAM (with ``sam_every``,
#: :class:`~sam_course.optim.variants.SAMEveryK`) or :class:`~sam_course.optim.variants.LookSAM`
#: (full SAM step every ``sam_every`` steps, reused direction in between). Chapter 14.
SAM_VARIANTS = ("sam", "looksam")
#: ``RunConfig.noise_kind`` values (:mod:`sam_course.noise`).
NOISE_KINDS = ("symmetric", "class_map")
#: ``RunConfig.lr_schedule`` values.
LR_SCHEDULES = ("constant", "cosine")


def _freeze(value):
    """Lists (any depth) to tuples, so a config stays hashable and its key stable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run of :func:`~sam_course.train.run`; also its cache key.

    Attributes:
        dataset: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"`` (offline, CIFAR-10 may be a
            labelled stand-in: see :func:`sam_course.data.load_cifar10`).
        n_train, n_test: class-balanced subset sizes (None: the whole split).
        data_seed: seed of the subsets and of the validation split (same images for every ``seed``).
        val_fraction: fraction of the ``n_train`` training images held out, class-balanced and with
            CLEAN labels, as the validation set ``val`` (0: none). Noise and training use the rest.
        model: ``"mlp"``, ``"cnn"`` or ``"resnet"`` (:mod:`sam_course.models`); ``model_kwargs``
            their keyword arguments (mlp: hidden; cnn: width, batch_norm; resnet: depth, width),
            given as a dict and stored as sorted ``(name, value)`` pairs.
        optimizer: a key of :data:`sam_course.base_optimizers.BASE_OPTIMIZERS` (``"sgd"``,
            ``"adam"``, ``"adagrad"``); ``lr`` (> 0), ``momentum`` (SGD only, in [0, 1)),
            ``weight_decay`` (>= 0, the base optimizer's L2 term).
        lr_schedule: ``"constant"`` or ``"cosine"`` (cosine annealing to 0 over ``epochs``,
            stepped once per epoch).
        sam_rho: SAM's radius; None or 0 trains with the base optimizer alone (normalized to None).
        sam_p, sam_adaptive: SAM's norm order and ASAM switch (:class:`~sam_course.optim.SAM`).
        msam_m: m-SAM chunk size (needs ``sam_rho`` and a ``batch_size`` that it divides).
        sam_every: SAM on every ``sam_every``-th step, the base optimizer alone on the others
            (:class:`~sam_course.optim.variants.SAMEveryK`; 1 is SAM on every step).
        sam_variant: ``"sam"`` (default) or ``"looksam"``: :class:`~sam_course.optim.variants.LookSAM`
            with period ``k = sam_every`` and ``alpha = looksam_alpha`` (the full SAM step every
            ``sam_every`` steps, the reused direction added on the others; ``sam_every=1`` is SAM).
            Needs ``sam_rho``; not with ``msam_m``. Chapter 14.
        looksam_alpha: LookSAM's weight ``alpha`` of the reused direction, finite and >= 0; may
            differ from its default only with ``sam_variant="looksam"``. Both fields are left out
            of the cache key when ``sam_variant="sam"``, so runs cached before they existed still hit.
        noise_rate: fraction of training labels corrupted, in [0, 1); ``noise_kind``:
            ``"symmetric"`` (uniform over the other classes) or ``"class_map"``
            (:data:`~sam_course.noise.CIFAR10_CLASS_MAP`, by class index).
        epochs, batch_size: training length and minibatch size.
        patience: early stopping on ``val_acc`` (needs ``val_fraction > 0``); None trains all epochs.
        seed: model init, label noise, data order (see :mod:`sam_course.train`).

    Raises:
        ValueError: naming the field and its allowed values, on any bad value.
    """

    dataset: str = "mnist"
    n_train: int | None = None
    n_test: int | None = None
    data_seed: int = 0
    val_fraction: float = 0.0
    model: str = "mlp"
    model_kwargs: tuple = ()
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    sam_rho: float | None = None
    sam_p: float = 2.0
    sam_adaptive: bool = False
    msam_m: int | None = None
    sam_every: int = 1
    sam_variant: str = "sam"
    looksam_alpha: float = DEFAULT_ALPHA
    noise_rate: float = 0.0
    noise_kind: str = "symmetric"
    epochs: int = 10
    batch_size: int = 128
    patience: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        # Each check stores the normalized value (ints as int, numbers as float): the cache key
        # hashes these, so 1e-1 and 0.1 are the same run.
        self._check_data()
        self._check_model()
        self._check_optimizer()
        self._check_sam()
        self._check_noise()
        self._check_training()

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)

    def _check_data(self) -> None:
        check_choice("RunConfig.dataset", self.dataset, DATASETS)
        self._set("n_train", check_optional_int("RunConfig.n_train", self.n_train, 1))
        self._set("n_test", check_optional_int("RunConfig.n_test", self.n_test, 1))
        self._set("data_seed", check_int("RunConfig.data_seed", self.data_seed, 0))
        self._set("val_fraction", check_real("RunConfig.val_fraction", self.val_fraction, 0, 1, high_open=True))

    def _check_model(self) -> None:
        check_choice("RunConfig.model", self.model, MODELS)
        kwargs = self.model_kwargs
        if isinstance(kwargs, Mapping):
            kwargs = kwargs.items()
        try:
            pairs = tuple(sorted((str(k), _freeze(v)) for k, v in kwargs))
        except (TypeError, ValueError):
            raise ValueError(
                f"RunConfig.model_kwargs must be a dict of keyword arguments, got {self.model_kwargs!r}"
            ) from None
        checked = []
        for key, value in pairs:
            check_choice(f"RunConfig.model_kwargs key (model {self.model!r})", key, MODELS[self.model])
            name = f"RunConfig.model_kwargs[{key!r}]"
            if key == "batch_norm":
                value = check_bool(name, value)
            elif key == "hidden":
                if not isinstance(value, tuple):
                    raise ValueError(f"{name} must be a sequence of layer widths (ints >= 1), got {value!r}")
                value = tuple(check_int(f"{name}[{i}]", width, 1) for i, width in enumerate(value))
            else:  # width, depth (SmallResNet checks that depth is 6n + 2)
                value = check_int(name, value, 1)
            checked.append((key, value))
        self._set("model_kwargs", tuple(checked))

    def _check_optimizer(self) -> None:
        check_choice("RunConfig.optimizer", self.optimizer, BASE_OPTIMIZERS)
        self._set("lr", check_real("RunConfig.lr", self.lr, 0, low_open=True))
        self._set("momentum", check_real("RunConfig.momentum", self.momentum, 0, 1, high_open=True))
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"RunConfig.momentum applies to optimizer 'sgd' only, got optimizer {self.optimizer!r}")
        self._set("weight_decay", check_real("RunConfig.weight_decay", self.weight_decay, 0))
        check_choice("RunConfig.lr_schedule", self.lr_schedule, LR_SCHEDULES)

    def _check_sam(self) -> None:
        if self.sam_rho is not None:
            rho = check_real("RunConfig.sam_rho", self.sam_rho, 0)
            self._set("sam_rho", rho if rho > 0 else None)
        self._set("sam_p", check_real("RunConfig.sam_p", self.sam_p, 1, allow_inf=True))
        self._set("sam_adaptive", check_bool("RunConfig.sam_adaptive", self.sam_adaptive))
        self._set("msam_m", check_optional_int("RunConfig.msam_m", self.msam_m, 1))
        self._set("sam_every", check_int("RunConfig.sam_every", self.sam_every, 1))
        if self.sam_every > 1 and self.sam_rho is None:
            raise ValueError("RunConfig.sam_every > 1 needs SAM: set RunConfig.sam_rho > 0")
        check_choice("RunConfig.sam_variant", self.sam_variant, SAM_VARIANTS)
        if self.sam_variant == "looksam" and self.sam_rho is None:
            raise ValueError("RunConfig.sam_variant='looksam' needs SAM: set RunConfig.sam_rho > 0")
        if self.sam_variant == "looksam" and self.msam_m is not None:
            raise ValueError("RunConfig.sam_variant='looksam' does not combine with RunConfig.msam_m")
        self._set("looksam_alpha", check_real("RunConfig.looksam_alpha", self.looksam_alpha, 0))
        if self.sam_variant != "looksam" and self.looksam_alpha != DEFAULT_ALPHA:
            raise ValueError("RunConfig.looksam_alpha applies to sam_variant='looksam' only, got "
                             f"sam_variant={self.sam_variant!r}")

    def _check_noise(self) -> None:
        self._set("noise_rate", check_real("RunConfig.noise_rate", self.noise_rate, 0, 1, high_open=True))
        check_choice("RunConfig.noise_kind", self.noise_kind, NOISE_KINDS)

    def _check_training(self) -> None:
        self._set("epochs", check_int("RunConfig.epochs", self.epochs, 1))
        self._set("batch_size", check_int("RunConfig.batch_size", self.batch_size, 1))
        self._set("patience", check_optional_int("RunConfig.patience", self.patience, 1))
        self._set("seed", check_int("RunConfig.seed", self.seed, 0))
        if self.msam_m is not None:
            if self.sam_rho is None:
                raise ValueError("RunConfig.msam_m needs SAM: set RunConfig.sam_rho > 0")
            if self.batch_size % self.msam_m:
                raise ValueError(
                    f"RunConfig.msam_m must divide RunConfig.batch_size, got msam_m={self.msam_m}, "
                    f"batch_size={self.batch_size}"
                )
        if self.patience is not None and self.val_fraction == 0:
            raise ValueError("RunConfig.patience needs a validation split: set RunConfig.val_fraction > 0")

    @property
    def label(self) -> str:
        """``"Adam"``, ``"SAM-Adam"``, ...: the name :func:`sam_course.plotting.color_for` knows."""
        name = BASE_OPTIMIZERS[self.optimizer].display
        return f"SAM-{name}" if self.sam_rho is not None else name

    def replace(self, **changes) -> "RunConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
