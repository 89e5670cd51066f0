"""One training loop for every chapter that trains (1, 2, 4, 7, 8, 9, 11-14), and a cache of runs.

Two levels:

:func:`fit`
    trains a given model with a given optimizer, a plain ``torch.optim`` optimizer or
    :class:`~sam_course.optim.SAM` alike (m-SAM with ``msam_m``), and returns the history as a
    pandas DataFrame, one row per epoch plus row 0 (before training): loss and accuracy on the
    labels trained on, accuracy on the clean labels of the same images, the fraction of corrupted
    examples predicted as their noisy label (memorization), and each evaluation set. It seeds the
    data order, checkpoints and resumes bit-for-bit, and stops early on a clean validation split.
:func:`run`
    builds everything from a :class:`RunConfig` (data, label noise, validation split, model,
    optimizer), calls :func:`fit` and returns a :class:`RunResult` with the history and the final
    and best-epoch weights. Results are cached on disk, keyed by the configuration, so a second
    call (or a rebuild of the book) loads instead of training::

        from sam_course import train
        cfg = train.RunConfig(dataset="mnist", model="mlp", optimizer="adam", lr=1e-3,
                              sam_rho=0.05, noise_rate=0.8, epochs=30, n_train=4000)
        result = train.run(cfg)
        result.history            # one row per epoch

What one ``seed`` controls (:func:`derive_seed` turns it into independent sub-seeds, so that,
e.g., the first epoch's order is not the permutation that chose the corrupted labels): in
:func:`run`, the model's initialization (``"model"``), which labels are corrupted and how
(``"noise"``); in :func:`fit`, the order of the training examples (``"order"``, a private
``torch.Generator``) and any randomness drawn during training from torch's global generator, such as
dropout (``"train"``; the caller's global generator is saved and restored around :func:`fit`).
Which examples form the training subset and the validation split is fixed by
``RunConfig.data_seed`` (default 0), so runs with different seeds see the same images.
On the CPU, the same configuration gives the same weights and history bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import numbers
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .. import data as _data
from ..models import MLP, SmallCNN, SmallResNet
from ..optim.msam import msam_step
from ..noise import CIFAR10_CLASS_MAP, NoisyLabels
from ..optim.sam import SAM, frozen_batchnorm_stats
from ..optim.variants import DEFAULT_ALPHA as _LOOKSAM_ALPHA
from ..optim.variants import LookSAM

__all__ = [
    "CACHE_VERSION",
    "CACHE_ENV_VAR",
    "DATASETS",
    "MODELS",
    "OPTIMIZERS",
    "SAM_VARIANTS",
    "RunConfig",
    "RunData",
    "RunResult",
    "FitResult",
    "fit",
    "evaluate",
    "run",
    "run_seeds",
    "results_table",
    "summarize",
    "build_data",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "derive_seed",
    "cache_dir",
    "cache_path",
]

#: Bump when a change to the training code changes results: every cached run becomes a miss.
CACHE_VERSION = 1
#: Environment variable naming the cache directory (default ``~/.cache/sam_course/runs``).
CACHE_ENV_VAR = "SAM_COURSE_CACHE"
_DEFAULT_CACHE = "~/.cache/sam_course/runs"
_CHECKPOINT_FORMAT = 1
# Revision 2: m-SAM on Linear-only networks moved from the per-chunk loop to
# sam_course.optim.msam_lowrank; equal up to rounding, which a long run can amplify, so older m-SAM
# runs are not reused (other runs keep their keys).
_MSAM_GRADIENT_REVISION = 2

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
#: ``RunConfig.optimizer`` values, the base optimizers, and their display names.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], str]] = {
    "sgd": (torch.optim.SGD, "SGD"),
    "adam": (torch.optim.Adam, "Adam"),
    "adagrad": (torch.optim.Adagrad, "Adagrad"),
}
#: ``RunConfig.sam_variant`` values: plain SAM (with ``sam_every``, SAM every k steps) or
#: :class:`~sam_course.optim.variants.LookSAM` (full SAM step every ``sam_every`` steps, reused direction
#: in between). Chapter 14.
SAM_VARIANTS = ("sam", "looksam")
_NOISE_KINDS = ("symmetric", "class_map")
_LR_SCHEDULES = ("constant", "cosine")


# --------------------------------------------------------------------------- seeds


def derive_seed(seed: int, stream: str) -> int:
    """An independent seed in ``[0, 2**63)`` for one use (``stream``) of a run's ``seed``.

    The first 63 bits of ``sha256("sam_course:{stream}:{seed}")``: stable across processes and
    machines, and unrelated between streams. Streams used here: ``"model"``, ``"noise"``,
    ``"order"``, ``"train"`` (see the module docstring).
    """
    _check_int("seed", seed, low=0)
    digest = hashlib.sha256(f"sam_course:{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# --------------------------------------------------------------------------- validation helpers


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(name: str, value, low: int) -> int:
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_optional_int(name: str, value, low: int) -> int | None:
    return None if value is None else _check_int(name, value, low)


def _check_real(name: str, value, low: float, high: float = math.inf, *, low_open: bool = False,
                high_open: bool = True, allow_inf: bool = False) -> float:
    """``value`` as a float in the interval; the message states the interval."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        value = float(value)
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        ok = ok and (allow_inf or math.isfinite(value))
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return value


def _check_choice(name: str, value, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _freeze(value):
    """Lists (any depth) to tuples, so a config stays hashable and its key stable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


# --------------------------------------------------------------------------- data as tensors


@dataclass
class _Tensors:
    """A dataset as whole tensors: the labels it yields and, for NoisyLabels, the clean ones."""

    inputs: Tensor
    targets: Tensor
    clean: Tensor | None = None
    noise_mask: Tensor | None = None

    def to(self, device: torch.device) -> "_Tensors":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return _Tensors(move(self.inputs), move(self.targets), move(self.clean), move(self.noise_mask))

    def __len__(self) -> int:
        return len(self.targets)


def _as_tensors(dataset) -> _Tensors:
    """The whole of ``dataset`` as tensors, without a per-example loop for the course's datasets.

    Understands :class:`~sam_course.data.TensorImageDataset`, ``TensorDataset`` (inputs,
    targets), :class:`~sam_course.noise.NoisyLabels` and ``Subset`` of any of these; a
    ``DataLoader`` stands for its ``.dataset``. Anything else is indexed once, example by example.
    """
    if isinstance(dataset, DataLoader):
        return _as_tensors(dataset.dataset)
    if isinstance(dataset, NoisyLabels):
        inner = _as_tensors(dataset.dataset)
        return _Tensors(inner.inputs, dataset.targets, dataset.clean_targets, dataset.noise_mask)
    if isinstance(dataset, _data.TensorImageDataset):
        return _Tensors(dataset.data, dataset.targets)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return _Tensors(dataset.tensors[0], dataset.tensors[1].long())
    if isinstance(dataset, Subset):
        inner = _as_tensors(dataset.dataset)
        index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return _Tensors(pick(inner.inputs), pick(inner.targets), pick(inner.clean), pick(inner.noise_mask))
    if not isinstance(dataset, Dataset) and not hasattr(dataset, "__getitem__"):
        raise ValueError(f"expected a Dataset or DataLoader, got {type(dataset).__name__}")
    items = [dataset[i] for i in range(len(dataset))]
    inputs = torch.stack([torch.as_tensor(x) for x, _ in items])
    return _Tensors(inputs, torch.as_tensor([int(y) for _, y in items], dtype=torch.long))


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def _predict(model: nn.Module, tensors: _Tensors, loss_fn, batch_size: int) -> tuple[float, Tensor]:
    """Mean loss (``loss_fn`` averages over a batch) and argmax predictions, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        total = torch.zeros((), dtype=torch.float64, device=tensors.targets.device)
        predictions = []
        for x, y in zip(tensors.inputs.split(batch_size), tensors.targets.split(batch_size)):
            logits = model(x)
            total += loss_fn(logits, y).double() * len(y)
            predictions.append(logits.argmax(dim=1))
    finally:
        model.train(was_training)
    return float(total) / len(tensors), torch.cat(predictions)


def _scores(tensors: _Tensors, predictions: Tensor) -> dict[str, float]:
    """Accuracy on the labels, on the clean labels, and memorization (counts, then one division)."""
    n = len(tensors)
    scores = {"acc": int((predictions == tensors.targets).sum()) / n}
    if tensors.clean is not None:
        scores["clean_acc"] = int((predictions == tensors.clean).sum()) / n
        corrupted = int(tensors.noise_mask.sum())
        hits = int((predictions[tensors.noise_mask] == tensors.targets[tensors.noise_mask]).sum())
        scores["memorized"] = hits / corrupted if corrupted else math.nan
    return scores


def _evaluate_tensors(model, tensors: _Tensors, loss_fn, batch_size: int) -> dict[str, float]:
    loss, predictions = _predict(model, tensors, loss_fn, batch_size)
    return {"loss": loss, **_scores(tensors, predictions)}


def evaluate(model: nn.Module, data, *, loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
             batch_size: int = 1000) -> dict[str, float]:
    """Loss and accuracy of ``model`` on a dataset, in eval mode, without gradients.

    Args:
        model: maps a batch ``(B, ...)`` to logits ``(B, num_classes)``; its mode is restored.
        data: a dataset (or a ``DataLoader``, whose ``.dataset`` is used), see :func:`fit`.
        loss_fn: averages over a batch; default cross-entropy.
        batch_size: examples per forward pass (only memory depends on it).

    Returns:
        ``{"loss", "acc"}``: the mean loss (nats for cross-entropy) and the fraction of examples
        whose argmax logit equals their label. For a :class:`~sam_course.noise.NoisyLabels` dataset
        the labels are the noisy ones, and ``"clean_acc"`` (accuracy on the clean labels) and
        ``"memorized"`` (fraction of corrupted examples predicted as their noisy label; NaN when
        none is corrupted) are added. Chapters 7, 9, 11 and 13.
    """
    _check_int("batch_size", batch_size, low=1)
    tensors = _as_tensors(data)
    if len(tensors) == 0:
        raise ValueError("data must hold at least one example")
    return _evaluate_tensors(model, tensors.to(_device_of(model)), loss_fn or nn.CrossEntropyLoss(), batch_size)


# --------------------------------------------------------------------------- fit


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: one row per epoch, ``epoch`` 0 being the model before training (see :func:`fit`).
        best_epoch: the epoch with the best ``monitor`` value (earliest among ties), or None when
            the monitored column does not exist (no validation set).
        best_state: a copy of ``model.state_dict()`` at ``best_epoch`` (None without a monitor).
        stopped_early: True when training stopped after ``patience`` epochs without improvement.
        monitor: the column that chose ``best_epoch`` (None without one).
    """

    history: pd.DataFrame = field(repr=False)
    best_epoch: int | None
    best_state: dict[str, Tensor] | None = field(repr=False)
    stopped_early: bool
    monitor: str | None


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, x: Tensor, y: Tensor,
                msam_m: int | None, sharpness_aware: bool = True) -> Tensor:
    """One optimizer step on one batch; returns the batch loss at the weights before the step.

    With a SAM optimizer and ``sharpness_aware=False`` the step is the base optimizer's alone
    (one gradient, at ``w``): the cheap steps of ``sam_every``.
    """
    is_sam = isinstance(optimizer, SAM)
    if is_sam and not sharpness_aware:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.base_optimizer.step()
        return loss
    if msam_m is not None:
        return msam_step(optimizer, model, loss_fn, x, y, msam_m)

    def closure() -> Tensor:
        optimizer.zero_grad()
        # SAM calls the closure twice; the second call, at w + eps_hat, must leave BatchNorm's
        # running statistics alone (chapter 5). `perturbed` is True exactly during that call.
        frozen = frozen_batchnorm_stats(model) if is_sam and optimizer.perturbed else contextlib.nullcontext()
        with frozen:
            loss = loss_fn(model(x), y)
            loss.backward()
        return loss

    # Every torch optimizer accepts a closure and returns its (first) loss, so plain optimizers
    # and SAM share this one line.
    return optimizer.step(closure)


def _batches(train_data, tensors: _Tensors, batch_size: int | None, order: torch.Generator,
             device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    if isinstance(train_data, DataLoader):
        for x, y in train_data:
            yield x.to(device), y.to(device)
        return
    # Indexing the in-memory tensors with a seeded permutation costs about a tenth of a
    # DataLoader's per-example fetch and collate, and is reproducible by construction.
    permutation = torch.randperm(len(tensors), generator=order).to(device)
    for index in permutation.split(batch_size):
        yield tensors.inputs[index], tensors.targets[index]


def _row(epoch: int, model, train: _Tensors, evals: dict[str, _Tensors], loss_fn, eval_batch_size: int,
         batch_loss: float, lr: float, seconds: float, steps: int) -> dict[str, float]:
    start = time.perf_counter()
    row: dict[str, float] = {"epoch": epoch, "steps": steps}
    stats = _evaluate_tensors(model, train, loss_fn, eval_batch_size)
    row["train_loss"] = stats["loss"]
    row["train_acc"] = stats["acc"]
    row["train_clean_acc"] = stats.get("clean_acc", stats["acc"])
    row["train_memorized"] = stats.get("memorized", math.nan)
    for name, tensors in evals.items():
        for key, value in _evaluate_tensors(model, tensors, loss_fn, eval_batch_size).items():
            row[f"{name}_{key}"] = value
    row["batch_loss"] = batch_loss
    row["lr"] = lr
    row["seconds"] = seconds
    row["eval_seconds"] = time.perf_counter() - start
    return row


def _improved(value: float, best: float | None, maximize: bool) -> bool:
    if math.isnan(value):
        return False
    return best is None or (value > best if maximize else value < best)


def _state_copy(module_or_optimizer) -> dict:
    return copy.deepcopy(module_or_optimizer.state_dict())


def _atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a cache is readable like any file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _cuda_indices(model: nn.Module) -> list[int]:
    return sorted({t.device.index or 0 for t in model.parameters() if t.device.type == "cuda"})


def _generators(train_data, order: torch.Generator) -> list[torch.Generator]:
    """Every generator that decides the order of training examples: ours, and a DataLoader's own."""
    found = [order]
    if isinstance(train_data, DataLoader):
        for owner in (train_data, train_data.sampler, getattr(train_data.batch_sampler, "sampler", None)):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
                found.append(generator)
    return found


def _rng_state(generators: list[torch.Generator], cuda: list[int]) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(i) for i in cuda],
        "generators": [g.get_state() for g in generators],
    }


def _set_rng_state(state: dict, generators: list[torch.Generator], cuda: list[int]) -> None:
    torch.set_rng_state(state["torch"])
    for i, s in zip(cuda, state["cuda"]):
        torch.cuda.set_rng_state(s, i)
    if len(state["generators"]) != len(generators):
        raise ValueError("the checkpoint's data-order generators do not match train_data's")
    for g, s in zip(generators, state["generators"]):
        g.set_state(s)


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn,
                 batches: Iterable[tuple[Tensor, Tensor]], msam_m: int | None, sam_every: int,
                 steps: int) -> tuple[float, int]:
    """One pass over ``batches`` after ``steps`` earlier steps.

    Returns the example-weighted mean of the batch losses (NaN if no step) and the new step count.
    """
    model.train()
    total, seen = None, 0
    for x, y in batches:
        if msam_m is not None:
            keep = len(y) - len(y) % msam_m
            if keep == 0:
                continue
            x, y = x[:keep], y[:keep]
        loss = _train_step(model, optimizer, loss_fn, x, y, msam_m, steps % sam_every == 0)
        loss = loss.detach().double() * len(y)
        steps += 1
        # Summing on the device and reading the total once avoids a host sync per step on a GPU.
        total = loss if total is None else total + loss
        seen += len(y)
    return (float(total) / seen if seen else math.nan), steps


def _load_checkpoint(path: Path, seed: int, epochs: int, model, optimizer, scheduler,
                     generators: list[torch.Generator], cuda: list[int]) -> tuple[list[dict], dict, bool]:
    """Restore everything :func:`fit` saved after an epoch; returns (history, best, stopped)."""
    # Generator states must stay on the CPU; load_state_dict moves the rest where it belongs.
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("format") != _CHECKPOINT_FORMAT or saved.get("seed") != seed:
        raise ValueError(
            f"checkpoint {path} was written with seed {saved.get('seed')!r} (format "
            f"{saved.get('format')!r}); this run has seed {seed} (format {_CHECKPOINT_FORMAT})"
        )
    if saved["epoch"] > epochs:
        raise ValueError(f"checkpoint {path} is at epoch {saved['epoch']}, beyond epochs={epochs}")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(saved["scheduler"])
    _set_rng_state(saved["rng"], generators, cuda)
    return saved["history"], saved["best"], saved["stopped"]


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data,
    epochs: int,
    *,
    batch_size: int | None = None,
    eval_sets: Mapping[str, object] | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    seed: int = 0,
    scheduler=None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    patience: int | None = None,
    monitor: str = "val_acc",
    msam_m: int | None = None,
    sam_every: int = 1,
    eval_batch_size: int = 1000,
    progress: bool = True,
    desc: str = "training",
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs and record one history row per epoch.

    The same loop serves plain optimizers and SAM: each step is ``optimizer.step(closure)``.
    SAM calls the closure twice; while it is perturbed (``optimizer.perturbed``) the closure runs
    under :func:`~sam_course.optim.frozen_batchnorm_stats`, so BatchNorm's running statistics see
    each batch once, at ``w``. With ``msam_m`` each step is
    :func:`~sam_course.optim.msam.msam_step` (chapter 12); a batch whose size is not a multiple of
    ``msam_m`` is cut to the largest multiple, and skipped if smaller than ``msam_m``.

    History columns (a DataFrame; ``epoch`` 0 is evaluated before any step):

    - ``train_loss``, ``train_acc``: on the training set with the labels trained on (the noisy
      ones for a :class:`~sam_course.noise.NoisyLabels` set), in eval mode after the epoch;
    - ``train_clean_acc``: the same images scored against their clean labels (equals
      ``train_acc`` without noise); ``train_memorized``: the fraction of corrupted examples
      predicted as their noisy label (NaN without noise); chapters 7 and 11;
    - ``{name}_loss``, ``{name}_acc`` for every entry of ``eval_sets`` (``test_acc``,
      ``val_acc``, ...), plus ``{name}_clean_acc``/``{name}_memorized`` for a noisy one;
    - ``steps``: optimizer steps taken so far; ``batch_loss``: mean of the minibatch losses during
      the epoch, at the weights before each step, in train mode (NaN for epoch 0); ``lr``: the
      first group's learning rate in the epoch;
    - ``seconds``: wall time of the epoch's training steps; ``eval_seconds``: of its evaluation.

    Args:
        model: maps ``(B, ...)`` to logits ``(B, C)``; trained in place, on its own device.
        optimizer: any ``torch.optim.Optimizer`` over ``model``'s parameters, or
            :class:`~sam_course.optim.SAM`.
        train_data: a dataset (:class:`~sam_course.data.TensorImageDataset`, ``TensorDataset``,
            :class:`~sam_course.noise.NoisyLabels`, ``Subset`` of those: batched from whole
            tensors by a seeded permutation, the fast path) or a ``DataLoader`` (its own batches;
            its ``generator``, if any, should be seeded by the caller). Evaluation always uses
            the whole dataset.
        epochs: total number of epochs, counting those done before a resume; >= 0.
        batch_size: examples per step; required for a dataset, must be None for a DataLoader.
        eval_sets: name -> dataset (or DataLoader, standing for its dataset), evaluated after
            every epoch. Names must be identifiers other than ``"train"``.
        loss_fn: averages over a batch; default cross-entropy.
        seed: seeds the order of the examples and the global torch generator during training
            (via :func:`derive_seed`; the caller's global generator is restored afterwards).
        scheduler: an LR scheduler stepped once after every epoch (checkpointed too).
        checkpoint: a file written after every epoch (atomically): model, optimizer (SAM's
            includes the base optimizer's), scheduler, epoch, history, best state, generator states.
        resume: continue from ``checkpoint`` if that file exists (else start afresh). The result
            equals an uninterrupted run bit for bit on the CPU.
        patience: stop after this many epochs without improvement of ``monitor``; None never
            stops early.
        monitor: the history column that defines the best epoch: maximized if it ends in
            ``_acc``, minimized if in ``_loss``. Ignored (no best epoch) when absent, unless
            ``patience`` is set, which then raises.
        msam_m: m-SAM chunk size (needs a SAM optimizer and, for a dataset, a ``batch_size``
            that is a multiple of it).
        sam_every: with a SAM optimizer, take a SAM step on steps ``0, k, 2k, ...`` (counted over
            the whole run) and a plain base-optimizer step otherwise: the cheaper schedule of
            chapter 14. 1 (default) is SAM on every step. Must be 1 for a
            :class:`~sam_course.optim.variants.LookSAM`, which has its own period ``k``.
        eval_batch_size: examples per forward pass in evaluation.
        progress: a ``tqdm.auto`` bar over epochs (``TQDM_DISABLE=1`` also turns it off).
        desc: the bar's label.

    Returns:
        A :class:`FitResult`. The model is left at its last epoch's weights.

    Raises:
        ValueError: on bad arguments, or a checkpoint written with another seed or further than
            ``epochs``.
    """
    epochs = _check_int("epochs", epochs, low=0)
    seed = _check_int("seed", seed, low=0)
    eval_batch_size = _check_int("eval_batch_size", eval_batch_size, low=1)
    if isinstance(train_data, DataLoader):
        if batch_size is not None:
            raise ValueError("batch_size must be None when train_data is a DataLoader (it has its own)")
    else:
        batch_size = _check_int("batch_size", batch_size, low=1)
    if msam_m is not None:
        msam_m = _check_int("msam_m", msam_m, low=1)
        if not isinstance(optimizer, SAM):
            raise ValueError(f"msam_m needs a sam_course.optim.SAM optimizer, got {type(optimizer).__name__}")
        if batch_size is not None and batch_size % msam_m:
            raise ValueError(f"batch_size must be a multiple of msam_m, got batch_size={batch_size}, msam_m={msam_m}")
    sam_every = _check_int("sam_every", sam_every, low=1)
    if sam_every > 1 and not isinstance(optimizer, SAM):
        raise ValueError(f"sam_every > 1 needs a sam_course.optim.SAM optimizer, got {type(optimizer).__name__}")
    if isinstance(optimizer, LookSAM) and (sam_every > 1 or msam_m is not None):
        # Both would bypass LookSAM.step, which schedules its own full steps (its k).
        raise ValueError("sam_every must be 1 and msam_m None with a LookSAM optimizer (set LookSAM's k instead)")
    eval_sets = dict(eval_sets or {})
    for name in eval_sets:
        if not isinstance(name, str) or not name.isidentifier() or name == "train":
            raise ValueError(f"eval_sets names must be identifiers other than 'train', got {name!r}")
    maximize = isinstance(monitor, str) and monitor.endswith("_acc")
    if not (maximize or isinstance(monitor, str) and monitor.endswith("_loss")):
        raise ValueError(f"monitor must name an '_acc' or '_loss' column of the history, got {monitor!r}")
    if patience is not None:
        patience = _check_int("patience", patience, low=1)
    checkpoint = None if checkpoint is None else Path(checkpoint)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    loss_fn = loss_fn or nn.CrossEntropyLoss()

    device = _device_of(model)
    train = _as_tensors(train_data).to(device)
    evals = {name: _as_tensors(d).to(device) for name, d in eval_sets.items()}
    for name, tensors in (("train_data", train), *evals.items()):
        if len(tensors) == 0:
            raise ValueError(f"{name} must hold at least one example")
    columns = {"train_loss", "train_acc", "train_clean_acc"}
    for name, tensors in evals.items():
        columns |= {f"{name}_loss", f"{name}_acc"} | ({f"{name}_clean_acc"} if tensors.clean is not None else set())
    has_monitor = monitor in columns
    if patience is not None and not has_monitor:
        raise ValueError(f"patience needs the monitored column {monitor!r}; the history has {sorted(columns)}")
    cuda = _cuda_indices(model)
    order = torch.Generator().manual_seed(derive_seed(seed, "order"))
    generators = _generators(train_data, order)

    history: list[dict] = []
    best = {"epoch": None, "value": None, "state": None}
    stopped = False
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(derive_seed(seed, "train"))
        if resume and checkpoint.exists():
            history, best, stopped = _load_checkpoint(checkpoint, seed, epochs, model, optimizer, scheduler,
                                                      generators, cuda)
        else:
            history.append(_row(0, model, train, evals, loss_fn, eval_batch_size, math.nan,
                                optimizer.param_groups[0]["lr"], 0.0, 0))
            if has_monitor:
                best = {"epoch": 0, "value": history[0][monitor], "state": _state_copy(model)}
        bar = tqdm(total=epochs, initial=len(history) - 1, desc=desc, unit="epoch",
                   **({} if progress else {"disable": True}))
        try:
            for epoch in range(len(history), epochs + 1):
                if stopped:
                    break
                lr = optimizer.param_groups[0]["lr"]
                start = time.perf_counter()
                batches = _batches(train_data, train, batch_size, order, device)
                batch_loss, steps = _train_epoch(model, optimizer, loss_fn, batches, msam_m, sam_every,
                                                 history[-1]["steps"])
                seconds = time.perf_counter() - start
                if scheduler is not None:
                    scheduler.step()
                row = _row(epoch, model, train, evals, loss_fn, eval_batch_size, batch_loss, lr, seconds, steps)
                history.append(row)
                if has_monitor:
                    if _improved(row[monitor], best["value"], maximize):
                        best = {"epoch": epoch, "value": row[monitor], "state": _state_copy(model)}
                    stopped = patience is not None and epoch - best["epoch"] >= patience
                if checkpoint is not None:
                    _atomic_save({
                        "format": _CHECKPOINT_FORMAT, "seed": seed, "epoch": epoch,
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": None if scheduler is None else scheduler.state_dict(),
                        "rng": _rng_state(generators, cuda), "history": history, "best": best, "stopped": stopped,
                    }, checkpoint)
                bar.update(1)
                postfix = {"train_loss": f"{row['train_loss']:.3f}"}
                if "test_acc" in row:
                    postfix["test_acc"] = f"{row['test_acc']:.3f}"
                bar.set_postfix(postfix, refresh=False)
        finally:
            bar.close()
    return FitResult(
        history=pd.DataFrame.from_records(history),
        best_epoch=best["epoch"],
        best_state=best["state"],
        stopped_early=stopped,
        monitor=monitor if has_monitor else None,
    )


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run of :func:`run`; also its cache key.

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
        optimizer: ``"sgd"``, ``"adam"`` or ``"adagrad"``; ``lr`` (> 0), ``momentum`` (SGD only,
            in [0, 1)), ``weight_decay`` (>= 0, the base optimizer's L2 term).
        lr_schedule: ``"constant"`` or ``"cosine"`` (cosine annealing to 0 over ``epochs``,
            stepped once per epoch).
        sam_rho: SAM's radius; None or 0 trains with the base optimizer alone (normalized to None).
        sam_p, sam_adaptive: SAM's norm order and ASAM switch (:class:`~sam_course.optim.SAM`).
        msam_m: m-SAM chunk size (needs ``sam_rho`` and a ``batch_size`` that it divides).
        sam_every: SAM on every ``sam_every``-th step, the base optimizer alone on the others.
        sam_variant: ``"sam"`` (default) or ``"looksam"``: :class:`~sam_course.optim.variants.LookSAM`
            with period ``k = sam_every`` and ``alpha = looksam_alpha`` (the full SAM step every ``sam_every`` steps, the reused direction added on the
            others; ``sam_every=1`` is SAM). Needs ``sam_rho``; not with ``msam_m``. Chapter 14.
        looksam_alpha: LookSAM's weight ``alpha`` of the reused direction, finite and >= 0; may
            differ from its default only with ``sam_variant="looksam"``. Both fields are left out
            of the cache key when ``sam_variant="sam"``, so runs cached before they existed still hit.
        noise_rate: fraction of training labels corrupted, in [0, 1); ``noise_kind``:
            ``"symmetric"`` (uniform over the other classes) or ``"class_map"``
            (:data:`~sam_course.noise.CIFAR10_CLASS_MAP`, by class index).
        epochs, batch_size: training length and minibatch size.
        patience: early stopping on ``val_acc`` (needs ``val_fraction > 0``); None trains all epochs.
        seed: model init, label noise, data order (see the module docstring).

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
    looksam_alpha: float = _LOOKSAM_ALPHA
    noise_rate: float = 0.0
    noise_kind: str = "symmetric"
    epochs: int = 10
    batch_size: int = 128
    patience: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        def setf(name, value):
            object.__setattr__(self, name, value)

        def qual(name):
            return f"RunConfig.{name}"

        _check_choice(qual("dataset"), self.dataset, DATASETS)
        setf("n_train", _check_optional_int(qual("n_train"), self.n_train, 1))
        setf("n_test", _check_optional_int(qual("n_test"), self.n_test, 1))
        setf("data_seed", _check_int(qual("data_seed"), self.data_seed, 0))
        setf("val_fraction", _check_real(qual("val_fraction"), self.val_fraction, 0.0, 1.0))
        _check_choice(qual("model"), self.model, MODELS)
        kwargs = self.model_kwargs
        if isinstance(kwargs, Mapping):
            kwargs = kwargs.items()
        try:
            pairs = tuple(sorted((str(k), _freeze(v)) for k, v in kwargs))
        except (TypeError, ValueError):
            raise ValueError(f"{qual('model_kwargs')} must be a dict of keyword arguments, got {self.model_kwargs!r}") from None
        for key, _ in pairs:
            _check_choice(f"{qual('model_kwargs')} key (model {self.model!r})", key, MODELS[self.model])
        setf("model_kwargs", pairs)
        _check_choice(qual("optimizer"), self.optimizer, OPTIMIZERS)
        setf("lr", _check_real(qual("lr"), self.lr, 0.0, low_open=True))
        setf("momentum", _check_real(qual("momentum"), self.momentum, 0.0, 1.0))
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"{qual('momentum')} applies to optimizer 'sgd' only, got optimizer {self.optimizer!r}")
        setf("weight_decay", _check_real(qual("weight_decay"), self.weight_decay, 0.0))
        _check_choice(qual("lr_schedule"), self.lr_schedule, _LR_SCHEDULES)
        if self.sam_rho is not None:
            rho = _check_real(qual("sam_rho"), self.sam_rho, 0.0)
            setf("sam_rho", rho if rho > 0 else None)
        setf("sam_p", _check_real(qual("sam_p"), self.sam_p, 1.0, math.inf, high_open=False, allow_inf=True))
        if not isinstance(self.sam_adaptive, bool):
            raise ValueError(f"{qual('sam_adaptive')} must be True or False, got {self.sam_adaptive!r}")
        setf("msam_m", _check_optional_int(qual("msam_m"), self.msam_m, 1))
        setf("sam_every", _check_int(qual("sam_every"), self.sam_every, 1))
        if self.sam_every > 1 and self.sam_rho is None:
            raise ValueError(f"{qual('sam_every')} > 1 needs SAM: set RunConfig.sam_rho > 0")
        _check_choice(qual("sam_variant"), self.sam_variant, SAM_VARIANTS)
        if self.sam_variant == "looksam" and self.sam_rho is None:
            raise ValueError(f"{qual('sam_variant')}='looksam' needs SAM: set RunConfig.sam_rho > 0")
        if self.sam_variant == "looksam" and self.msam_m is not None:
            raise ValueError(f"{qual('sam_variant')}='looksam' does not combine with RunConfig.msam_m")
        setf("looksam_alpha", _check_real(qual("looksam_alpha"), self.looksam_alpha, 0.0))
        if self.sam_variant != "looksam" and self.looksam_alpha != _LOOKSAM_ALPHA:
            raise ValueError(f"{qual('looksam_alpha')} applies to sam_variant='looksam' only, got "
                             f"sam_variant={self.sam_variant!r}")
        setf("noise_rate", _check_real(qual("noise_rate"), self.noise_rate, 0.0, 1.0))
        _check_choice(qual("noise_kind"), self.noise_kind, _NOISE_KINDS)
        setf("epochs", _check_int(qual("epochs"), self.epochs, 1))
        setf("batch_size", _check_int(qual("batch_size"), self.batch_size, 1))
        setf("patience", _check_optional_int(qual("patience"), self.patience, 1))
        setf("seed", _check_int(qual("seed"), self.seed, 0))
        if self.msam_m is not None:
            if self.sam_rho is None:
                raise ValueError(f"{qual('msam_m')} needs SAM: set RunConfig.sam_rho > 0")
            if self.batch_size % self.msam_m:
                raise ValueError(
                    f"{qual('msam_m')} must divide RunConfig.batch_size, got msam_m={self.msam_m}, "
                    f"batch_size={self.batch_size}"
                )
        if self.patience is not None and self.val_fraction == 0:
            raise ValueError(f"{qual('patience')} needs a validation split: set RunConfig.val_fraction > 0")

    @property
    def label(self) -> str:
        """``"Adam"``, ``"SAM-Adam"``, ...: the name :func:`sam_course.plotting.color_for` knows."""
        name = OPTIMIZERS[self.optimizer][1]
        return f"SAM-{name}" if self.sam_rho is not None else name

    def replace(self, **changes) -> "RunConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- building blocks


@dataclass(frozen=True)
class RunData:
    """The datasets of a run, as :func:`build_data` makes them.

    Attributes:
        bundle: the loaded :class:`~sam_course.data.DataBundle` (after subsetting).
        train: the training set (a :class:`~sam_course.noise.NoisyLabels` when noise is on).
        val: the clean validation split, or None.
        test: the test split.
    """

    bundle: _data.DataBundle
    train: Dataset
    val: _data.TensorImageDataset | None
    test: _data.TensorImageDataset

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


def _split_validation(dataset: _data.TensorImageDataset, fraction: float, seed: int):
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
    part = lambda idx: _data.TensorImageDataset(dataset.data[idx], dataset.targets[idx], dataset.classes)  # noqa: E731
    return part(keep), part(val_index)


def build_data(cfg: RunConfig, *, verbose: bool = True) -> RunData:
    """Load the data of ``cfg``: subsets, clean validation split, label noise. Deterministic.

    Prints the data source (from :mod:`sam_course.data`) when ``verbose``. Chapters 9 and 13 call
    it to get the very images a cached run was trained on.
    """
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
    """The optimizer of ``cfg`` over ``model``'s parameters: the base one, or SAM around it."""
    base, _ = OPTIMIZERS[cfg.optimizer]
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        kwargs["momentum"] = cfg.momentum
    if cfg.sam_rho is None:
        return base(model.parameters(), **kwargs)
    if cfg.sam_variant == "looksam":
        return LookSAM(model.parameters(), base, rho=cfg.sam_rho, k=cfg.sam_every, alpha=cfg.looksam_alpha,
                       p=cfg.sam_p, adaptive=cfg.sam_adaptive, **kwargs)
    return SAM(model.parameters(), base, rho=cfg.sam_rho, p=cfg.sam_p, adaptive=cfg.sam_adaptive, **kwargs)


def build_scheduler(cfg: RunConfig, optimizer: torch.optim.Optimizer):
    """None for a constant learning rate; cosine annealing over ``cfg.epochs`` (per epoch) otherwise."""
    if cfg.lr_schedule == "constant":
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)


# --------------------------------------------------------------------------- results and cache


@dataclass
class RunResult:
    """The outcome of :func:`run`.

    Attributes:
        config: the :class:`RunConfig`.
        history: the :func:`fit` history (one row per epoch, row 0 before training).
        best_epoch: epoch of the highest clean validation accuracy (None without validation).
        final_test_acc: test accuracy after the last epoch trained.
        best_test_acc: test accuracy at ``best_epoch`` (None without validation); chapter 7
            compares it with ``final_test_acc``.
        stopped_early: True when ``patience`` ended training before ``config.epochs``.
        source, is_standin: where the data came from (show it next to results).
        image_shape, num_classes: of the data, to rebuild the model.
        state_dict: the final weights (CPU tensors); ``best_state_dict``: those at ``best_epoch``.
        from_cache: True when loaded from disk instead of trained.
        path: the cache file (None when caching is off).
    """

    config: RunConfig
    history: pd.DataFrame = field(repr=False)
    best_epoch: int | None
    final_test_acc: float
    best_test_acc: float | None
    stopped_early: bool
    source: str
    is_standin: bool
    image_shape: tuple[int, int, int]
    num_classes: int
    state_dict: dict[str, Tensor] = field(repr=False)
    best_state_dict: dict[str, Tensor] | None = field(repr=False)
    from_cache: bool = False
    path: Path | None = None

    @property
    def label(self) -> str:
        return self.config.label

    @property
    def train_seconds(self) -> float:
        """Wall time of all training steps (evaluation excluded), as measured when trained."""
        return float(self.history["seconds"].sum())

    def model(self, which: str = "final") -> nn.Module:
        """The trained model in eval mode: ``which="final"`` weights or ``"best"`` (best epoch)."""
        _check_choice("which", which, ("final", "best"))
        state = self.state_dict if which == "final" else self.best_state_dict
        if state is None:
            raise ValueError("which='best' needs a validation split (config.val_fraction > 0)")
        model = build_model(self.config, self.image_shape, self.num_classes)
        model.load_state_dict(state)
        return model.eval()


def cache_dir() -> Path:
    """``$SAM_COURSE_CACHE`` if set, else ``~/.cache/sam_course/runs`` (created on first write)."""
    return Path(os.environ.get(CACHE_ENV_VAR) or _DEFAULT_CACHE).expanduser()


def _cache_key(cfg: RunConfig, source: str) -> str:
    fields = dataclasses.asdict(cfg)
    # Fields added after runs were cached are left out at their default value, so that those
    # runs keep their keys (nothing they computed changed).
    if fields["sam_variant"] == "sam":
        del fields["sam_variant"], fields["looksam_alpha"]
    if fields["msam_m"] is not None:
        fields["msam_gradient"] = _MSAM_GRADIENT_REVISION
    text = json.dumps({"config": fields, "cache_version": CACHE_VERSION, "source": source}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(cfg: RunConfig, source: str) -> Path:
    """The cache file of ``cfg`` trained on data from ``source`` (``RunData.source``).

    Named ``{dataset}-{model}-{label}-{hash}.pt`` where the hash covers every field of ``cfg``
    (``sam_variant`` and ``looksam_alpha`` only when ``sam_variant`` is not the default ``"sam"``;
    for m-SAM runs, the revision of the m-SAM gradient), :data:`CACHE_VERSION` and ``source`` (a
    CIFAR-10 run and its stand-in never share a file). The device is not part of the key.
    """
    return cache_dir() / f"{cfg.dataset}-{cfg.model}-{cfg.label}-{_cache_key(cfg, source)}.pt"


def _cpu(state: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
    return None if state is None else {k: v.detach().cpu().clone() for k, v in state.items()}


def _result_payload(result: RunResult) -> dict:
    return {
        "cache_version": CACHE_VERSION,
        "config": dataclasses.asdict(result.config),
        "history": result.history.to_dict("records"),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "source": result.source,
        "is_standin": result.is_standin,
        "image_shape": list(result.image_shape),
        "num_classes": result.num_classes,
        "state_dict": result.state_dict,
        "best_state_dict": result.best_state_dict,
    }


def _make_result(cfg, history, best_epoch, stopped, bundle_info, state, best_state, from_cache, path) -> RunResult:
    source, is_standin, image_shape, num_classes = bundle_info
    final = history.iloc[-1]
    best_test = None if best_epoch is None else float(history.loc[history["epoch"] == best_epoch, "test_acc"].iloc[0])
    return RunResult(
        config=cfg, history=history, best_epoch=best_epoch, final_test_acc=float(final["test_acc"]),
        best_test_acc=best_test, stopped_early=stopped, source=source, is_standin=is_standin,
        image_shape=tuple(image_shape), num_classes=num_classes, state_dict=state, best_state_dict=best_state,
        from_cache=from_cache, path=path,
    )


def _load_cached(cfg: RunConfig, path: Path) -> RunResult | None:
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - an unreadable cache entry is a miss, not a failure
        warnings.warn(f"ignoring unreadable cached run {path} ({type(error).__name__}: {error})", stacklevel=3)
        return None
    if saved.get("cache_version") != CACHE_VERSION:
        return None
    history = pd.DataFrame.from_records(saved["history"])
    info = (saved["source"], saved["is_standin"], saved["image_shape"], saved["num_classes"])
    return _make_result(cfg, history, saved["best_epoch"], saved["stopped_early"], info,
                        saved["state_dict"], saved["best_state_dict"], True, path)


def run(cfg: RunConfig, *, cache: bool = True, device: str | torch.device | None = None,
        progress: bool = True, verbose: bool = True) -> RunResult:
    """Train the run ``cfg`` describes, or load it from the cache. Chapters 1, 2, 4, 7-9, 11-14.

    Steps: :func:`build_data` (prints the data source), then, unless the cache holds this run,
    :func:`build_model`, :func:`build_optimizer`, :func:`build_scheduler` and :func:`fit` with
    eval sets ``val`` (if any) and ``test``, early stopping on ``val_acc`` when
    ``cfg.patience`` is set. With ``cache=True`` the result is written to :func:`cache_path`
    (atomically) and an interrupted run resumes from a per-epoch checkpoint next to it.

    Args:
        cfg: the run.
        cache: read and write the result cache (``$SAM_COURSE_CACHE``).
        device: where to train; default ``"cuda"`` when available, else ``"cpu"``. Not part of
            the cache key: a run cached on one device is loaded on any other.
        progress: show the tqdm bar; verbose: print the data source and cache hits.

    Returns:
        A :class:`RunResult`; its ``state_dict`` tensors are on the CPU.
    """
    if not isinstance(cfg, RunConfig):
        raise ValueError(f"cfg must be a RunConfig, got {type(cfg).__name__}")
    run_data = build_data(cfg, verbose=verbose)
    bundle = run_data.bundle
    info = (bundle.source, bundle.is_standin, bundle.image_shape, bundle.num_classes)
    path = cache_path(cfg, bundle.source) if cache else None
    if path is not None and path.exists():
        result = _load_cached(cfg, path)
        if result is not None:
            if verbose:
                print(f"[sam_course.train] {cfg.label}: loaded cached run {path}")
            return result
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(cfg, bundle.image_shape, bundle.num_classes).to(device)
    optimizer = build_optimizer(cfg, model)
    checkpoint = None if path is None else path.with_name(path.stem + ".checkpoint")
    fitted = fit(
        model, optimizer, run_data.train, cfg.epochs,
        batch_size=cfg.batch_size, eval_sets=run_data.eval_sets, seed=cfg.seed,
        scheduler=build_scheduler(cfg, optimizer), checkpoint=checkpoint, resume=checkpoint is not None,
        patience=cfg.patience, monitor="val_acc", msam_m=cfg.msam_m,
        # LookSAM counts its own period (k = cfg.sam_every, see build_optimizer).
        sam_every=1 if cfg.sam_variant == "looksam" else cfg.sam_every, progress=progress,
        desc=cfg.label,
    )
    result = _make_result(cfg, fitted.history, fitted.best_epoch, fitted.stopped_early, info,
                          _cpu(model.state_dict()), _cpu(fitted.best_state), False, path)
    if path is not None:
        _atomic_save(_result_payload(result), path)
        with contextlib.suppress(FileNotFoundError):
            checkpoint.unlink()
    return result


def run_seeds(cfg: RunConfig, seeds: Iterable[int], **kwargs) -> list[RunResult]:
    """:func:`run` once per seed (``cfg`` with ``seed`` replaced); ``kwargs`` go to :func:`run`."""
    return [run(cfg.replace(seed=seed), **kwargs) for seed in seeds]


def results_table(results: Iterable[RunResult]) -> pd.DataFrame:
    """One row per run: ``label``, every config field, and the run's final numbers.

    Final numbers: ``final_test_acc``, ``best_epoch``, ``best_test_acc``, ``epochs_run``,
    ``final_train_acc``, ``final_train_clean_acc``, ``final_train_memorized``, ``train_seconds``.
    """
    rows = []
    for r in results:
        last = r.history.iloc[-1]
        rows.append({
            "label": r.label,
            **dataclasses.asdict(r.config),
            "final_test_acc": r.final_test_acc,
            "best_epoch": r.best_epoch,
            "best_test_acc": r.best_test_acc,
            "epochs_run": int(last["epoch"]),
            "final_train_acc": float(last["train_acc"]),
            "final_train_clean_acc": float(last["train_clean_acc"]),
            "final_train_memorized": float(last["train_memorized"]),
            "train_seconds": r.train_seconds,
        })
    return pd.DataFrame.from_records(rows)


def summarize(results: Iterable[RunResult], metrics: Sequence[str] = ("final_test_acc",),
              by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metrics`` over runs that differ only by seed.

    Args:
        results: runs, e.g. from :func:`run_seeds` for several configurations.
        metrics: columns of :func:`results_table` to aggregate.
        by: columns to group by; default ``label`` plus every config field (except ``seed``)
            that is not the same in all runs.

    Returns:
        One row per group with ``{metric}_mean``, ``{metric}_std`` (sample standard deviation,
        NaN for a single run) and ``n`` (number of runs). Chapters 7, 11, 12 and 14.
    """
    table = results_table(results)
    if table.empty:
        raise ValueError("results must hold at least one RunResult")
    for name in metrics:
        if name not in table.columns:
            raise ValueError(f"metrics must be columns of results_table, got {name!r}")
    if by is None:
        fields = [f.name for f in dataclasses.fields(RunConfig) if f.name != "seed"]
        by = ["label"] + [f for f in fields if table[f].astype(str).nunique(dropna=False) > 1]
    by = list(by)
    grouped = table.groupby(by, dropna=False, sort=False)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out["n"] = grouped.size()
    return out.reset_index()
