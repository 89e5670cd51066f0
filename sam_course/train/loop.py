"""The one training loop of every chapter that trains (1, 2, 4, 7, 8, 9, 11-14): :func:`fit`.

One epoch draws a fresh seeded permutation of the training examples, hands each minibatch to a
step function (:mod:`~sam_course.train.steps`), then evaluates the model on the training set and
every evaluation set: one history row. Between epochs it tracks the best epoch for early stopping
and writes a checkpoint (:mod:`~sam_course.train.checkpoint`) from which a resumed run continues
bit for bit.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .._checks import check_bool, check_int, check_optional_int
from .._params import LossFn
from ..optim.friendly import FriendlySAM
from ..optim.momentum_sam import MomentumSAM
from ..optim.sam import SAM
from ..optim.schedules import ScheduledSAM
from ..optim.variants import LookSAM
from .checkpoint import cuda_indices, load_checkpoint, order_generators, save_checkpoint
from .evaluation import evaluate_tensors
from .seeds import derive_seed
from .steps import MSAMStep, Step, optimizer_step
from .tensors import DatasetTensors, as_tensors, device_of

__all__ = ["FitResult", "fit"]


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


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data,
    epochs: int,
    *,
    batch_size: int | None = None,
    eval_sets: Mapping[str, object] | None = None,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    scheduler=None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    patience: int | None = None,
    monitor: str = "val_acc",
    msam_m: int | None = None,
    step: Step | None = None,
    train_mode: bool = True,
    eval_batch_size: int = 1000,
    progress: bool = True,
    desc: str = "training",
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs and record one history row per epoch.

    The same loop serves plain optimizers and the SAM family: by default each step is
    :func:`~sam_course.train.steps.optimizer_step`, ``optimizer.step(closure)``. SAM calls the
    closure twice; while it is perturbed (``optimizer.perturbed``) the closure runs under
    :func:`~sam_course.optim.frozen_batchnorm_stats`, so BatchNorm's running statistics see each
    batch once, at ``w``. SAM every ``k`` steps is the optimizer
    :class:`~sam_course.optim.variants.SAMEveryK`, LookSAM is
    :class:`~sam_course.optim.variants.LookSAM` (chapter 14). With ``msam_m`` each step is
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
        optimizer: any ``torch.optim.Optimizer`` over ``model``'s parameters, or one of the SAM
            family (:class:`~sam_course.optim.SAM`, ``SAMEveryK``, ``LookSAM``).
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
            (via :func:`~sam_course.train.derive_seed`; the caller's global generator is restored
            afterwards).
        scheduler: an LR scheduler stepped once after every epoch (checkpointed too).
        checkpoint: a file written after every epoch (atomically): model, optimizer (SAM's
            includes the base optimizer's), scheduler, epoch, history, best state, generator states.
        resume: continue from ``checkpoint`` if that file exists (else start afresh). The result
            equals an uninterrupted run bit for bit on the CPU. A checkpoint that cannot be read
            or lacks an entry is renamed ``<name>.corrupt`` (with a warning) and the run starts afresh.
        patience: stop after this many epochs without improvement of ``monitor``; None never
            stops early.
        monitor: the history column that defines the best epoch: maximized if it ends in
            ``_acc``, minimized if in ``_loss``. Ignored (no best epoch) when absent, unless
            ``patience`` is set, which then raises.
        msam_m: m-SAM chunk size (needs a SAM optimizer other than LookSAM and, for a dataset, a
            ``batch_size`` that is a multiple of it); selects :class:`~sam_course.train.steps.MSAMStep`.
        step: the per-batch update, ``step(model, optimizer, loss_fn, x, y) -> loss`` (a 0-d
            tensor, the batch loss before the update; :mod:`~sam_course.train.steps`); default
            :func:`~sam_course.train.steps.optimizer_step`. Not together with ``msam_m``.
            Chapter 4 trains with the exact SAM gradient this way.
        train_mode: put the model in training mode for each epoch's steps (BatchNorm on batch
            statistics, dropout on); False keeps the mode the caller set, for a step that needs
            the loss to be a fixed function of the weights (chapter 4).
        eval_batch_size: examples per forward pass in evaluation.
        progress: a ``tqdm.auto`` bar over epochs (``TQDM_DISABLE=1`` also turns it off).
        desc: the bar's label.

    Returns:
        A :class:`FitResult`. The model is left at its last epoch's weights.

    Raises:
        ValueError: on bad arguments, or a checkpoint written with another seed or further than
            ``epochs``.
    """
    epochs = check_int("epochs", epochs, low=0)
    seed = check_int("seed", seed, low=0)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size, low=1)
    batch_size = _check_batch_size(train_data, batch_size)
    step, msam_m = _choose_step(optimizer, step, msam_m, batch_size)
    eval_sets = _check_eval_sets(eval_sets)
    maximize = _check_monitor(monitor)
    patience = check_optional_int("patience", patience, low=1)
    checkpoint = None if checkpoint is None else Path(checkpoint)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    train_mode = check_bool("train_mode", train_mode)
    training = _prepare(model, optimizer, train_data, eval_sets, loss_fn or nn.CrossEntropyLoss(), step, msam_m,
                        batch_size, train_mode, eval_batch_size, seed)
    record = _Record(_monitored(monitor, patience, training), maximize, patience)
    with torch.random.fork_rng(devices=training.cuda):
        torch.manual_seed(derive_seed(seed, "train"))
        saved = None
        if resume and checkpoint.exists():
            # None when the file was unusable and moved aside (with a warning): start over.
            saved = load_checkpoint(checkpoint, seed, epochs, model, optimizer, scheduler,
                                    training.generators, training.cuda)
        if saved is not None:
            record.resume(saved)
        else:
            record.start(training.row(0, math.nan, optimizer.param_groups[0]["lr"], 0.0, 0), model)
        _train_epochs(training, record, epochs, scheduler, checkpoint, seed, progress, desc)
    return record.result()


# --------------------------------------------------------------------------- argument checks


def _check_batch_size(train_data, batch_size) -> int | None:
    if isinstance(train_data, DataLoader):
        if batch_size is not None:
            raise ValueError("batch_size must be None when train_data is a DataLoader (it has its own)")
        return None
    return check_int("batch_size", batch_size, low=1)


def _choose_step(optimizer, step, msam_m, batch_size: int | None) -> tuple[Step, int | None]:
    """The step function and the m-SAM chunk size (None without m-SAM), checked against the optimizer."""
    if msam_m is None:
        if step is not None and not callable(step):
            raise ValueError(f"step must be a callable step(model, optimizer, loss_fn, x, y) -> loss, got {step!r}")
        return (optimizer_step if step is None else step), None
    msam_m = check_int("msam_m", msam_m, low=1)
    if step is not None:
        raise ValueError("step must be None with msam_m (msam_m selects the m-SAM step)")
    if not isinstance(optimizer, SAM):
        raise ValueError(f"msam_m needs a sam_course.optim.SAM optimizer, got {type(optimizer).__name__}")
    if batch_size is not None and batch_size % msam_m:
        raise ValueError(f"batch_size must be a multiple of msam_m, got batch_size={batch_size}, msam_m={msam_m}")
    if isinstance(optimizer, LookSAM):
        # m-SAM would bypass LookSAM.step, which schedules its own full steps (its k).
        raise ValueError("msam_m must be None with a LookSAM optimizer (LookSAM has no m-SAM step)")
    if isinstance(optimizer, (MomentumSAM, ScheduledSAM, FriendlySAM)):
        # Their step is not SAM's first_step + second_step around one gradient: m-SAM would bypass
        # the momentum's perturbation, the schedule's decision or F-SAM's average.
        raise ValueError(f"msam_m must be None with a {type(optimizer).__name__} optimizer (it has no m-SAM step)")
    return MSAMStep(msam_m), msam_m


def _check_eval_sets(eval_sets) -> dict:
    eval_sets = dict(eval_sets or {})
    for name in eval_sets:
        if not isinstance(name, str) or not name.isidentifier() or name == "train":
            raise ValueError(f"eval_sets names must be identifiers other than 'train', got {name!r}")
    return eval_sets


def _check_monitor(monitor) -> bool:
    """True when ``monitor`` is maximized (an ``_acc`` column), False when minimized (``_loss``)."""
    maximize = isinstance(monitor, str) and monitor.endswith("_acc")
    if not (maximize or isinstance(monitor, str) and monitor.endswith("_loss")):
        raise ValueError(f"monitor must name an '_acc' or '_loss' column of the history, got {monitor!r}")
    return maximize


def _monitored(monitor: str, patience: int | None, training: "_Training") -> str | None:
    """``monitor`` when the history will have that column, else None (an error with ``patience``)."""
    columns = {"train_loss", "train_acc", "train_clean_acc"}
    for name, tensors in training.evals.items():
        columns |= {f"{name}_loss", f"{name}_acc"} | ({f"{name}_clean_acc"} if tensors.clean is not None else set())
    if monitor in columns:
        return monitor
    if patience is not None:
        raise ValueError(f"patience needs the monitored column {monitor!r}; the history has {sorted(columns)}")
    return None


# --------------------------------------------------------------------------- one epoch


@dataclass
class _Training:
    """What every epoch uses: the model and its step, the data as tensors, the generators."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    step: Step
    train_data: object
    train: DatasetTensors
    evals: dict[str, DatasetTensors]
    batch_size: int | None
    msam_m: int | None
    train_mode: bool
    eval_batch_size: int
    order: torch.Generator
    generators: list[torch.Generator]
    cuda: list[int]

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The epoch's minibatches, on the model's device."""
        device = self.train.targets.device
        if isinstance(self.train_data, DataLoader):
            for x, y in self.train_data:
                yield x.to(device), y.to(device)
            return
        # Indexing the in-memory tensors with a seeded permutation costs about a tenth of a
        # DataLoader's per-example fetch and collate, and is reproducible by construction.
        permutation = torch.randperm(len(self.train), generator=self.order).to(device)
        for index in permutation.split(self.batch_size):
            yield self.train.inputs[index], self.train.targets[index]

    def train_epoch(self, steps: int) -> tuple[float, int]:
        """One pass over the batches after ``steps`` earlier steps.

        Returns the example-weighted mean of the batch losses (NaN if no step) and the new step count.
        """
        if self.train_mode:
            self.model.train()
        total, seen = None, 0
        for x, y in self.batches():
            if self.msam_m is not None:
                keep = len(y) - len(y) % self.msam_m
                if keep == 0:
                    continue
                x, y = x[:keep], y[:keep]
            loss = self.step(self.model, self.optimizer, self.loss_fn, x, y)
            loss = loss.detach().double() * len(y)
            steps += 1
            # Summing on the device and reading the total once avoids a host sync per step on a GPU.
            total = loss if total is None else total + loss
            seen += len(y)
        return (float(total) / seen if seen else math.nan), steps

    def row(self, epoch: int, batch_loss: float, lr: float, seconds: float, steps: int) -> dict[str, float]:
        """The history row of ``epoch``: the evaluations after it, and what the epoch measured."""
        start = time.perf_counter()
        row: dict[str, float] = {"epoch": epoch, "steps": steps}
        stats = evaluate_tensors(self.model, self.train, self.loss_fn, self.eval_batch_size)
        row["train_loss"] = stats["loss"]
        row["train_acc"] = stats["acc"]
        row["train_clean_acc"] = stats.get("clean_acc", stats["acc"])
        row["train_memorized"] = stats.get("memorized", math.nan)
        for name, tensors in self.evals.items():
            for key, value in evaluate_tensors(self.model, tensors, self.loss_fn, self.eval_batch_size).items():
                row[f"{name}_{key}"] = value
        row["batch_loss"] = batch_loss
        row["lr"] = lr
        row["seconds"] = seconds
        row["eval_seconds"] = time.perf_counter() - start
        return row


def _prepare(model, optimizer, train_data, eval_sets: dict, loss_fn: LossFn, step: Step, msam_m: int | None,
             batch_size: int | None, train_mode: bool, eval_batch_size: int, seed: int) -> _Training:
    """The data as tensors on the model's device, and the seeded generator of the data order."""
    device = device_of(model)
    train = as_tensors(train_data).to(device)
    evals = {name: as_tensors(d).to(device) for name, d in eval_sets.items()}
    for name, tensors in (("train_data", train), *evals.items()):
        if len(tensors) == 0:
            raise ValueError(f"{name} must hold at least one example")
    order = torch.Generator().manual_seed(derive_seed(seed, "order"))
    return _Training(model, optimizer, loss_fn, step, train_data, train, evals, batch_size, msam_m, train_mode,
                     eval_batch_size, order, order_generators(train_data, order), cuda_indices(model))


# --------------------------------------------------------------------------- the run


class _Record:
    """The history so far, the best epoch and whether early stopping has fired."""

    def __init__(self, monitor: str | None, maximize: bool, patience: int | None) -> None:
        self.monitor, self.maximize, self.patience = monitor, maximize, patience
        self.history: list[dict] = []
        # A plain dict: it is stored in checkpoints as it is.
        self.best: dict = {"epoch": None, "value": None, "state": None}
        self.stopped = False

    def start(self, row: dict, model: nn.Module) -> None:
        """Begin with row 0, the model before training."""
        self.history.append(row)
        if self.monitor is not None:
            self.best = {"epoch": 0, "value": row[self.monitor], "state": copy.deepcopy(model.state_dict())}

    def resume(self, saved: tuple[list[dict], dict, bool]) -> None:
        """Continue from a checkpoint's ``(history, best, stopped)``."""
        self.history, self.best, self.stopped = saved

    def add(self, epoch: int, row: dict, model: nn.Module) -> None:
        """Append ``row``; keep the weights if ``monitor`` improved; stop after ``patience`` epochs without."""
        self.history.append(row)
        if self.monitor is None:
            return
        value = row[self.monitor]
        best = self.best["value"]
        improved = not math.isnan(value) and (best is None or (value > best if self.maximize else value < best))
        if improved:
            self.best = {"epoch": epoch, "value": value, "state": copy.deepcopy(model.state_dict())}
        self.stopped = self.patience is not None and epoch - self.best["epoch"] >= self.patience

    def result(self) -> FitResult:
        return FitResult(
            history=pd.DataFrame.from_records(self.history),
            best_epoch=self.best["epoch"],
            best_state=self.best["state"],
            stopped_early=self.stopped,
            monitor=self.monitor,
        )


def _train_epochs(training: _Training, record: _Record, epochs: int, scheduler, checkpoint: Path | None,
                  seed: int, progress: bool, desc: str) -> None:
    """Epochs ``len(history) .. epochs``, each one history row, until done or stopped early."""
    from tqdm.auto import tqdm

    optimizer = training.optimizer
    bar = tqdm(total=epochs, initial=len(record.history) - 1, desc=desc, unit="epoch",
               **({} if progress else {"disable": True}))
    try:
        for epoch in range(len(record.history), epochs + 1):
            if record.stopped:
                break
            lr = optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            batch_loss, steps = training.train_epoch(record.history[-1]["steps"])
            seconds = time.perf_counter() - start
            if scheduler is not None:
                scheduler.step()
            row = training.row(epoch, batch_loss, lr, seconds, steps)
            record.add(epoch, row, training.model)
            if checkpoint is not None:
                save_checkpoint(checkpoint, seed=seed, epoch=epoch, model=training.model, optimizer=optimizer,
                                scheduler=scheduler, generators=training.generators, cuda=training.cuda,
                                history=record.history, best=record.best, stopped=record.stopped)
            bar.update(1)
            postfix = {"train_loss": f"{row['train_loss']:.3f}"}
            if "test_acc" in row:
                postfix["test_acc"] = f"{row['test_acc']:.3f}"
            bar.set_postfix(postfix, refresh=False)
    finally:
        bar.close()
