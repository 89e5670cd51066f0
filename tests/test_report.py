"""sam_course.report: the glue idiom (plain numbers, words, figures) and the one verdict rule."""

import math

import numpy as np
import pytest
import torch

from sam_course import report
from sam_course.report import as_plain_number


@pytest.mark.parametrize("value, expected, kind", [
    (3, 3, int), (True, 1, int), (np.int64(7), 7, int), (torch.tensor(5), 5, int),
    (0.25, 0.25, float), (np.float32(0.5), 0.5, float), (np.float64(1.5), 1.5, float),
    (torch.tensor(2.5, dtype=torch.float64), 2.5, float), (np.array(4.0), 4.0, float),
])
def test_numbers_become_plain_python_numbers(value, expected, kind):
    out = as_plain_number(value)
    assert type(out) is kind and out == expected
    assert "np." not in f"{out!r}"                   # what {glue:text} would otherwise print


@pytest.mark.parametrize("value", ["0.5", [1, 2], torch.tensor([1.0, 2.0]), np.array([1, 2]), None])
def test_anything_else_is_a_type_error(value):
    with pytest.raises(TypeError, match="single number"):
        as_plain_number(value)


# --------------------------------------------------------------------------- glue


@pytest.fixture
def glued(monkeypatch):
    """What the glue helpers hand to myst_nb.glue, as a dict name -> (value, display)."""
    import myst_nb

    store = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: store.__setitem__(name, (value, display)))
    return store


def test_glue_number_hands_a_plain_number_without_display(glued):
    from sam_course.report import glue_number, glue_numbers

    glue_number("a", np.float64(0.25))
    glue_numbers({"b": torch.tensor(3), "c": 1.5})
    assert glued == {"a": (0.25, False), "b": (3, False), "c": (1.5, False)}
    assert type(glued["a"][0]) is float and type(glued["b"][0]) is int


def test_glue_text_markdown_and_figure(glued):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from IPython.display import Markdown

    from sam_course.report import glue_figure, glue_markdown, glue_text

    glue_text("t", "about the same")
    glue_markdown("m", "**ahead**")
    fig = plt.figure()
    glue_figure("f", fig)
    assert glued["t"] == ("about the same", False)
    assert isinstance(glued["m"][0], Markdown) and glued["m"][0].data == "**ahead**"
    assert glued["f"] == (fig, False)
    assert not plt.fignum_exists(fig.number)          # closed, so it shows only where glued


@pytest.mark.parametrize("call", [
    lambda r: r.glue_text("t", 0.5), lambda r: r.glue_markdown("m", None), lambda r: r.glue_number("n", "0.5"),
])
def test_glue_refuses_the_wrong_kind(glued, call):
    import sam_course.report as report

    with pytest.raises(TypeError):
        call(report)
    assert glued == {}


def test_glue_refuses_an_empty_name(glued):
    from sam_course.report import glue_number

    with pytest.raises(ValueError, match="name must be a non-empty string"):
        glue_number("", 1)


# --------------------------------------------------------------------------- the verdict rule


@pytest.mark.parametrize("difference, spread, expected", [
    (0.05, 0.02, "ahead"), (-0.05, 0.02, "behind"), (0.04, 0.02, "within"), (-0.04, 0.02, "within"),
    (0.0, 0.0, "within"), (1e-9, 0.0, "ahead"), (0.3, float("nan"), "unmeasured"), (0.3, np.float64(0.1), "ahead"),
])
def test_compare_is_difference_against_twice_the_spread(difference, spread, expected):
    from sam_course.report import compare

    assert compare(difference, spread) == expected


def test_compare_factor():
    from sam_course.report import compare

    assert compare(0.15, 0.1, factor=1.0) == "ahead"
    assert compare(0.15, 0.1) == "within"
    with pytest.raises(ValueError, match="factor must be a finite number > 0, got 0"):
        compare(0.15, 0.1, factor=0)
    with pytest.raises(ValueError, match="spread must be a finite number >= 0, got -0.1"):
        compare(0.15, -0.1)


def test_verdict_fills_the_chapters_words():
    from sam_course.report import verdict

    words = {"ahead": "{difference:+.2f} > {factor:g} x {spread:.2f}", "behind": "behind", "within": "within",
             "unmeasured": "one seed"}
    assert verdict(0.5, 0.1, words) == "+0.50 > 2 x 0.10"
    assert verdict(-0.5, 0.1, words) == "behind"
    assert verdict(0.5, float("nan"), words) == "one seed"
    with pytest.raises(ValueError, match="missing \\['unmeasured'\\]"):
        verdict(0.5, 0.1, {"ahead": "", "behind": "", "within": ""})


def test_paired_difference_against_numpy():
    from sam_course.report import paired_difference

    d = [0.01, 0.03, -0.02, 0.04]
    mean, se = paired_difference(d)
    assert mean == pytest.approx(np.mean(d))
    assert se == pytest.approx(np.std(d, ddof=1) / np.sqrt(len(d)))
    mean, se = paired_difference([0.2])
    assert mean == 0.2 and np.isnan(se)
    with pytest.raises(ValueError, match="at least one"):
        paired_difference([])


@pytest.mark.parametrize("k, n, expected", [
    (3, 3, "holds in every one of the 3 seeds"), (0, 3, "holds in none of them"), (2, 3, "holds in 2 of 3 seeds"),
    (1, 1, "holds in the single seed"), (0, 1, "does not hold in the single seed"),
])
def test_count_verdict(k, n, expected):
    from sam_course.report import count_verdict

    assert count_verdict(k, n) == expected


def test_count_verdict_refuses_k_above_n():
    from sam_course.report import count_verdict

    with pytest.raises(ValueError, match=r"k must be an int in \[0, 3\], got 4"):
        count_verdict(4, 3)


@pytest.mark.parametrize("values, expected", [
    ([1, 2, 3], "rises steadily"), ([3, 2, 1], "falls steadily"), ([1, 3, 2], "goes up and down"),
    ([1, 1, 2], "goes up and down"),
])
def test_trend(values, expected):
    from sam_course.report import trend

    assert trend(values) == expected


def test_text_table_shows_long_text_whole():
    import pandas as pd

    from sam_course.report import text_table

    long = "Fashion-MNIST (CIFAR-10 stand-in), 900 noisy training images and 100 clean validation images"
    with pd.option_context("display.max_colwidth", 50):
        assert "..." in pd.Series({"data": long}, name="value").to_frame()._repr_html_()
        html = text_table({"data": long, "epochs": 20})._repr_html_()
    assert long in html and "..." not in html and ">value<" in html
    frame = pd.DataFrame({"paper": ["ResNet-32, " + long]}, index=["model"])
    assert ("ResNet-32, " + long) in text_table(frame)._repr_html_()


@pytest.mark.parametrize("name, expected", [
    ("final_test_acc_mean", "final test accuracy (mean)"), ("best_epoch_std", "best epoch (std)"),
    ("n", "runs"), ("sam_rho", "ρ"), ("label", "label"), ("test acc", "test acc"), ("Adam", "Adam"), (0.05, 0.05),
])
def test_readable_name(name, expected):
    assert report.readable_name(name) == expected


def test_readable_renames_columns_and_index_but_not_the_original():
    import pandas as pd

    table = pd.DataFrame({"final_test_acc_mean": [0.5], "n": [3]},
                         index=pd.Index([0.05], name="sam_rho"))
    shown = report.readable(table)
    assert list(shown.columns) == ["final test accuracy (mean)", "runs"]
    assert shown.index.names == ["ρ"]
    assert list(table.columns) == ["final_test_acc_mean", "n"] and table.index.name == "sam_rho"
    assert shown.iloc[0, 0] == 0.5


def test_number_text_formats_a_number_and_says_why_one_is_missing():
    assert report.number_text(3.46, ".1f", "not reached", "epoch {}") == "epoch 3.5"
    assert report.number_text(np.float64(0.25), ".2f", "unmeasured") == "0.25"
    assert report.number_text(math.nan, ".1f", "not reached", "epoch {}") == "not reached"
    assert report.number_text(math.inf, ".1f", "unbounded") == "unbounded"
    with pytest.raises(ValueError, match="missing"):
        report.number_text(1.0, ".1f", "")
    with pytest.raises(TypeError, match="single number"):
        report.number_text("3", ".1f", "x")


def test_with_spread_shows_mean_and_spread_or_says_there_is_none():
    assert report.with_spread(0.8814, 0.0042) == "0.881 ± 0.004"
    assert report.with_spread(12.345, 0.5, ".1f") == "12.3 ± 0.5"
    assert report.with_spread(0.8814, math.nan) == "0.881 (one seed, no spread)"
    assert "nan" not in report.with_spread(0.5, float("nan"), missing="a single run")


def test_a_glued_verdict_is_recorded_for_a_later_chapter(glued, tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_COURSE_CACHE", str(tmp_path))
    monkeypatch.setenv("SAM_COURSE_PROFILE", "ci")
    report.glue_verdict("ch99_gap", "SAM is **ahead** by 0.3")
    assert glued["ch99_gap"][0].data == "SAM is **ahead** by 0.3"
    assert report.recorded_verdict("ch99_gap", "chapter 99") == "SAM is **ahead** by 0.3"
    assert (tmp_path / "verdicts" / "ci" / "ch99_gap.md").is_file()
    report.glue_verdict("ch99_gap", "within the spread")       # a rerun replaces it
    assert report.recorded_verdict("ch99_gap", "chapter 99") == "within the spread"
    monkeypatch.setenv("SAM_COURSE_PROFILE", "book")            # profiles never share verdicts
    with pytest.raises(LookupError, match="run chapter 99 first"):
        report.recorded_verdict("ch99_gap", "chapter 99")
    assert not list((tmp_path / "verdicts" / "ci").glob(".*.tmp"))


@pytest.mark.parametrize("name", ["", "Ch1", "../x", "a b"])
def test_a_verdict_name_must_be_a_glue_key(name):
    with pytest.raises(ValueError, match="name must be a glue key"):
        report.recorded_verdict(name, "chapter 1")
