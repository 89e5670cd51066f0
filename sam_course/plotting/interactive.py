"""A live ipywidgets explorer of a base optimizer against its SAM version on a 2-D function (chapter 6).

For Colab and Binder: a static page cannot run the optimizers, so the rendered book shows
:func:`~sam_course.plotting.planar.animate_trajectories` instead. ipywidgets is imported on the
first call only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import matplotlib.pyplot as plt

from .._checks import check_instance
from ..planar import BASE_LABELS, FUNCTIONS
from .planar import compare_trajectories

__all__ = ["EXPLORER_PRESETS", "explorer"]

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


def _check_presets(presets: Mapping[str, Mapping[str, object]]) -> Mapping[str, Mapping[str, object]]:
    """``presets`` when it names at least one function, each a key of :data:`~sam_course.planar.functions.FUNCTIONS`."""
    check_instance("presets", presets, Mapping, "mapping of function name -> settings")
    if not presets:
        raise ValueError("presets must name at least one function")
    unknown = [key for key in presets if key not in FUNCTIONS]
    if unknown:
        raise ValueError(f"presets must use keys of sam_course.planar.FUNCTIONS, got {unknown}")
    return presets


def _controls(widgets, keys: list[str]) -> dict:
    """The explorer's widgets by role, at their values before a preset is loaded."""
    slider = {"continuous_update": False, "style": {"description_width": "initial"}}
    log_slider = {"base": 10, "min": -3, "max": 2, "step": 0.05, "readout_format": ".3g", **slider}
    start = {"value": 0.0, "min": -1.0, "max": 1.0, "readout_format": ".3g", **slider}
    return {
        "function": widgets.Dropdown(options=[(FUNCTIONS[k].name, k) for k in keys], value=keys[0],
                                     description="function"),
        "base": widgets.Dropdown(options=list(BASE_LABELS), value="Adagrad", description="base optimizer"),
        "rho": widgets.FloatLogSlider(value=0.1, description="ρ", **log_slider),
        "lr": widgets.FloatLogSlider(value=0.1, description="lr", **log_slider),
        "steps": widgets.IntSlider(value=100, min=10, max=1000, step=10, description="steps", **slider),
        "x": widgets.FloatSlider(description="start x", **start),
        "y": widgets.FloatSlider(description="start y", **start),
        "log": widgets.Checkbox(value=False, description="log colours"),
    }


def _set_range(slider, low: float, high: float, value: float) -> None:
    """Give ``slider`` the range ``[low, high]`` in 1000 steps, then ``value``."""
    # Widen first, then narrow: min may never exceed max in between.
    slider.min, slider.max = min(slider.min, low), max(slider.max, high)
    slider.min, slider.max, slider.step = low, high, (high - low) / 1000
    slider.value = value


def explorer(presets: Mapping[str, Mapping[str, object]] | None = None):
    """A live ipywidgets explorer: a base optimizer vs its SAM version on a 2-D function (chapter 6).

    Controls: the function, the base optimizer (SGD, Adam, Adagrad), ρ and the
    learning rate (log sliders), the number of steps, the start (x, y) and a
    log-colour switch. Each change re-runs both optimizers and redraws
    :func:`~sam_course.plotting.planar.compare_trajectories`. Choosing a function loads its preset (window,
    start, lr, ρ, steps). Needs a live kernel (Jupyter, Colab, Binder): a static
    page cannot run the optimizers.

    Args:
        presets: function key of :data:`~sam_course.planar.functions.FUNCTIONS` -> dict with
            ``window``, ``start``, ``lr``, ``rho``, ``steps`` and ``log``;
            :data:`EXPLORER_PRESETS` when None.

    Returns:
        An ``ipywidgets.VBox``: the controls, then the figure's output area. Display
        it as a cell's last expression.
    """
    import ipywidgets as widgets
    from IPython import display as ipd

    presets = _check_presets(EXPLORER_PRESETS if presets is None else presets)
    c = _controls(widgets, list(presets))
    output = widgets.Output()
    # While a preset sets several controls, their observers must not redraw once each.
    loading = {"preset": False}

    def redraw(_change=None):
        if loading["preset"]:
            return
        key = c["function"].value
        fig, ax = plt.subplots(figsize=(6.4, 5.2))
        try:
            compare_trajectories(FUNCTIONS[key], (c["x"].value, c["y"].value), base=c["base"].value,
                                 lr=c["lr"].value, rho=c["rho"].value, steps=c["steps"].value, ax=ax,
                                 window=presets[key]["window"], log=c["log"].value)
            output.clear_output(wait=True)
            with output:
                ipd.display(fig)
        finally:
            plt.close(fig)

    def load_preset(_change=None):
        key = c["function"].value
        preset = presets[key]
        (xmin, xmax), (ymin, ymax) = FUNCTIONS[key].domain
        loading["preset"] = True
        try:
            _set_range(c["x"], xmin, xmax, preset["start"][0])
            _set_range(c["y"], ymin, ymax, preset["start"][1])
            c["rho"].value, c["lr"].value = preset["rho"], preset["lr"]
            c["steps"].value, c["log"].value = preset["steps"], preset["log"]
        finally:
            loading["preset"] = False
        redraw()

    c["function"].observe(load_preset, names="value")
    for role in ("base", "rho", "lr", "steps", "x", "y", "log"):
        c[role].observe(redraw, names="value")
    controls = widgets.VBox([
        widgets.HBox([c["function"], c["base"], c["log"]]),
        widgets.HBox([c["rho"], c["lr"], c["steps"]]),
        widgets.HBox([c["x"], c["y"]]),
    ])
    load_preset()
    return widgets.VBox([controls, output])
