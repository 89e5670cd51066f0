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

from .._checks import warn_at_caller

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_save",
    "missing_entries",
    "move_aside",
    "remove_stale_temporaries",
    "cuda_indices",
    "order_generators",
    "rng_state",
    "set_rng_state",
    "save_checkpoint",
    "load_checkpoint",
]

#: Version of the checkpoint's layout; a checkpoint of another format is refused.
CHECKPOINT_FORMAT = 1


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files that killed saves of ``path`` left behind; returns those removed.

    A temporary is ``.{name}.{pid}.{random}.tmp`` next to ``path``; it is stale when process
    ``pid`` no longer runs (a live writer's file is left alone). Temporaries without a pid, from
    saves before the pid was recorded, are stale too.
    """
    removed = []
    prefix = _temporary_prefix(path)
    for candidate in path.parent.glob(f"{prefix}*.tmp"):
        pid = candidate.name[len(prefix):].split(".", 1)[0]
        # A live writer's temporary (this process's own included: another thread may be saving) stays.
        if pid.isdigit() and (int(pid) == os.getpid() or _alive(int(pid))):
            continue
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _fsync_folder(folder: Path) -> None:
    # A folder's entry (the new name) is durable only once the folder itself is synced; some
    # systems cannot open a folder for that, and lose nothing else by skipping it.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: readers never see half a file.

    The temporary is flushed and fsynced, and so is the folder, before ``os.replace`` puts it in
    place (then the folder once more, for the new name): a crash leaves the old file or the new
    one, never a truncated one. Temporaries of earlier saves that were killed are removed first
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_temporary_prefix(path)}{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a cache is readable like any file
        _fsync_folder(path.parent)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def move_aside(path: Path, reason: str, what: str = "file") -> Path:
    """Rename an unusable ``path`` to ``path.corrupt`` (replacing an older one) and warn naming both.

    Used for a checkpoint or cached run that cannot be read or lacks what it must hold: the run
    starts over instead of failing on every rerun, and the file is kept for a look.
    """
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    warn_at_caller(f"{what} {path} is unusable ({reason}); moved it to {aside} and starting over", RuntimeWarning)
    return aside


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


#: What a checkpoint must hold (and the types of the parts :func:`load_checkpoint` reads directly).
_REQUIRED = {"format": int, "seed": int, "epoch": int, "model": dict, "optimizer": dict, "rng": dict,
             "history": list, "best": dict, "stopped": bool}


def missing_entries(saved, required: dict) -> str | None:
    """Why ``saved`` is not a dict with every key of ``required`` of its type, or None.

    ``required`` maps a key to a type or a tuple of types (as ``isinstance`` takes them); the
    checkpoints here and the cached runs of ``sam_course.train.cache`` use it.
    """
    if not isinstance(saved, dict):
        return f"it holds a {type(saved).__name__}, not a dict"
    for key, kind in required.items():
        if key not in saved:
            return f"no {key!r} entry"
        if not isinstance(saved[key], kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            return f"its {key!r} entry is a {type(saved[key]).__name__}, not a {names}"
    return None


def _missing(saved) -> str | None:
    """Why ``saved`` is not a checkpoint's content, or None."""
    problem = missing_entries(saved, _REQUIRED)
    if problem:
        return problem
    if "scheduler" not in saved:
        return "no 'scheduler' entry"
    if not all(k in saved["rng"] for k in ("torch", "cuda", "generators")):
        return "its 'rng' entry lacks generator states"
    return None


def load_checkpoint(path: Path, seed: int, epochs: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, generators: list[torch.Generator],
                    cuda: list[int]) -> tuple[list[dict], dict, bool] | None:
    """Restore everything :func:`save_checkpoint` wrote; returns ``(history, best, stopped)``.

    Model, optimizer, scheduler and generators are loaded in place. A file that cannot be read
    (truncated, zeroed, empty) or lacks an entry is moved aside (:func:`move_aside`, with a
    warning) before anything is loaded, and None is returned: the run starts over.

    Raises:
        ValueError: for a checkpoint of another seed or format, or one beyond ``epochs``.
    """
    # Generator states must stay on the CPU; load_state_dict moves the rest where it belongs.
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is moved aside, not retried forever
        move_aside(path, f"{type(error).__name__}: {error}", "checkpoint")
        return None
    if isinstance(saved, dict) and "format" in saved and saved.get("format") != CHECKPOINT_FORMAT:
        problem = None  # another layout: refused below, not moved
    else:
        problem = _missing(saved)
    if problem is not None:
        move_aside(path, problem, "checkpoint")
        return None
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
