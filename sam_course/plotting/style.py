"""One look for every figure of the book: a seaborn style and fixed colours per optimizer.

A base optimizer and its SAM version share a hue family (SGD blue, SAM-SGD orange; Adam green,
SAM-Adam red; ...) and keep it in every chapter, so a reader can compare figures at a glance.
Every chapter imports this module, so it imports matplotlib and seaborn only.
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import seaborn as sns

from .._checks import check_instance

__all__ = ["COLORS", "color_for", "use_style", "label_axes"]

_PALETTE = sns.color_palette("tab10")

COLORS: dict[str, tuple[float, float, float]] = {
    "SGD": _PALETTE[0],
    "SAM-SGD": _PALETTE[1],
    "Adam": _PALETTE[2],
    "SAM-Adam": _PALETTE[3],
    "Adagrad": _PALETTE[4],
    "SAM-Adagrad": _PALETTE[5],
    "ASAM": _PALETTE[6],
    "GD": _PALETTE[7],
    "m-SAM": _PALETTE[8],
    "other": _PALETTE[9],
}
"""The colour (RGB in [0, 1]) of each optimizer label; ``"other"`` for any label not listed."""


def color_for(name: str) -> tuple[float, float, float]:
    """The colour of optimizer ``name`` ("SGD", "SAM-SGD", "Adam", "SAM-Adam", ...).

    Matching ignores case and accepts "SAM" alone (the SAM-SGD colour) and "X+SAM" spellings;
    an unknown name gets the neutral "other" colour.
    """
    key = check_instance("name", name, str).strip()
    lowered = {k.lower(): k for k in COLORS}
    if key.lower() in lowered:
        return COLORS[lowered[key.lower()]]
    compact = key.replace(" ", "").lower()
    if compact == "sam":
        return COLORS["SAM-SGD"]
    # The bases of sam_course.base_optimizers, spelled out: this module must not import torch.
    for base in ("sgd", "adam", "adagrad"):
        if compact in (f"{base}+sam", f"sam+{base}", f"sam{base}", f"{base}-sam"):
            return COLORS[f"SAM-{lowered[base]}"]
    return COLORS["other"]


def use_style() -> None:
    """Apply the book's matplotlib/seaborn style (call once at the top of a chapter)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=_PALETTE)
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "axes.titleweight": "bold",
            "legend.frameon": False,
        }
    )


def label_axes(ax: plt.Axes, title: str, xlabel: str, ylabel: str, legend: bool = True) -> plt.Axes:
    """Set title and axis labels (every figure of the book has both) and draw the legend."""
    check_instance("ax", ax, mpl.axes.Axes, "matplotlib Axes")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend()
    return ax
