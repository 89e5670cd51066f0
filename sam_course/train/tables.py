"""Runs side by side: one row per run, and means with spreads over seeds (chapters 7, 11, 12, 14)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from .._checks import check_instance, check_items, check_real
from .cache import RunResult
from .config import RunConfig

__all__ = ["results_table", "summarize", "RunsSummary", "runs_summary"]


def results_table(results: Iterable[RunResult]) -> pd.DataFrame:
    """One row per run: ``label``, every config field, and the run's final numbers.

    Final numbers: ``final_test_acc``, ``best_epoch``, ``best_test_acc``, ``epochs_run``,
    ``final_train_acc``, ``final_train_clean_acc``, ``final_train_memorized``, ``train_seconds``.
    """
    if isinstance(results, (str, bytes)) or not isinstance(results, Iterable):
        check_instance("results", results, (list, tuple), "list or tuple of RunResult")
    rows = []
    for r in check_items("results", list(results), RunResult, "RunResult"):
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
        results: runs, e.g. from :func:`~sam_course.train.run_seeds` for several configurations.
        metrics: columns of :func:`results_table` to aggregate.
        by: columns to group by; default ``label`` plus every config field (except ``seed``)
            that is not the same in all runs.

    Returns:
        One row per group with ``{metric}_mean``, ``{metric}_std`` (sample standard deviation,
        NaN for a single run) and ``n`` (number of runs). Chapters 7, 11, 12 and 14.

    Raises:
        ValueError: for no results, or a metric that is not a column of :func:`results_table`.
    """
    table = results_table(results)
    if table.empty:
        raise ValueError("results must hold at least one RunResult")
    for name in check_items("metrics", metrics, str, "str"):
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


@dataclass(frozen=True)
class RunsSummary:
    """What a chapter says about the runs it just trained or loaded (chapters 7 and 11).

    Attributes:
        n_runs: how many runs.
        n_cached: how many of them came from the run cache.
        trained_minutes: training plus evaluation time of all of them, in minutes of wall time on
            the machine that trained them (the ``seconds`` and ``eval_seconds`` columns).
        wall_seconds: the wall time the caller measured around training or loading them.
    """

    n_runs: int
    n_cached: int
    trained_minutes: float
    wall_seconds: float

    def text(self, describe: str) -> str:
        """One line for the chapter's output, after the profile's ``describe()``."""
        return (f"{describe} | {self.n_runs} runs, {self.n_cached} loaded from the cache, "
                f"{self.wall_seconds:.0f} s in this cell; {self.trained_minutes:.1f} min of training and evaluation "
                "when they were trained (wall time on the machine that trained them)")


def runs_summary(results: Iterable[RunResult], wall_seconds: float) -> RunsSummary:
    """Count ``results``, those loaded from the cache, and the minutes they took to train."""
    results = check_items("results", list(results), RunResult, "RunResult")
    wall_seconds = check_real("wall_seconds", wall_seconds, 0)
    seconds = sum(r.history[["seconds", "eval_seconds"]].to_numpy().sum() for r in results)
    return RunsSummary(len(results), sum(bool(r.from_cache) for r in results), float(seconds) / 60, float(wall_seconds))
