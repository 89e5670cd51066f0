"""sam_course.plotting.layout: overlapping texts are found, a readable figure passes, glue_figure refuses."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from sam_course import report  # noqa: E402
from sam_course.plotting.layout import overlapping_texts  # noqa: E402


def crowded_grid():
    """Two rows whose titles and x-labels collide without tight_layout (chapter 9's old grid)."""
    fig, axes = plt.subplots(2, 1, figsize=(4, 3))
    for ax in axes:
        ax.set_title("A rather long title of one panel")
        ax.set_xlabel("the label of the x axis")
    return fig


def test_a_title_over_the_panel_above_is_found():
    fig = crowded_grid()
    found = overlapping_texts(fig)
    assert any("axes 1 title" in f and "axes 0 x-" in f for f in found), found
    plt.close(fig)


def test_the_same_figure_laid_out_is_readable():
    fig = crowded_grid()
    fig.tight_layout()
    assert overlapping_texts(fig) == []
    plt.close(fig)


def test_a_legend_over_an_annotation_and_crowded_ticks_are_found():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1], label="a line with a long legend entry")
    ax.text(0.5, 0.5, "a note", transform=ax.transAxes, ha="center", va="center")
    ax.legend(loc="center")
    ax.set_xticks([i / 100 for i in range(0, 101, 5)])      # 21 labels on a 3-inch axis
    found = overlapping_texts(fig)
    assert any("legend" in f and "text 'a note'" in f for f in found), found
    assert any("x-tick" in f and f.count("x-tick") == 2 for f in found), found
    plt.close(fig)


def test_a_suptitle_is_not_compared_with_itself():
    fig, ax = plt.subplots(figsize=(4, 3))
    fig.suptitle("One title for the figure")
    fig.tight_layout()
    assert overlapping_texts(fig) == []
    plt.close(fig)


def test_glue_figure_refuses_a_figure_with_overlapping_texts(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.__setitem__(name, value))
    fig = crowded_grid()
    with pytest.raises(ValueError, match=r"figure 'fig_crowded' has overlapping texts.*axes 1 title"):
        report.glue_figure("fig_crowded", fig)
    assert "fig_crowded" not in glued and not plt.fignum_exists(fig.number)
    fig = crowded_grid()
    fig.tight_layout()
    report.glue_figure("fig_fine", fig)
    assert "fig_fine" in glued
