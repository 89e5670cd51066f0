"""One look for every figure of the book: a seaborn style and fixed colours per optimizer.

A base optimizer and its SAM version share a hue family (SGD blue, SAM-SGD orange; Adam green,
SAM-Adam red; ...) and keep it in every chapter, so a reader can compare figures at a glance.

Chapter 6 adds the pictures of optimizers on 2-D test functions (:mod:`sam_course.planar`):
:func:`contour` of a landscape, :func:`trajectory` of one run, :func:`compare_trajectories` of a
base optimizer and its SAM version, :func:`outcome_map` of where runs from many starts end,
:func:`animate_trajectories` with :func:`to_html` for the rendered book, and :func:`explorer`, a
live ipywidgets version for Colab and Binder. :func:`plot_histories` draws curves per optimizer
(losses, accuracies) for the training chapters.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import matplotlib as mpl
import matplotlib.patheffects as patheffects
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.animation import Animation, FuncAnimation

from .. import planar as _functions

__all__ = [
    "COLORS",
    "color_for",
    "use_style",
    "label_axes",
    "contour",
    "trajectory",
    "compare_trajectories",
    "outcome_map",
    "plot_histories",
    "animate_trajectories",
    "to_html",
    "EXPLORER_PRESETS",
    "explorer",
]

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


def color_for(name: str) -> tuple[float, float, float]:
    """The colour of optimizer ``name`` ("SGD", "SAM-SGD", "Adam", "SAM-Adam", ...).

    Matching ignores case and accepts "SAM" alone (the SAM-SGD colour) and "X+SAM" spellings;
    an unknown name gets the neutral "other" colour.
    """
    key = name.strip()
    lowered = {k.lower(): k for k in COLORS}
    if key.lower() in lowered:
        return COLORS[lowered[key.lower()]]
    compact = key.replace(" ", "").lower()
    if compact == "sam":
        return COLORS["SAM-SGD"]
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
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend()
    return ax


# --------------------------------------------------------------------------
# 2-D test functions (chapters 1 and 6)
# --------------------------------------------------------------------------

_HALO = (patheffects.Stroke(linewidth=4.0, foreground="white", alpha=0.8), patheffects.Normal())


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _as_path(path, name: str = "path") -> np.ndarray:
    """``path`` as a float numpy array of shape ``(T, 2)``, ``T >= 1``."""
    if isinstance(path, torch.Tensor):
        path = path.detach().cpu().numpy()
    array = np.asarray(path, dtype=float)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != 2:
        raise ValueError(f"{name} must have shape (T, 2) with T >= 1, got {array.shape}")
    return array


def _window(function, window):
    if not isinstance(function, _functions.TestFunction):
        raise ValueError(f"function must be a sam_course.planar.TestFunction, got {type(function).__name__}")
    if window is None:
        return function.domain
    (xmin, xmax), (ymin, ymax) = _functions._parse_box(window)
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"window must have xmin < xmax and ymin < ymax, got {window!r}")
    return (xmin, xmax), (ymin, ymax)


def contour(
    ax: plt.Axes,
    function,
    n: int = 200,
    levels: int = 30,
    log: bool = False,
    window=None,
    colorbar: bool = True,
    mark_minima: bool = True,
    cmap: str = "viridis",
    title: str | None = None,
    lines: bool = True,
):
    """Filled contour plot of a 2-D test function, with its global minima marked (chapters 1 and 6).

    The function is evaluated on an ``n`` x ``n`` grid over ``window`` (its
    domain by default). With ``log=True`` the colours follow
    ``log10(f - min + δ)``, with ``min`` the smallest value on the grid and
    ``δ`` a thousandth of the range, so that a deep narrow well and a wide flat
    plain both show structure (Eggholder, Easom). The axes get an equal aspect
    ratio, so that SAM's ball of radius ρ looks round, labels ``x`` and ``y``,
    and the title ``title`` (the function's name when None). Global minima inside the
    window are drawn as white stars labelled "global minimum".

    Args:
        ax: the axes to draw in.
        function: a :class:`sam_course.planar.TestFunction`.
        n: grid points per side, an integer >= 2.
        levels: number of contour levels, an integer >= 2.
        log: colour by the logarithm of the height above the minimum.
        window: ``((xmin, xmax), (ymin, ymax))``; may reach outside the domain.
        colorbar: add a colour bar labelled with what the colours mean.
        mark_minima: draw the global minima that lie in the window.
        cmap: a matplotlib colour map name.
        title: the axes title; the function's name when None.
        lines: draw thin level lines over the colours (off in animations: the
            semi-transparent lines make every PNG frame about three times larger).

    Returns:
        The filled :class:`matplotlib.contour.QuadContourSet`.

    Raises:
        ValueError: on a bad function, ``n``, ``levels`` or window.
    """
    (xmin, xmax), (ymin, ymax) = _window(function, window)
    n = _check_int(n, "n", 2)
    levels = _check_int(levels, "levels", 2)
    xs = torch.linspace(xmin, xmax, n, dtype=torch.float64)
    ys = torch.linspace(ymin, ymax, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        Z = function(torch.stack((X, Y), dim=-1)).numpy()
    label = "f(x, y)"
    if log:
        span = float(Z.max() - Z.min())
        delta = 1e-3 * span if span > 0 else 1.0
        Z = np.log10(Z - Z.min() + delta)
        label = "log10(f - min + δ)"
    filled = ax.contourf(X.numpy(), Y.numpy(), Z, levels=levels, cmap=cmap)
    if lines:
        ax.contour(X.numpy(), Y.numpy(), Z, levels=levels, colors="k", linewidths=0.3, alpha=0.35)
    if colorbar:
        ax.figure.colorbar(filled, ax=ax, label=label, shrink=0.85)
    if mark_minima:
        inside = [(x, y) for x, y in function.minima if xmin <= x <= xmax and ymin <= y <= ymax]
        if inside:
            mx, my = zip(*inside)
            ax.plot(mx, my, ls="none", marker="*", ms=15, color="white", mec="black", mew=0.8,
                    label="global minimum", zorder=5)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(function.name if title is None else title)
    ax.grid(False)
    return filled


def trajectory(ax: plt.Axes, path, label: str, color=None, markers: bool = True, **line_kwargs):
    """Draw one optimizer path: a line in the optimizer's colour, a circle at the start, a cross at the end.

    Args:
        ax: the axes to draw in.
        path: the points visited, shape ``(T, 2)`` (a tensor from
            :func:`sam_course.planar.run_optimizer` or an array).
        label: legend entry, also the key of :func:`color_for` ("Adagrad", "SAM-Adagrad", ...).
        color: overrides ``color_for(label)``.
        markers: draw the start (white circle) and end (cross) markers; they
            carry no legend entry of their own.
        **line_kwargs: passed to ``ax.plot`` for the line (``lw``, ``alpha``...).

    Returns:
        The line's :class:`matplotlib.lines.Line2D`.
    """
    points = _as_path(path)
    color = color_for(label) if color is None else color
    # A white halo keeps the line visible over any colour of the contour map.
    style = {"lw": 2.0, "zorder": 4, "path_effects": _HALO} | line_kwargs
    (line,) = ax.plot(points[:, 0], points[:, 1], color=color, label=label, **style)
    if markers:
        ax.plot(points[0, 0], points[0, 1], marker="o", ms=8, mfc="white", mec=color, mew=2, ls="none", zorder=6)
        ax.plot(points[-1, 0], points[-1, 1], marker="X", ms=10, color=color, mec="black", mew=0.8, ls="none",
                zorder=6)
    return line


def compare_trajectories(
    function,
    start,
    base: str = "Adagrad",
    lr: float = 0.1,
    rho: float = 0.05,
    steps: int = 100,
    ax: plt.Axes | None = None,
    window=None,
    log: bool = False,
    n: int = 200,
    levels: int = 30,
    colorbar: bool = True,
    legend_loc: str = "upper left",
):
    """Run a base optimizer and its SAM version from one start and draw both over the contour (chapter 6).

    Both runs use :func:`sam_course.planar.run_optimizer` (projected onto the
    domain) with :func:`sam_course.planar.optimizer_factory`; the SAM run
    wraps the same base optimizer with the same ``lr``.

    Args:
        function: a :class:`sam_course.planar.TestFunction`.
        start: ``(x, y)`` in the domain.
        base: one of :data:`sam_course.planar.BASE_OPTIMIZERS`.
        lr: learning rate of both runs.
        rho: SAM's radius, in coordinate units.
        steps: optimizer steps of each run.
        ax: axes to draw in; a new figure when None.
        window, log, n, levels, colorbar: passed to :func:`contour`.
        legend_loc: where the legend goes (a matplotlib ``loc``).

    Returns:
        The pair ``(ax, paths)``, where ``paths`` maps ``base`` and ``"SAM-" + base`` to
        their trajectories, each of shape ``(steps + 1, 2)``.
    """
    if base not in _functions.BASE_OPTIMIZERS:
        raise ValueError(f"base must be one of {list(_functions.BASE_OPTIMIZERS)}, got {base!r}")
    paths = {
        label: _functions.run_optimizer(function, start, _functions.optimizer_factory(label, lr, rho=rho), steps)
        for label in (base, f"SAM-{base}")
    }
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 5.0))
    contour(ax, function, n=n, levels=levels, log=log, window=window, colorbar=colorbar,
            title=f"{function.name}: {base} vs SAM-{base}\nlr={lr:g}, ρ={rho:g}, {steps} steps")
    for label, path in paths.items():
        trajectory(ax, path, label)
    ax.legend(loc=legend_loc, fontsize="small", frameon=True)
    return ax, paths


def outcome_map(
    ax: plt.Axes,
    starts,
    outcomes: Sequence[str],
    colors: Mapping[str, object] | None = None,
    title: str = "Where each start ends",
    size: float = 30.0,
):
    """Scatter the starting points coloured by where their run ended (chapters 1 and 6).

    Args:
        ax: the axes to draw in (typically over a :func:`contour` without colour bar).
        starts: shape ``(N, 2)``.
        outcomes: ``N`` category names, e.g. "sharp minimum", "flat minimum", "elsewhere".
        colors: colour per category; its order is also the legend's order. Categories
            without a colour come after, in order of first appearance, with colours
            from seaborn's "colorblind" palette.
        title: the axes title.
        size: marker area in points².

    Returns:
        The axes; the legend lists every category with its count.
    """
    points = _as_path(starts, "starts")
    outcomes = [str(o) for o in outcomes]
    if len(outcomes) != len(points):
        raise ValueError(f"outcomes must have one entry per start ({len(points)}), got {len(outcomes)}")
    colors = dict(colors or {})
    present = set(outcomes)
    categories = [c for c in colors if c in present] + [c for c in dict.fromkeys(outcomes) if c not in colors]
    palette = sns.color_palette("colorblind", len(categories))
    for category, fallback in zip(categories, palette):
        mask = np.array([o == category for o in outcomes])
        ax.scatter(points[mask, 0], points[mask, 1], s=size, color=colors.get(category, fallback),
                   edgecolors="black", linewidths=0.4, label=f"{category} ({mask.sum()})", zorder=5)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small", frameon=True)
    return ax


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
            Labels pick colours through :func:`color_for`.
        title, xlabel, ylabel: passed to :func:`label_axes` (the legend is drawn too).
        logy: logarithmic y axis.

    Returns:
        The axes.
    """
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


def animate_trajectories(
    function,
    paths: Mapping[str, object],
    window=None,
    frames: int = 60,
    interval: int = 100,
    log: bool = False,
    title: str | None = None,
    n: int = 150,
    levels: int = 30,
    figsize: tuple[float, float] = (5.6, 4.6),
    dpi: int = 72,
    legend_loc: str = "upper left",
) -> FuncAnimation:
    """An animation of several optimizer paths growing over the contour of ``function`` (chapter 6).

    The paths are subsampled to at most ``frames`` frames (evenly spaced steps,
    first and last included), which keeps :func:`to_html`'s page small: each
    frame is one PNG. A path shorter than the longest stops at its last point.
    The figure is closed before returning, so a notebook shows only the
    animation, not a stray static copy.

    Args:
        function: a :class:`sam_course.planar.TestFunction`.
        paths: label -> path of shape ``(T, 2)``; labels pick colours through :func:`color_for`.
        window, log, n, levels: passed to :func:`contour`.
        frames: the most frames, an integer >= 1.
        interval: milliseconds between frames.
        title: title prefix; the function's name when None. Each frame adds its step.
        figsize, dpi: size and resolution of each frame.
        legend_loc: where the legend goes (a matplotlib ``loc``).

    Returns:
        A :class:`matplotlib.animation.FuncAnimation`; ``.steps`` holds the step shown in each frame.
    """
    if not paths:
        raise ValueError("paths must hold at least one path")
    arrays = {label: _as_path(path, f"paths[{label!r}]") for label, path in paths.items()}
    frames = _check_int(frames, "frames", 1)
    interval = _check_int(interval, "interval", 1)
    longest = max(len(a) for a in arrays.values())
    steps = np.unique(np.round(np.linspace(0, longest - 1, min(frames, longest))).astype(int))
    prefix = function.name if title is None else title

    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    contour(ax, function, n=n, levels=levels, log=log, window=window, colorbar=False, title=prefix, lines=False)
    lines, heads = {}, {}
    for label, array in arrays.items():
        color = color_for(label)
        (lines[label],) = ax.plot([], [], color=color, lw=2, label=label, zorder=4, path_effects=_HALO)
        (heads[label],) = ax.plot([], [], marker="o", ms=8, color=color, mec="black", ls="none", zorder=6)
        ax.plot(array[0, 0], array[0, 1], marker="o", ms=7, mfc="white", mec=color, mew=2, ls="none", zorder=5)
    ax.legend(loc=legend_loc, fontsize="small", frameon=True)
    fig.tight_layout()

    def draw(frame: int):
        step = int(steps[frame])
        for label, array in arrays.items():
            upto = min(step, len(array) - 1)
            lines[label].set_data(array[: upto + 1, 0], array[: upto + 1, 1])
            heads[label].set_data(array[upto : upto + 1, 0], array[upto : upto + 1, 1])
        ax.set_title(f"{prefix} — step {step}")
        return [*lines.values(), *heads.values()]

    animation = FuncAnimation(fig, draw, frames=len(steps), interval=interval, blit=False)
    animation.steps = steps
    plt.close(fig)
    return animation


# matplotlib's player draws its buttons with Font Awesome icons fetched from a CDN; the book
# must work offline, so the stylesheet link goes and each icon becomes plain text.
_PLAYER_ICONS = {
    "fa fa-minus": "&minus;",
    "fa fa-fast-backward": "|&#9664;&#9664;",
    "fa fa-step-backward": "|&#9664;",
    "fa fa-play fa-flip-horizontal": "&#9664;",
    "fa fa-pause": "||",
    "fa fa-play": "&#9654;",
    "fa fa-step-forward": "&#9654;|",
    "fa fa-fast-forward": "&#9654;&#9654;|",
    "fa fa-plus": "+",
}
_ICON = re.compile(r'<i class="(fa [^"]+)"></i>')
_STYLESHEET_LINK = re.compile(r"<link\b[^>]*>", re.IGNORECASE)


def to_html(animation: Animation, embed_limit_mb: float = 20.0) -> str:
    """The animation as self-contained HTML (JavaScript player, frames embedded as PNG) (chapter 6).

    Uses ``animation.to_jshtml()`` and removes its one external resource (a
    Font Awesome stylesheet for the player's buttons, replaced by text
    symbols), so that the page works offline. Show it with
    ``IPython.display.HTML(to_html(anim))``.

    Args:
        animation: e.g. from :func:`animate_trajectories`.
        embed_limit_mb: matplotlib's size limit for the embedded frames, in MB;
            beyond it matplotlib drops the remaining frames with a warning.

    Raises:
        ValueError: if ``animation`` is not a matplotlib animation or the limit is not > 0.
    """
    if not isinstance(animation, Animation):
        raise ValueError(f"animation must be a matplotlib Animation, got {type(animation).__name__}")
    if isinstance(embed_limit_mb, bool) or not isinstance(embed_limit_mb, numbers.Real) or not embed_limit_mb > 0:
        raise ValueError(f"embed_limit_mb must be a number > 0, got {embed_limit_mb!r}")
    # Frames at the figure's own dpi and full size: the book style's savefig.dpi = 150 would
    # quadruple every frame, and a tight bounding box may change the frame size between frames.
    settings = {"animation.embed_limit": float(embed_limit_mb), "savefig.dpi": "figure", "savefig.bbox": None}
    with mpl.rc_context(settings):
        html = animation.to_jshtml(default_mode="once")
    html = _STYLESHEET_LINK.sub("", html)
    return _ICON.sub(lambda match: _PLAYER_ICONS.get(match.group(1), ""), html)


# --------------------------------------------------------------------------
# the live explorer (Colab / Binder)
# --------------------------------------------------------------------------

EXPLORER_PRESETS: Mapping[str, Mapping[str, object]] = MappingProxyType({
    "sharp_flat": MappingProxyType(dict(
        window=((-3.0, 3.0), (-2.0, 2.0)), start=(-1.1, 0.9), lr=0.5, rho=0.5, steps=200, log=False)),
    "easom": MappingProxyType(dict(
        window=((math.pi - 3, math.pi + 3), (math.pi - 3, math.pi + 3)), start=(1.8, 2.2), lr=0.1, rho=0.5,
        steps=200, log=False)),
    "eggholder": MappingProxyType(dict(
        window=((-512.0, 512.0), (-512.0, 512.0)), start=(420.0, 330.0), lr=20.0, rho=20.0, steps=200, log=False)),
})
"""Settings the :func:`explorer` loads when a function is chosen: view window, start, lr, ρ, steps.

:meta hide-value:
"""


def explorer(presets: Mapping[str, Mapping[str, object]] | None = None):
    """A live ipywidgets explorer: a base optimizer vs its SAM version on a 2-D function (chapter 6).

    Controls: the function, the base optimizer (SGD, Adam, Adagrad), ρ and the
    learning rate (log sliders), the number of steps, the start (x, y) and a
    log-colour switch. Each change re-runs both optimizers and redraws
    :func:`compare_trajectories`. Choosing a function loads its preset (window,
    start, lr, ρ, steps). Needs a live kernel (Jupyter, Colab, Binder): a static
    page cannot run the optimizers.

    Args:
        presets: function key of :data:`sam_course.planar.FUNCTIONS` -> dict with
            ``window``, ``start``, ``lr``, ``rho``, ``steps`` and ``log``;
            :data:`EXPLORER_PRESETS` when None.

    Returns:
        An ``ipywidgets.VBox``: the controls, then the figure's output area. Display
        it as a cell's last expression.
    """
    import ipywidgets as widgets
    from IPython import display as ipd

    presets = EXPLORER_PRESETS if presets is None else presets
    if not presets:
        raise ValueError("presets must name at least one function")
    unknown = [key for key in presets if key not in _functions.FUNCTIONS]
    if unknown:
        raise ValueError(f"presets must use keys of sam_course.planar.FUNCTIONS, got {unknown}")
    keys = list(presets)
    slider = dict(continuous_update=False, style={"description_width": "initial"})
    function_w = widgets.Dropdown(options=[(_functions.FUNCTIONS[k].name, k) for k in keys], value=keys[0],
                                  description="function")
    base_w = widgets.Dropdown(options=list(_functions.BASE_OPTIMIZERS), value="Adagrad", description="base optimizer")
    rho_w = widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=2, step=0.05, description="ρ", readout_format=".3g",
                                   **slider)
    lr_w = widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=2, step=0.05, description="lr", readout_format=".3g",
                                  **slider)
    steps_w = widgets.IntSlider(value=100, min=10, max=1000, step=10, description="steps", **slider)
    x_w = widgets.FloatSlider(value=0.0, min=-1.0, max=1.0, description="start x", readout_format=".3g", **slider)
    y_w = widgets.FloatSlider(value=0.0, min=-1.0, max=1.0, description="start y", readout_format=".3g", **slider)
    log_w = widgets.Checkbox(value=False, description="log colours")
    output = widgets.Output()
    loading = {"preset": False}

    def redraw(_change=None):
        if loading["preset"]:
            return
        key = function_w.value
        fig, ax = plt.subplots(figsize=(6.4, 5.2))
        try:
            compare_trajectories(_functions.FUNCTIONS[key], (x_w.value, y_w.value), base=base_w.value,
                                 lr=lr_w.value, rho=rho_w.value, steps=steps_w.value, ax=ax,
                                 window=presets[key]["window"], log=log_w.value)
            output.clear_output(wait=True)
            with output:
                ipd.display(fig)
        finally:
            plt.close(fig)

    def load_preset(_change=None):
        key = function_w.value
        preset = presets[key]
        (xmin, xmax), (ymin, ymax) = _functions.FUNCTIONS[key].domain
        loading["preset"] = True
        try:
            for w, low, high, value in ((x_w, xmin, xmax, preset["start"][0]), (y_w, ymin, ymax, preset["start"][1])):
                # Widen first, then narrow: min may never exceed max in between.
                w.min, w.max = min(w.min, low), max(w.max, high)
                w.min, w.max, w.step = low, high, (high - low) / 1000
                w.value = value
            rho_w.value, lr_w.value = preset["rho"], preset["lr"]
            steps_w.value, log_w.value = preset["steps"], preset["log"]
        finally:
            loading["preset"] = False
        redraw()

    function_w.observe(load_preset, names="value")
    for w in (base_w, rho_w, lr_w, steps_w, x_w, y_w, log_w):
        w.observe(redraw, names="value")
    controls = widgets.VBox([
        widgets.HBox([function_w, base_w, log_w]),
        widgets.HBox([rho_w, lr_w, steps_w]),
        widgets.HBox([x_w, y_w]),
    ])
    load_preset()
    return widgets.VBox([controls, output])
