"""Tests for sam_course.plotting.style: colours, axes labels, and what the module imports.

Oracles: the COLORS table, the axes' own title, labels and legend, and the module's import
statements.
"""

import ast
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from helpers import legend_texts  # noqa: E402

from sam_course import plotting  # noqa: E402
from sam_course.plotting import style  # noqa: E402


def test_color_for_spellings():
    assert plotting.color_for("SAM-SGD") == plotting.COLORS["SAM-SGD"]
    assert plotting.color_for("sam") == plotting.COLORS["SAM-SGD"]
    assert plotting.color_for("Adam+SAM") == plotting.COLORS["SAM-Adam"]
    assert plotting.color_for(" adagrad ") == plotting.COLORS["Adagrad"]
    assert plotting.color_for("LBFGS") == plotting.COLORS["other"]
    # A base optimizer and its SAM version never share a colour.
    for base in ("SGD", "Adam", "Adagrad"):
        assert plotting.color_for(base) != plotting.color_for(f"SAM-{base}")


def test_label_axes_sets_everything():
    _, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], label="SGD")
    plotting.label_axes(ax, "title", "x label", "y label")
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("title", "x label", "y label")
    assert legend_texts(ax) == ["SGD"]


def test_style_imports_matplotlib_and_seaborn_only():
    # Every chapter imports the style; it must not pull in the planar functions or torch.
    tree = ast.parse(Path(style.__file__).read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add("." * node.level + (node.module or "").split(".")[0])
    # .._checks (the validators) imports the standard library only.
    assert modules == {"__future__", "matplotlib", "seaborn", ".._checks"}


def test_the_package_re_exports_every_submodule_name():
    from sam_course.plotting import curves, interactive, planar

    for module in (style, planar, curves, interactive):
        for name in module.__all__:
            assert name in plotting.__all__ and getattr(plotting, name) is getattr(module, name)
    assert len(plotting.__all__) == sum(len(m.__all__) for m in (style, planar, curves, interactive))
