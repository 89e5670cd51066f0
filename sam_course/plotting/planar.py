"""Pictures of optimizers on the 2-D test functions of :mod:`sam_course.planar` (chapters 1 and 6).

:func:`contour` of a landscape, :func:`trajectory` of one run, :func:`compare_trajectories` of a
base optimizer and its SAM version, :func:`outcome_map` of where runs from many starts end, and
:func:`animate_trajectories` with :func:`to_html` for the rendered book. Coordinates are those of
the function's domain; colours come from :func:`~sam_course.plotting.style.color_for`.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.patheffects as patheffects
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.animation import Animation, FuncAnimation

from .._checks import check_choice, check_instance, check_int, check_items, check_real
from ..planar import BASE_LABELS, check_function, grid, optimizer_factory, parse_box, run_optimizer
from .style import color_for

__all__ = [
    "contour",
    "trajectory",
    "compare_trajectories",
    "outcome_map",
    "animate_trajectories",
    "to_html",
]

_HALO = (patheffects.Stroke(linewidth=4.0, foreground="white", alpha=0.8), patheffects.Normal())


def _as_path(path, name: str = "path") -> np.ndarray:
    """``path`` as a float numpy array of shape ``(T, 2)``, ``T >= 1``."""
    if isinstance(path, torch.Tensor):
        path = path.detach().cpu().numpy()
    try:
        array = np.asarray(path, dtype=float)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != 2:
        shown = path if isinstance(path, np.ndarray) else reprlib.repr(path)
        raise ValueError(f"{name} must be points of shape (T, 2) with T >= 1, got {shown} (shape {array.shape})")
    return array


def _window(function, window):
    """The view box of ``function``: ``window`` read by :func:`~sam_course.planar.parse_box`, or the domain."""
    check_function(function)
    return function.domain if window is None else parse_box(window)


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

    The function is evaluated by :func:`sam_course.planar.grid` on an ``n`` x
    ``n`` grid over ``window`` (its domain by default). With ``log=True`` the colours follow
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
    n = check_int("n", n, low=2)
    levels = check_int("levels", levels, low=2)
    X, Y, Z = grid(function, n, window=((xmin, xmax), (ymin, ymax)))
    Z = Z.numpy()
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
        label: legend entry, also the key of :func:`~sam_course.plotting.style.color_for` ("Adagrad", "SAM-Adagrad", ...).
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
        base: one of :data:`~sam_course.planar.runners.BASE_LABELS` (``"SGD"``, ``"Adam"``, ``"Adagrad"``).
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
    check_choice("base", base, BASE_LABELS)
    paths = {
        label: run_optimizer(function, start, optimizer_factory(label, lr, rho=rho), steps)
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
    outcomes = check_items("outcomes", outcomes, str, "str")
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
        paths: label -> path of shape ``(T, 2)``; labels pick colours through :func:`~sam_course.plotting.style.color_for`.
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
    frames = check_int("frames", frames, low=1)
    interval = check_int("interval", interval, low=1)
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
    check_instance("animation", animation, Animation, "matplotlib Animation")
    embed_limit_mb = check_real("embed_limit_mb", embed_limit_mb, 0, low_open=True, allow_inf=True)
    # Frames at the figure's own dpi and full size: the book style's savefig.dpi = 150 would
    # quadruple every frame, and a tight bounding box may change the frame size between frames.
    settings = {"animation.embed_limit": embed_limit_mb, "savefig.dpi": "figure", "savefig.bbox": None}
    with mpl.rc_context(settings):
        html = animation.to_jshtml(default_mode="once")
    html = _STYLESHEET_LINK.sub("", html)
    return _ICON.sub(lambda match: _PLAYER_ICONS.get(match.group(1), ""), html)
