"""Tests for sam_course.plotting.curves: one curve per optimizer, and mean ± std bands over seeds.

Oracles: the line data against the curves given, and means and sample standard deviations over
seeds computed by hand on small fake run results.
"""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import legend_texts  # noqa: E402

from sam_course import plotting  # noqa: E402


def test_plot_histories_accepts_series_pairs_and_sequences():
    _, ax = plt.subplots()
    histories = {
        "SGD": pd.Series([3.0, 2.0, 1.0], index=[1, 2, 3]),
        "SAM-SGD": ([0, 5], [4.0, 0.5]),
        "Adam": torch.tensor([1.0, 0.5, 0.25, 0.125]),
    }
    plotting.plot_histories(ax, histories, "loss", "epoch", "training loss", logy=True)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["SGD"].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines["SAM-SGD"].get_xdata(), [0, 5])
    np.testing.assert_array_equal(lines["Adam"].get_xdata(), [0, 1, 2, 3])
    assert lines["SAM-SGD"].get_color() == plotting.color_for("SAM-SGD")
    assert ax.get_yscale() == "log" and ax.get_title() == "loss" and ax.get_ylabel() == "training loss"
    assert legend_texts(ax) == ["SGD", "SAM-SGD", "Adam"]
    with pytest.raises(ValueError, match="histories"):
        plotting.plot_histories(ax, {}, "t", "x", "y")
    with pytest.raises(ValueError, match="histories"):
        plotting.plot_histories(ax, {"SGD": np.zeros((2, 2))}, "t", "x", "y")


# --------------------------------------------------------------------------
# seeds
# --------------------------------------------------------------------------

def fake_run(seed, epochs, test_acc):
    """What seed_curves reads of a sam_course.train.RunResult: .history (with an epoch column) and .config.seed."""
    history = pd.DataFrame({"epoch": epochs, "train_loss": [9.0] * len(epochs), "test_acc": test_acc})
    return SimpleNamespace(history=history, config=SimpleNamespace(seed=seed))


def three_seeds():
    # Seed 2 stopped after two epochs: its epoch 3 is missing.
    return [fake_run(0, [1, 2, 3], [0.5, 0.6, 0.7]), fake_run(1, [1, 2, 3], [0.3, 0.6, 0.9]),
            fake_run(2, [1, 2], [0.4, 0.9])]


def test_seed_curves_puts_the_seeds_side_by_side():
    curves = plotting.seed_curves(three_seeds(), "test_acc")
    assert list(curves.columns) == [0, 1, 2]
    assert list(curves.index) == [1, 2, 3] and curves.index.name == "epoch"
    expected = np.array([[0.5, 0.3, 0.4], [0.6, 0.6, 0.9], [0.7, 0.9, np.nan]])
    np.testing.assert_array_equal(curves.to_numpy(), expected)


def test_plot_seed_band_mean_and_sample_std_by_hand():
    _, ax = plt.subplots()
    mean, std = plotting.plot_seed_band(ax, three_seeds(), "test_acc", color="tab:red", label="SAM-Adam")
    # Epoch 1: (0.5, 0.3, 0.4); epoch 2: (0.6, 0.6, 0.9); epoch 3: (0.7, 0.9), seed 2 missing.
    expected_mean = [0.4, 0.7, 0.8]
    expected_std = [0.1, np.sqrt((0.1**2 + 0.1**2 + 0.2**2) / 2), np.sqrt((0.1**2 + 0.1**2) / 1)]
    np.testing.assert_allclose(mean.to_numpy(), expected_mean, rtol=0, atol=1e-15)
    np.testing.assert_allclose(std.to_numpy(), expected_std, rtol=0, atol=1e-15)
    assert list(mean.index) == list(std.index) == [1, 2, 3]

    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(line.get_ydata(), expected_mean, rtol=0, atol=1e-15)
    assert (line.get_label(), line.get_linewidth()) == ("SAM-Adam", 2)
    assert line.get_color() == "tab:red"
    (band,) = ax.collections
    corners = {(x, round(y, 12)) for x, y in band.get_paths()[0].vertices}
    assert corners == {(x, round(m + sign * s, 12)) for x, m, s in zip([1, 2, 3], expected_mean, expected_std)
                       for sign in (-1, 1)}
    np.testing.assert_allclose(band.get_facecolor()[0], [*matplotlib.colors.to_rgb("tab:red"), 0.2])
    assert not band.get_label() or band.get_label().startswith("_")  # no legend entry


def test_plot_seed_band_one_seed_has_no_band_and_options():
    _, ax = plt.subplots()
    runs = [fake_run(7, [1, 2], [0.25, 0.5])]
    mean, std = plotting.plot_seed_band(ax, runs, "test_acc", color="black", label="SGD", lw=1, alpha=0.5)
    assert mean.tolist() == [0.25, 0.5] and std.tolist() == [0.0, 0.0]  # NaN std of one seed -> 0
    assert ax.get_lines()[0].get_linewidth() == 1 and ax.collections[0].get_alpha() == 0.5
    with pytest.raises(ValueError, match=r"^column 'val_acc' is not a history column of the runs with seeds \[7\]$"):
        plotting.plot_seed_band(ax, runs, "val_acc", color="black", label="SGD")
