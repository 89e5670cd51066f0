"""Checkpoints that resume a run bit for bit, and files that readers never see half-written.

:func:`~sam_course.train.fit` writes a checkpoint after every epoch. Resuming must give the very
weights and history of an uninterrupted run (chapters 7-14 rebuild the book from cached runs), so
a checkpoint holds, besides model, optimizer and scheduler, the state of every random generator
that training reads: torch's global CPU generator (dropout), the CUDA generators of the model's
devices, the private generator of the data order and a ``DataLoader``'s own generator.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_save",
    "cuda_indices",
    "order_generators",
    "rng_state",
    "set_rng_state",
    "save_checkpoint",
    "load_checkpoint",
]

#: Version of the checkpoint's layout; a checkpoint of another format is refused.
CHECKPOINT_FORMAT = 1


def atomic_save(obj, path: Path) -> None:
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


def cuda_indices(model: nn.Module) -> list[int]:
    """Indices of the CUDA devices that hold ``model``'s parameters (empty on the CPU)."""
    return sorted({t.device.index or 0 for t in model.parameters() if t.device.type == "cuda"})


def order_generators(train_data, order: torch.Generator) -> list[torch.Generator]:
    """Every generator that decides the order of training examples: ``order``, and a DataLoader's own."""
    found = [order]
    if isinstance(train_data, DataLoader):
        for owner in (train_data, train_data.sampler, getattr(train_data.batch_sampler, "sampler", None)):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
                found.append(generator)
    return found


def rng_state(generators: list[torch.Generator], cuda: list[int]) -> dict:
    """The states of torch's global generator, of the ``cuda`` devices' and of ``generators``."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(i) for i in cuda],
        "generators": [g.get_state() for g in generators],
    }


def set_rng_state(state: dict, generators: list[torch.Generator], cuda: list[int]) -> None:
    """Restore a :func:`rng_state`.

    Raises:
        ValueError: if ``state`` holds another number of data-order generators.
    """
    torch.set_rng_state(state["torch"])
    for i, s in zip(cuda, state["cuda"]):
        torch.cuda.set_rng_state(s, i)
    if len(state["generators"]) != len(generators):
        raise ValueError("the checkpoint's data-order generators do not match train_data's")
    for g, s in zip(generators, state["generators"]):
        g.set_state(s)


def save_checkpoint(path: Path, *, seed: int, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, generators: list[torch.Generator], cuda: list[int], history: list[dict],
                    best: dict, stopped: bool) -> None:
    """Write (atomically) everything :func:`load_checkpoint` needs to continue after ``epoch``.

    ``history`` is the list of history rows so far, ``best`` the best-epoch record
    (``{"epoch", "value", "state"}``), ``stopped`` whether early stopping has fired.
    """
    atomic_save({
        "format": CHECKPOINT_FORMAT, "seed": seed, "epoch": epoch,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": rng_state(generators, cuda), "history": history, "best": best, "stopped": stopped,
    }, path)


def load_checkpoint(path: Path, seed: int, epochs: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, generators: list[torch.Generator], cuda: list[int]) -> tuple[list[dict], dict, bool]:
    """Restore everything :func:`save_checkpoint` wrote; returns ``(history, best, stopped)``.

    Model, optimizer, scheduler and generators are loaded in place.

    Raises:
        ValueError: for a checkpoint of another seed or format, or one beyond ``epochs``.
    """
    # Generator states must stay on the CPU; load_state_dict moves the rest where it belongs.
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("format") != CHECKPOINT_FORMAT or saved.get("seed") != seed:
        raise ValueError(
            f"checkpoint {path} was written with seed {saved.get('seed')!r} (format "
            f"{saved.get('format')!r}); this run has seed {seed} (format {CHECKPOINT_FORMAT})"
        )
    if saved["epoch"] > epochs:
        raise ValueError(f"checkpoint {path} is at epoch {saved['epoch']}, beyond epochs={epochs}")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"], generators, cuda)
    return saved["history"], saved["best"], saved["stopped"]
