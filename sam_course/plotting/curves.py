"""Curves over training: one line per optimizer, and the mean ± std band of several seeds.

:func:`plot_histories` draws curves per optimizer (losses, accuracies) for the training chapters;
:func:`seed_curves` and :func:`plot_seed_band` summarize several seeds of one setup (chapters 7
and 11). A run is a :class:`sam_course.train.RunResult` or anything with its ``history``
(a DataFrame with an ``epoch`` column) and ``config.seed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .._checks import check_instance
from .style import color_for, label_axes

__all__ = ["plot_histories", "seed_curves", "plot_seed_band"]


def plot_histories(
    ax: plt.Axes,
    histories: Mapping[str, object],
    title: str,
    xlabel: str,
    ylabel: str,
    logy: bool = False,
):
    """One line per optimizer, in the optimizer's colour (any chapter that compares runs).

    Args:
        ax: the axes to draw in.
        histories: label -> curve. A curve is a pandas Series (x = its index), a
            pair ``(x, y)``, or a 1-D sequence or tensor (x = 0, 1, ...).
            Labels pick colours through :func:`~sam_course.plotting.style.color_for`.
        title, xlabel, ylabel: passed to :func:`~sam_course.plotting.style.label_axes` (the legend is drawn too).
        logy: logarithmic y axis.

    Returns:
        The axes.
    """
    check_instance("histories", histories, Mapping, "mapping of label -> curve")
    if not histories:
        raise ValueError("histories must hold at least one curve")
    for label, curve in histories.items():
        if hasattr(curve, "index") and hasattr(curve, "to_numpy"):
            x, y = np.asarray(curve.index), np.asarray(curve.to_numpy(), dtype=float)
        elif isinstance(curve, tuple) and len(curve) == 2:
            x, y = np.asarray(curve[0], dtype=float), np.asarray(curve[1], dtype=float)
        else:
            y = np.asarray(curve.detach().cpu() if isinstance(curve, torch.Tensor) else curve, dtype=float)
            x = np.arange(len(y))
        if y.ndim != 1 or x.shape != y.shape:
            raise ValueError(f"histories[{label!r}] must be one curve (1-D y with matching x), got shape {y.shape}")
        ax.plot(x, y, color=color_for(label), lw=2, label=label)
    if logy:
        ax.set_yscale("log")
    return label_axes(ax, title, xlabel, ylabel)


def seed_curves(results: Iterable, column: str) -> pd.DataFrame:
    """One history column of several runs side by side: one column per seed, indexed by epoch (chapters 7 and 11).

    Args:
        results: runs of one setup (:class:`sam_course.train.RunResult` or alike: ``.history``
            a DataFrame with an ``epoch`` column, ``.config.seed``).
        column: the history column, e.g. ``"test_acc"`` (its units are the history's).

    Returns:
        A DataFrame indexed by epoch with one column per run, named by its seed; epochs that a
        run lacks are NaN (the runs are aligned on the epoch, as ``pd.concat(axis=1)`` does).
    """
    check_instance("column", column, str)
    results = list(results)
    missing = [r.config.seed for r in results if column not in r.history.columns]
    if missing:
        raise ValueError(f"column {column!r} is not a history column of the runs with seeds {missing}")
    return pd.concat([r.history.set_index("epoch")[column].rename(r.config.seed) for r in results], axis=1)


def plot_seed_band(ax: plt.Axes, results: Iterable, column: str, *, color, label: str, lw: float = 2,
                   alpha: float = 0.2) -> tuple[pd.Series, pd.Series]:
    """The mean over seeds of one history column as a line, and mean ± std as a band (chapters 7 and 11).

    The std is the sample standard deviation over the seeds (``ddof=1``); where it is undefined
    (one seed) it counts as 0, so a single run draws its line with no band.

    Args:
        ax: the axes to draw in.
        results, column: as in :func:`seed_curves`.
        color: colour of the line and the band, e.g. ``color_for(results[0].label)``.
        label: legend entry of the line (the band has none).
        lw: line width in points.
        alpha: opacity of the band.

    Returns:
        The pair ``(mean, std)`` of Series indexed by epoch, in the column's units.
    """
    curves = seed_curves(results, column)
    mean, std = curves.mean(axis=1), curves.std(axis=1).fillna(0)
    ax.plot(mean.index, mean, color=color, lw=lw, label=label)
    ax.fill_between(mean.index, mean - std, mean + std, color=color, alpha=alpha, lw=0)
    return mean, std
