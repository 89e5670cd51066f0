"""Runs from a :class:`~sam_course.train.RunConfig`, cached on disk: :func:`run`, :class:`RunResult`.

A rebuild of the book trains nothing it has trained before: :func:`run` keys every result by a hash
of its configuration and data source (:func:`cache_key`), writes it atomically, and loads it on the
next call. Chapters 1, 2, 4, 7-9 and 11-14.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from .._checks import check_choice, check_instance, check_int
from .build import build_data, build_model, build_optimizer, build_scheduler
from .checkpoint import atomic_save, missing_entries, move_aside
from .config import RunConfig
from .loop import fit

__all__ = ["CACHE_VERSION", "CACHE_ENV_VAR", "RunResult", "cache_dir", "cache_key", "cache_path", "run", "run_seeds"]

#: Bump when a change to the training code changes results: every cached run becomes a miss.
CACHE_VERSION = 1
#: Environment variable naming the cache directory (default ``~/.cache/sam_course/runs``).
CACHE_ENV_VAR = "SAM_COURSE_CACHE"
_DEFAULT_CACHE = "~/.cache/sam_course/runs"
# Revision 2: m-SAM on Linear-only networks moved from the per-chunk loop to
# sam_course.optim.msam_lowrank; equal up to rounding, which a long run can amplify, so older m-SAM
# runs are not reused (other runs keep their keys).
_MSAM_GRADIENT_REVISION = 2


@dataclass
class RunResult:
    """The outcome of :func:`run`.

    Attributes:
        config: the :class:`~sam_course.train.RunConfig`.
        history: the :func:`~sam_course.train.fit` history (one row per epoch, row 0 before training).
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
        check_choice("which", which, ("final", "best"))
        state = self.state_dict if which == "final" else self.best_state_dict
        if state is None:
            raise ValueError("which='best' needs a validation split (config.val_fraction > 0)")
        model = build_model(self.config, self.image_shape, self.num_classes)
        model.load_state_dict(state)
        return model.eval()


def cache_dir() -> Path:
    """``$SAM_COURSE_CACHE`` if set, else ``~/.cache/sam_course/runs`` (created on first write)."""
    return Path(os.environ.get(CACHE_ENV_VAR) or _DEFAULT_CACHE).expanduser()


def cache_key(cfg: RunConfig, source: str) -> str:
    """The 20 hex digits that name ``cfg``'s cache file: a sha256 of the config, the version and ``source``.

    The hash covers every field of ``cfg`` (``sam_variant`` and ``looksam_alpha`` only when
    ``sam_variant`` is not the default ``"sam"``; for m-SAM runs, the revision of the m-SAM
    gradient), :data:`CACHE_VERSION` and ``source`` (a CIFAR-10 run and its stand-in never share a
    file). Module paths and the device are not part of it.
    """
    check_instance("cfg", cfg, RunConfig, "sam_course.train.RunConfig")
    check_instance("source", source, str)
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

    Named ``{dataset}-{model}-{label}-{cache_key}.pt`` in :func:`cache_dir`.
    """
    return cache_dir() / f"{cfg.dataset}-{cfg.model}-{cfg.label}-{cache_key(cfg, source)}.pt"


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


#: What a cached run must hold, and the types of its entries.
_REQUIRED = {"history": list, "best_epoch": (int, type(None)), "stopped_early": bool, "source": str,
             "is_standin": bool, "image_shape": list, "num_classes": int, "state_dict": dict,
             "best_state_dict": (dict, type(None))}


def _unusable(saved) -> str | None:
    """Why ``saved`` is not a cached run of this cache version, or None."""
    problem = missing_entries(saved, _REQUIRED)
    if problem:
        return problem
    if not saved["history"] or not all(isinstance(r, dict) and "test_acc" in r and "epoch" in r
                                       for r in saved["history"]):
        return "its history has no rows with 'epoch' and 'test_acc'"
    return None


def _load_cached(cfg: RunConfig, path: Path) -> RunResult | None:
    """The cached run at ``path``, or None: for another cache version (retrained and overwritten), or
    for a file that cannot be read or lacks an entry (moved aside to ``.corrupt`` with a warning)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - an unreadable cache entry is a miss, not a failure
        move_aside(path, f"{type(error).__name__}: {error}", "cached run")
        return None
    if isinstance(saved, dict) and "cache_version" in saved and saved["cache_version"] != CACHE_VERSION:
        return None  # written by other training code: a miss, overwritten by this run
    problem = _unusable(saved)
    if problem is None and "cache_version" not in saved:
        problem = "no 'cache_version' entry"
    if problem is not None:
        move_aside(path, problem, "cached run")
        return None
    history = pd.DataFrame.from_records(saved["history"])
    info = (saved["source"], saved["is_standin"], saved["image_shape"], saved["num_classes"])
    return _make_result(cfg, history, saved["best_epoch"], saved["stopped_early"], info,
                        saved["state_dict"], saved["best_state_dict"], True, path)


def run(cfg: RunConfig, *, cache: bool = True, device: str | torch.device | None = None,
        progress: bool = True, verbose: bool = True) -> RunResult:
    """Train the run ``cfg`` describes, or load it from the cache. Chapters 1, 2, 4, 7-9, 11-14.

    Steps: :func:`~sam_course.train.build_data` (prints the data source), then, unless the cache
    holds this run, :func:`~sam_course.train.build_model`, :func:`~sam_course.train.build_optimizer`,
    :func:`~sam_course.train.build_scheduler` and :func:`~sam_course.train.fit` with eval sets
    ``val`` (if any) and ``test``, early stopping on ``val_acc`` when ``cfg.patience`` is set.
    With ``cache=True`` the result is written to :func:`cache_path` (atomically) and an
    interrupted run resumes from a per-epoch checkpoint next to it.

    Args:
        cfg: the run.
        cache: read and write the result cache (``$SAM_COURSE_CACHE``).
        device: where to train; default ``"cuda"`` when available, else ``"cpu"``. Not part of
            the cache key: a run cached on one device is loaded on any other.
        progress: show the tqdm bar; verbose: print the data source and cache hits.

    Returns:
        A :class:`RunResult`; its ``state_dict`` tensors are on the CPU.
    """
    check_instance("cfg", cfg, RunConfig, "sam_course.train.RunConfig")
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
        patience=cfg.patience, monitor="val_acc", msam_m=cfg.msam_m, progress=progress, desc=cfg.label,
    )
    result = _make_result(cfg, fitted.history, fitted.best_epoch, fitted.stopped_early, info,
                          _cpu(model.state_dict()), _cpu(fitted.best_state), False, path)
    if path is not None:
        atomic_save(_result_payload(result), path)
        with contextlib.suppress(FileNotFoundError):
            checkpoint.unlink()
    return result


def run_seeds(cfg: RunConfig, seeds: Iterable[int], **kwargs) -> list[RunResult]:
    """:func:`run` once per seed (``cfg`` with ``seed`` replaced); ``kwargs`` go to :func:`run`."""
    check_instance("cfg", cfg, RunConfig, "sam_course.train.RunConfig")
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        check_instance("seeds", seeds, (list, tuple, range), "list, tuple or range of ints")
    seeds = [check_int(f"seeds[{i}]", seed, 0) for i, seed in enumerate(seeds)]
    return [run(cfg.replace(seed=seed), **kwargs) for seed in seeds]
