"""Figures a reader can read: no two labels of a figure drawn on top of each other.

:func:`overlapping_texts` lays a figure out (draws it once, off screen) and compares the tight
bounding boxes of its titles, axis labels, tick labels, legend entries and free texts. The book's
:func:`sam_course.report.glue_figure` calls it on every figure before it is glued, so a figure
whose bottom-row titles run into the top row's x-labels fails the build of its chapter instead of
reaching the page (the defect of chapter 9's landscape grid).
"""

from __future__ import annotations

__all__ = ["overlapping_texts"]

#: Boxes that share less than this many pixels each way only touch (anti-aliasing, rounding).
_TOLERANCE_PX = 1.0


def _texts(fig) -> list[tuple[str, object, object]]:
    """(description, Text artist, its Axis for a tick label or None) of every visible, non-empty text."""
    found = []

    def add(where, artist, axis=None):
        if artist is not None and artist.get_visible() and artist.get_text().strip():
            found.append((f"{where} {artist.get_text().strip()[:40]!r}", artist, axis))

    suptitle = getattr(fig, "_suptitle", None)      # matplotlib keeps no public getter for it
    add("figure title", suptitle)
    for text in fig.texts:
        if text is not suptitle:      # fig.suptitle's Text is also in fig.texts
            add("figure text", text)
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = f"axes {i}"
        for loc in ("left", "center", "right"):
            add(f"{name} title", ax.title if loc == "center" else getattr(ax, f"_{loc}_title"))
        add(f"{name} x-label", ax.xaxis.label)
        add(f"{name} y-label", ax.yaxis.label)
        for axis, letter in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            for tick in axis.get_ticklabels(which="both"):
                add(f"{name} {letter}-tick", tick, axis)
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            add(f"{name} legend title", legend.get_title())
            for text in legend.get_texts():
                add(f"{name} legend", text)
        for text in ax.texts:
            add(f"{name} text", text)
    return found


def overlapping_texts(fig) -> list[str]:
    """Every pair of texts of ``fig`` whose tight bounding boxes overlap, described in words.

    Ticks outside the axes' view limits are not drawn and not compared. Two tick labels of one
    axis may touch (dense log ticks) but not overlap. Returns an empty list for a readable figure.
    """
    fig.canvas.draw()                 # lays out every artist; the boxes below are in pixels
    renderer = fig.canvas.get_renderer()
    boxes = []
    for description, artist, axis in _texts(fig):
        if axis is not None:
            # A tick label outside the view limits is not drawn: leave it out.
            low, high = sorted(axis.get_view_interval())
            value = artist.get_position()[0 if axis.axis_name == "x" else 1]
            slack = 1e-9 * max(1.0, abs(low), abs(high))
            if not low - slack <= value <= high + slack:
                continue
        box = artist.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            boxes.append((description, box))
    found = []
    for i, (first, a) in enumerate(boxes):
        for second, b in boxes[i + 1:]:
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            if overlap_x > _TOLERANCE_PX and overlap_y > _TOLERANCE_PX:
                found.append(f"{first} overlaps {second}")
    return found
