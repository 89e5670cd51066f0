"""Tests for sam_course.plotting.planar and .interactive, with the Agg backend (no display).

Oracles: the data behind each artist (contour levels against fn.grid's values, line data against
the paths given or computed by run_optimizer), titles, labels and legend entries; the animation's
HTML is parsed for its frames and checked for any external resource.
"""

import gc
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import legend_texts  # noqa: E402
from matplotlib.animation import FuncAnimation  # noqa: E402

from sam_course import planar as fn  # noqa: E402
from sam_course import plotting  # noqa: E402

SF = fn.SHARP_FLAT


# --------------------------------------------------------------------------
# contour and trajectory
# --------------------------------------------------------------------------

def test_contour_levels_cover_the_values_and_marks_the_minimum():
    fig, ax = plt.subplots()
    filled = plotting.contour(ax, SF, n=40, levels=12)
    _, _, Z = fn.grid(SF, 40)  # the same grid over the domain
    assert filled.levels[0] <= Z.min().item() and filled.levels[-1] >= Z.max().item()
    assert ax.get_title() == SF.name and (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
    assert ax.get_xlim() == (-3.0, 3.0) and ax.get_ylim() == (-3.0, 3.0)
    assert len(fig.axes) == 2  # the colour bar
    assert fig.axes[1].get_ylabel() == "f(x, y)"
    ax.legend()
    assert legend_texts(ax) == ["global minimum"]
    (star,) = [line for line in ax.get_lines() if line.get_label() == "global minimum"]
    np.testing.assert_allclose(np.column_stack(star.get_data()), [SF.sharp_minimum])


def test_contour_log_window_and_options():
    fig, ax = plt.subplots()
    window = ((0.5, 2.5), (-1.0, 1.0))  # holds the flat minimum only, not the global one
    filled = plotting.contour(ax, SF, n=30, log=True, window=window, colorbar=False, title="zoom", lines=False)
    assert len(fig.axes) == 1 and ax.get_title() == "zoom"
    assert not any(line.get_label() == "global minimum" for line in ax.get_lines())
    assert len(ax.collections) == 1  # no level lines
    # Colours follow log10(f - min + delta) with delta = 1e-3 (max - min): from log10(delta) up to
    # log10(1.001 (max - min)).
    xs = torch.linspace(0.5, 2.5, 30, dtype=torch.float64)
    ys = torch.linspace(-1.0, 1.0, 30, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    span = (SF(torch.stack((X, Y), -1)).max() - SF(torch.stack((X, Y), -1)).min()).item()
    assert filled.levels[0] <= np.log10(1e-3 * span) + 1e-9
    assert filled.levels[-1] >= np.log10(1.001 * span) - 1e-9


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 1}, "n must"), ({"levels": 1}, "levels"), ({"window": ((1.0, 0.0), (0.0, 1.0))}, "window"),
     ({"window": "all"}, "window")],
)
def test_contour_errors(kwargs, match):
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match=match):
        plotting.contour(ax, SF, **kwargs)
    with pytest.raises(ValueError, match="function"):
        plotting.contour(ax, lambda p: p.sum(-1))


def test_trajectory_line_markers_and_colour():
    _, ax = plt.subplots()
    path = torch.tensor([[0.0, 0.0], [1.0, 0.5], [2.0, 2.0]], dtype=torch.float64)
    line = plotting.trajectory(ax, path, "SAM-Adagrad")
    np.testing.assert_array_equal(np.column_stack(line.get_data()), path.numpy())
    assert line.get_color() == plotting.color_for("SAM-Adagrad")
    start, end = ax.get_lines()[1:]
    assert (start.get_xdata()[0], start.get_ydata()[0]) == (0.0, 0.0)
    assert (end.get_xdata()[0], end.get_ydata()[0]) == (2.0, 2.0)
    ax.legend()
    assert legend_texts(ax) == ["SAM-Adagrad"]  # markers carry no legend entry
    with pytest.raises(ValueError, match="path"):
        plotting.trajectory(ax, torch.zeros(3, 3), "SGD")


def test_compare_trajectories_runs_both_optimizers():
    ax, paths = plotting.compare_trajectories(SF, (-1.7, 0.4), base="Adagrad", lr=0.5, rho=0.5, steps=12, n=20)
    assert list(paths) == ["Adagrad", "SAM-Adagrad"]
    for label, path in paths.items():
        expected = fn.run_optimizer(SF, (-1.7, 0.4), fn.optimizer_factory(label, 0.5, rho=0.5), 12)
        torch.testing.assert_close(path, expected, atol=0, rtol=0)
        (line,) = [line for line in ax.get_lines() if line.get_label() == label]
        np.testing.assert_array_equal(np.column_stack(line.get_data()), expected.numpy())
    assert "Adagrad vs SAM-Adagrad" in ax.get_title() and "ρ=0.5" in ax.get_title()
    assert legend_texts(ax) == ["global minimum", "Adagrad", "SAM-Adagrad"]
    with pytest.raises(ValueError, match="base"):
        plotting.compare_trajectories(SF, (0.0, 0.0), base="SAM-SGD")


def test_outcome_map_counts_and_colours():
    _, ax = plt.subplots()
    starts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    plotting.outcome_map(ax, starts, ["elsewhere", "flat", "sharp"], colors={"sharp": "red", "flat": "green"},
                         title="ends")
    assert ax.get_title() == "ends"
    # The colours' order first (absent categories skipped), then the rest by first appearance.
    assert legend_texts(ax) == ["sharp (1)", "flat (1)", "elsewhere (1)"]
    sharp, flat, elsewhere = ax.collections
    np.testing.assert_array_equal(flat.get_offsets(), [[1.0, 0.0]])
    np.testing.assert_allclose(flat.get_facecolor()[0][:3], matplotlib.colors.to_rgb("green"))
    _, ax = plt.subplots()
    plotting.outcome_map(ax, starts, ["b", "a", "b"], colors={"c": "blue"})
    assert legend_texts(ax) == ["b (2)", "a (1)"]
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), [[0.0, 0.0], [2.0, 0.0]])
    with pytest.raises(ValueError, match="outcomes"):
        plotting.outcome_map(ax, starts, ["flat"])


# --------------------------------------------------------------------------
# animation
# --------------------------------------------------------------------------

def small_paths():
    long = fn.run_optimizer(SF, (-1.7, 0.4), fn.optimizer_factory("Adagrad", 0.5), 200)
    short = fn.run_optimizer(SF, (-1.7, 0.4), fn.optimizer_factory("SAM-Adagrad", 0.5, rho=0.5), 50)
    return {"Adagrad": long, "SAM-Adagrad": short}


# These tests draw frames by hand or stop before rendering; matplotlib warns when such an
# animation is garbage-collected.
UNRENDERED = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")


@UNRENDERED
def test_animation_frames_are_subsampled_and_drawn():
    paths = small_paths()
    anim = plotting.animate_trajectories(SF, paths, frames=60, n=20)
    assert isinstance(anim, FuncAnimation)
    assert len(anim.steps) <= 60 and anim.steps[0] == 0 and anim.steps[-1] == 200
    assert np.all(np.diff(anim.steps) > 0)
    frame = len(anim.steps) // 2
    step = int(anim.steps[frame])
    anim._func(frame)  # draw one frame without a writer
    ax = anim._fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(np.column_stack(lines["Adagrad"].get_data()), paths["Adagrad"][: step + 1].numpy())
    # The 51-point path stops at its end.
    np.testing.assert_array_equal(np.column_stack(lines["SAM-Adagrad"].get_data()), paths["SAM-Adagrad"].numpy())
    assert ax.get_title() == f"{SF.name} — step {step}"
    assert not plt.fignum_exists(anim._fig.number)  # closed: no stray static copy
    del anim
    gc.collect()  # warn (filtered) here, not in a later test


def test_to_html_is_self_contained():
    paths = small_paths()
    anim = plotting.animate_trajectories(SF, paths, frames=4, n=20, title="demo")
    html = plotting.to_html(anim)
    for tag in ("<script", "<img", "<button", 'class="animation"'):
        assert tag in html
    assert len(re.findall(r"data:image/png;base64,", html)) == 4
    assert "http" not in html and "<link" not in html and "fa fa-" not in html
    assert "&#9654;" in html  # the play button as text


@UNRENDERED
def test_animation_errors():
    with pytest.raises(ValueError, match="paths"):
        plotting.animate_trajectories(SF, {})
    with pytest.raises(ValueError, match="frames"):
        plotting.animate_trajectories(SF, {"SGD": torch.zeros(3, 2)}, frames=0)
    with pytest.raises(ValueError, match=r"paths\['SGD'\]"):
        plotting.animate_trajectories(SF, {"SGD": torch.zeros(3)})
    with pytest.raises(ValueError, match="animation"):
        plotting.to_html("not an animation")
    anim = plotting.animate_trajectories(SF, {"SGD": torch.zeros(3, 2)}, n=10)
    with pytest.raises(ValueError, match="embed_limit_mb"):
        plotting.to_html(anim, embed_limit_mb=0)
    del anim
    gc.collect()


# --------------------------------------------------------------------------
# the live explorer
# --------------------------------------------------------------------------

PRESETS = {
    "sharp_flat": {"window": ((-3.0, 3.0), (-2.0, 2.0)), "start": (-1.7, 0.4), "lr": 0.5, "rho": 0.5,
                   "steps": 10, "log": False},
    "eggholder": {"window": ((-512.0, 512.0), (-512.0, 512.0)), "start": (448.0, 320.0), "lr": 20.0,
                  "rho": 20.0, "steps": 10, "log": True},
}


def test_explorer_loads_presets_and_redraws(monkeypatch):
    pytest.importorskip("ipywidgets")
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, *a, **k: shown.append(obj))
    box = plotting.explorer(PRESETS)
    controls = {w.description: w for row in box.children[0].children for w in row.children}
    assert set(controls) == {"function", "base optimizer", "log colours", "ρ", "lr", "steps", "start x", "start y"}
    assert len(shown) == 1  # the first preset is drawn once, not once per control it sets
    ax = shown[-1].axes[0]
    assert "Sharp and flat" in ax.get_title()
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == [
        "global minimum", "Adagrad", "SAM-Adagrad"]

    controls["function"].value = "eggholder"
    assert (controls["start x"].min, controls["start x"].max, controls["start x"].value) == (-512.0, 512.0, 448.0)
    assert controls["ρ"].value == pytest.approx(20.0) and controls["log colours"].value is True
    assert len(shown) == 2 and "Eggholder" in shown[-1].axes[0].get_title()

    controls["base optimizer"].value = "SGD"
    assert len(shown) == 3 and "SGD vs SAM-SGD" in shown[-1].axes[0].get_title()


def test_explorer_rejects_unknown_functions():
    pytest.importorskip("ipywidgets")
    with pytest.raises(ValueError, match="presets"):
        plotting.explorer({"beale": PRESETS["sharp_flat"]})
    with pytest.raises(ValueError, match="presets"):
        plotting.explorer({})
