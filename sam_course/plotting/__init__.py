"""The book's figures: one style and fixed colours per optimizer, and the pictures the chapters share.

* :mod:`~sam_course.plotting.style`: :data:`~sam_course.plotting.style.COLORS`, :func:`color_for`,
  :func:`use_style`, :func:`label_axes` (every chapter; matplotlib and seaborn only);
* :mod:`~sam_course.plotting.planar`: optimizers on the 2-D test functions of
  :mod:`sam_course.planar` (chapters 1 and 6): :func:`contour`, :func:`trajectory`,
  :func:`compare_trajectories`, :func:`outcome_map`, :func:`animate_trajectories` and
  :func:`to_html` for the rendered book;
* :mod:`~sam_course.plotting.curves`: :func:`plot_histories` per optimizer, and the mean ± std
  band of several seeds, :func:`seed_curves` and :func:`plot_seed_band` (chapters 7 and 11);
* :mod:`~sam_course.plotting.interactive`: :func:`explorer`, a live ipywidgets version of chapter
  6's pictures for Colab and Binder, with its :data:`~sam_course.plotting.interactive.EXPLORER_PRESETS`.
"""

from .curves import plot_histories, plot_seed_band, seed_curves
from .interactive import EXPLORER_PRESETS, explorer
from .planar import animate_trajectories, compare_trajectories, contour, outcome_map, to_html, trajectory
from .style import COLORS, color_for, label_axes, use_style

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
    "seed_curves",
    "plot_seed_band",
    "animate_trajectories",
    "to_html",
    "EXPLORER_PRESETS",
    "explorer",
]
