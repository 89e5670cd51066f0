"""The shipped tables of Foret et al. (2021) against the published numbers (sam_course.paper).

The oracle is the paper's text: values copied here by hand from the published tables (as they
appear in the seed presentation and in /work/shared/paper-facts.md), and, where the seed
presentation is on disk, a parser of its tables that compares every cell.
"""

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from sam_course import paper

SEED_DIR = Path("/work/shared/seed")


def cell(table: pd.DataFrame, **where) -> pd.Series:
    """The single row of ``table`` matching every ``column=value`` in ``where``."""
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        mask &= table[column].isna() if value is pd.NA else table[column] == value
    rows = table[mask.fillna(False).astype(bool)]
    assert len(rows) == 1, f"{where}: {len(rows)} rows"
    return rows.iloc[0]


# --------------------------------------------------------------------------------------------
# Inventory


def test_tables_name_their_source_in_the_paper():
    expected = {"cifar": "Table 1", "imagenet": "Table 2", "finetuning": "Table 3", "label_noise": "Table 4"}
    for name, number in expected.items():
        assert paper.TABLES[name].source.startswith(f"{number} of Foret"), name
    assert "Hessian" in paper.TABLES["hessian_spectrum"].source
    assert set(paper.TABLES) == {*expected, "hessian_spectrum"}


def test_tables_is_read_only():
    with pytest.raises(TypeError):
        paper.TABLES["extra"] = paper.TABLES["cifar"]


@pytest.mark.parametrize("name, rows", [("cifar", 15 * 4), ("imagenet", 9 * 4), ("finetuning", 9 * 6),
                                        ("label_noise", 13 * 4), ("hessian_spectrum", 2 * 3 * 2)])
def test_row_counts(name, rows):
    table = paper.load_table(name)
    assert len(table) == rows == paper.TABLES[name].n_rows
    assert paper.published(name).size == rows


@pytest.mark.parametrize("name", sorted(paper.TABLES))
def test_each_file_is_package_data(name):
    from importlib import resources

    path = resources.files("sam_course").joinpath("data_files", paper.TABLES[name].filename)
    assert path.is_file() and path.name.endswith(".csv")


def test_bad_table_name_lists_the_names():
    with pytest.raises(ValueError, match="cifar.*finetuning.*hessian_spectrum.*imagenet.*label_noise"):
        paper.load_table("table1")
    for function in (paper.published, paper.compare, paper.equal_compute):
        with pytest.raises(ValueError, match="must be one of"):
            function("CIFAR")
    with pytest.raises(ValueError):
        paper.load_table(1)


def test_each_call_returns_a_fresh_frame():
    first = paper.load_table("cifar")
    first.loc[0, "error"] = -1.0
    assert paper.load_table("cifar").loc[0, "error"] == 2.7


# --------------------------------------------------------------------------------------------
# Values against the published tables (hand-copied oracle)


def test_cifar_values():
    t = paper.load_table("cifar")
    wrn = dict(model="WRN-28-10", epochs=200, augmentation="Basic", dataset="CIFAR-10")
    assert tuple(cell(t, **wrn, method="SAM")[["error", "error_std"]]) == (2.7, 0.1)
    assert tuple(cell(t, **wrn, method="SGD")[["error", "error_std"]]) == (3.5, 0.1)
    row = cell(t, model="WRN-28-10", epochs=1800, augmentation="AA", dataset="CIFAR-100", method="SGD")
    assert (row["error"], row["error_std"], row["std_upper_bound"]) == (16.1, 0.2, False)
    row = cell(t, model="PyramidNet", augmentation="Basic", dataset="CIFAR-100", method="SAM")
    assert (row["error"], row["error_std"]) == (14.6, 0.4)
    row = cell(t, model="PyramidNet+ShakeDrop", augmentation="AA", dataset="CIFAR-10", method="SGD")
    assert (row["error"], row["error_std"], row["std_upper_bound"], row["as_published"]) == (1.6, 0.1, True,
                                                                                               "1.6 ± <0.1")
    row = cell(t, model="Shake-Shake (26 2x96d)", augmentation="Cutout", dataset="CIFAR-100", method="SGD")
    assert (row["error"], row["error_std"]) == (15.7, 0.2)


def test_imagenet_values():
    t = paper.load_table("imagenet")
    row = cell(t, model="ResNet-152", epochs=400, method="SAM", metric="top-1")
    assert (row["error"], row["error_std"], row["std_upper_bound"]) == (18.4, 0.01, True)
    row = cell(t, model="ResNet-50", epochs=100, method="Standard training", metric="top-5")
    assert (row["error"], row["error_std"], row["as_published"]) == (6.62, 0.11, "6.62 ± 0.11")
    # Standard training of ResNet-101 gets worse from 200 to 400 epochs; SAM does not.
    top1 = t[(t.model == "ResNet-101") & (t.metric == "top-1")].set_index(["method", "epochs"])["error"]
    assert top1[("Standard training", 400)] == 22.3 > top1[("Standard training", 200)] == 20.9
    assert list(top1["SAM"]) == [20.2, 19.4, 19.0]
    row = cell(t, model="ResNet-152", epochs=100, method="Standard training", metric="top-1")
    assert (row["error"], row["error_std"], row["as_published"]) == (20.4, 0.0, "20.4 ± <0.0")


def test_finetuning_values():
    t = paper.load_table("finetuning")
    row = cell(t, dataset="FGVC_Aircraft", model="EffNet-b7", method="SAM")
    assert (row["error"], row["error_std"], row["as_published"]) == (6.80, 0.06, "6.80 ± 0.06")
    row = cell(t, dataset="CIFAR-10", model="EffNet-b7", method="Prev. SOTA")
    assert (row["error"], row["reference"], row["as_published"]) == (1.0, "Gpipe", "1 (Gpipe)")
    assert math.isnan(row["error_std"])
    row = cell(t, dataset="ImageNet", model="EffNet-L2", method="SAM")
    assert (row["error"], row["error_std"]) == (11.39, 0.02)
    row = cell(t, dataset="ImageNet", model="EffNet-L2", method="Prev. SOTA")
    assert (row["error"], row["reference"]) == (11.45, "ViT")
    row = cell(t, dataset="Birdsnap", model="EffNet-L2", method="no SAM")
    assert (row["error"], row["error_std"]) == (10.31, 0.15)


def test_label_noise_values():
    t = paper.load_table("label_noise")

    def accuracies(method):
        return t[t.method == method].sort_values("noise_rate")["accuracy"].tolist()

    assert accuracies("SAM") == [95.1, 93.4, 90.5, 77.9]
    assert accuracies("SGD") == [84.8, 68.8, 48.2, 26.2]
    assert accuracies("Bootstrap + SAM") == [95.4, 94.2, 91.8, 79.9]
    assert accuracies("MentorMix (2019)") == [95.6, 94.2, 91.3, 81.0]
    # "Mixup (2017)" (reported by its authors) and "Mixup" (the paper's own ResNet-32 run) differ.
    assert accuracies("Mixup (2017)") == [94.0, 91.5, 86.8, 76.9]
    assert accuracies("Mixup") == [93.0, 90.0, 83.8, 70.2]
    assert set(t[t.method.isin(["SGD", "SAM", "Mixup"])]["group"]) == {"this paper (ResNet-32)"}
    assert t.noise_rate.unique().tolist() == [20, 40, 60, 80]


def test_hessian_spectrum_values():
    wide = paper.load_table("hessian_spectrum").pivot(index=["method", "epoch"], columns="quantity",
                                                      values="value")
    assert wide.loc["SGD", "lambda_max"].tolist() == [62.9, 12.5, 24.2]
    assert wide.loc["SAM", "lambda_max"].tolist() == [18.6, 8.9, 1.0]
    assert wide.loc["SGD", "lambda_max/lambda_5"].tolist() == [2.5, 1.7, 11.4]
    assert wide.loc["SAM", "lambda_max/lambda_5"].tolist() == [3.6, 1.9, 2.6]
    assert wide.index.get_level_values("epoch").unique().tolist() == [1, 50, 300]


# --------------------------------------------------------------------------------------------
# Missing entries and bounds: exactly the known ones


def test_nan_only_where_the_paper_prints_nothing():
    cifar = paper.load_table("cifar")
    assert not cifar.drop(columns="epochs").isna().any().any()
    assert set(cifar[cifar.epochs.isna()].model) == {"Shake-Shake (26 2x96d)", "PyramidNet", "PyramidNet+ShakeDrop"}
    assert set(cifar[cifar.epochs.notna()].model) == {"WRN-28-10"}
    assert not paper.load_table("imagenet").isna().any().any()

    fine = paper.load_table("finetuning")
    no_std = fine[fine.error_std.isna()]
    expected = {(d, m, "Prev. SOTA") for d in fine.dataset.unique() for m in ("EffNet-b7", "EffNet-L2")}
    expected |= {("ImageNet", "EffNet-b7", "no SAM"), ("ImageNet", "EffNet-L2", "no SAM")}
    assert set(map(tuple, no_std[["dataset", "model", "method"]].to_numpy())) == expected
    assert not fine.drop(columns="error_std").isna().any().any()
    assert (fine.reference != "").sum() == 18 and set(fine[fine.reference != ""].method) == {"Prev. SOTA"}

    noise = paper.load_table("label_noise")
    missing = set(map(tuple, noise[noise.accuracy.isna()][["method", "noise_rate"]].to_numpy()))
    assert missing == {("Lee et al. (2019)", 80), ("Chen et al. (2019)", 40), ("Chen et al. (2019)", 60),
                       ("Huang et al. (2019)", 80)}
    assert set(noise[noise.accuracy.isna()].as_published) == {"-"}
    assert not paper.load_table("hessian_spectrum").isna().any().any()


def test_upper_bounds_are_exactly_the_published_ones():
    cifar = paper.load_table("cifar")
    bounds = set(map(tuple, cifar[cifar.std_upper_bound][["model_label", "augmentation", "dataset", "method"]]
                     .to_numpy()))
    assert bounds == {
        ("WRN-28-10 (200 epochs)", "AA", "CIFAR-10", "SAM"),
        ("WRN-28-10 (1800 epochs)", "AA", "CIFAR-10", "SGD"),
        ("Shake-Shake (26 2x96d)", "Basic", "CIFAR-10", "SAM"),
        ("Shake-Shake (26 2x96d)", "Cutout", "CIFAR-10", "SAM"),
        ("Shake-Shake (26 2x96d)", "AA", "CIFAR-10", "SAM"),
        ("PyramidNet+ShakeDrop", "Cutout", "CIFAR-10", "SAM"),
        ("PyramidNet+ShakeDrop", "AA", "CIFAR-10", "SAM"),
        ("PyramidNet+ShakeDrop", "AA", "CIFAR-10", "SGD"),
    }
    assert set(cifar[cifar.std_upper_bound].error_std) == {0.1}
    imagenet = paper.load_table("imagenet")
    bounded = imagenet[imagenet.std_upper_bound]
    assert set(map(tuple, bounded[["model", "epochs", "method", "error_std"]].to_numpy())) == {
        ("ResNet-101", 400, "SAM", 0.01), ("ResNet-152", 100, "SAM", 0.01), ("ResNet-152", 400, "SAM", 0.01),
        ("ResNet-152", 100, "Standard training", 0.0), ("ResNet-152", 400, "Standard training", 0.0)}
    assert set(bounded.metric) == {"top-1"}
    assert not paper.load_table("finetuning").std_upper_bound.any()


def test_as_published_round_trips_to_the_numbers():
    for name in ("cifar", "imagenet", "finetuning"):
        for _, row in paper.load_table(name).iterrows():
            match = re.fullmatch(r"([\d.]+)(?: ± (<?)([\d.]+))?(?: \((.+)\))?", row["as_published"])
            assert match, row["as_published"]
            value, bound, std, reference = match.groups()
            assert float(value) == row["error"]
            assert (bound == "<") == row["std_upper_bound"]
            assert (float(std) if std else math.nan) == pytest.approx(row["error_std"], nan_ok=True)
            assert (reference or "") == row.get("reference", "")


def test_published_layout():
    wide = paper.published("cifar")
    assert wide.loc[("WRN-28-10 (200 epochs)", "Basic"), ("CIFAR-10", "SAM")] == "2.7 ± 0.1"
    assert wide.index[0] == ("WRN-28-10 (200 epochs)", "Basic")
    assert wide.index[-1] == ("PyramidNet+ShakeDrop", "AA")
    assert list(wide.columns) == [("CIFAR-10", "SAM"), ("CIFAR-10", "SGD"), ("CIFAR-100", "SAM"),
                                  ("CIFAR-100", "SGD")]
    fine = paper.published("finetuning")
    assert list(fine.columns.get_level_values("method")[:3]) == ["SAM", "no SAM", "Prev. SOTA"]
    assert fine.loc["ImageNet", ("EffNet-L2", "no SAM")] == "11.8"
    noise = paper.published("label_noise")
    assert noise.loc[("reported elsewhere", "Chen et al. (2019)"), 40] == "-"
    assert list(noise.columns) == [20, 40, 60, 80]


# --------------------------------------------------------------------------------------------
# Derived comparisons against hand computation


def test_compare_cifar_by_hand():
    out = paper.compare("cifar")
    assert len(out) == 30
    row = cell(out, model="WRN-28-10", epochs=200, augmentation="Basic", dataset="CIFAR-10")
    assert row["improvement"] == pytest.approx(3.5 - 2.7)
    assert row["improvement_std"] == pytest.approx(math.sqrt(0.1**2 + 0.1**2))
    assert row["improvement_se"] == pytest.approx(math.sqrt(0.02 / 5))
    assert row["relative_reduction"] == pytest.approx(0.8 / 3.5)
    assert row["gap_in_std"] == pytest.approx(0.8 / math.sqrt(0.02))
    row = cell(out, model="PyramidNet", augmentation="Basic", dataset="CIFAR-100")
    assert (row["sam"], row["baseline"]) == (14.6, 19.7)
    assert row["improvement_std"] == pytest.approx(0.5)  # sqrt(0.4² + 0.3²)
    # Rows without epochs still pair up (the join treats <NA> as a value).
    assert out.epochs.isna().sum() == 18


def test_compare_every_row_against_a_loop():
    for name in ("cifar", "imagenet", "finetuning"):
        table = paper.load_table(name)
        info = paper.TABLES[name]
        out = paper.compare(name)
        assert len(out) == (table.method == info.sam).sum()
        for _, row in out.iterrows():
            where = {k: row[k] for k in info.keys}
            sam = cell(table, **where, method=info.sam)
            base = cell(table, **where, method=info.baseline)
            assert row["improvement"] == pytest.approx(base["error"] - sam["error"])
            assert row["relative_reduction"] == pytest.approx((base["error"] - sam["error"]) / base["error"])
            assert row["std_upper_bound"] == (sam["std_upper_bound"] or base["std_upper_bound"])


def test_compare_label_noise_uses_accuracy_the_right_way_round():
    out = paper.compare("label_noise")
    assert out.improvement.tolist() == pytest.approx([10.3, 24.6, 42.3, 51.7])
    # Relative reduction of the error rate 100 - accuracy: at 80 %, (73.8 - 22.1) / 73.8.
    assert out.relative_reduction.iloc[-1] == pytest.approx((73.8 - 22.1) / 73.8)
    assert out.improvement_std.isna().all()
    mentormix = paper.compare("label_noise", baseline="MentorMix (2019)")
    assert mentormix.improvement.tolist() == pytest.approx([-0.5, -0.8, -0.8, -3.1])


def test_compare_with_previous_state_of_the_art():
    out = paper.compare("finetuning", baseline="Prev. SOTA")
    row = cell(out, dataset="FGVC_Aircraft", model="EffNet-b7")
    assert row["improvement"] == pytest.approx(5.3 - 6.80)
    assert out.improvement_std.isna().all()


def test_compare_errors():
    with pytest.raises(ValueError, match="no SAM-vs-baseline comparison"):
        paper.compare("hessian_spectrum")
    with pytest.raises(ValueError, match="baseline must be one of"):
        paper.compare("cifar", baseline="Adam")
    with pytest.raises(ValueError, match="baseline must be one of"):
        paper.compare("cifar", baseline="SAM")


def test_zero_bound_is_widened_to_the_rounding_half_unit():
    # "± <0.0" (Table 2) means a spread that rounds to 0.0: below 0.05, not 0.
    out = paper.compare("imagenet")
    row = cell(out, model="ResNet-152", epochs=100, metric="top-1")
    assert row["std_upper_bound"]
    assert row["improvement_std"] == pytest.approx(math.hypot(0.01, 0.05))


def test_equal_compute_against_brute_force():
    table = paper.load_table("imagenet")
    out = paper.equal_compute()
    assert len(out) == 3 * 2 * 2  # 3 models x 2 metrics x SAM at 100 and 200 epochs
    for _, row in out.iterrows():
        budget = 2 * row["sam_epochs"]
        runs = table[(table.model == row["model"]) & (table.metric == row["metric"])
                     & (table.method == "Standard training") & (table.epochs <= budget)]
        assert row["baseline"] == runs.error.min()
        assert row["budget_epochs"] == budget
        sam = cell(table, model=row["model"], metric=row["metric"], method="SAM", epochs=row["sam_epochs"])
        assert row["improvement"] == pytest.approx(row["baseline"] - sam["error"])
    # ResNet-50 top-1: SAM at 100 epochs (22.5) loses to standard training at 200 (22.3).
    row = cell(out, model="ResNet-50", metric="top-1", sam_epochs=100)
    assert (row["baseline_epochs"], row["improvement"]) == (200, pytest.approx(-0.2))
    # ResNet-101 top-1: the best standard run within 400 epochs is the 200-epoch one (20.9, not 22.3).
    row = cell(out, model="ResNet-101", metric="top-1", sam_epochs=200)
    assert (row["baseline_epochs"], row["baseline"]) == (200, 20.9)


def test_equal_compute_other_ratios_and_errors():
    same_epochs = paper.equal_compute(cost_ratio=1)
    assert len(same_epochs) == 18
    assert paper.equal_compute("cifar").empty
    for bad in (0, -2, "2", True, math.nan):
        with pytest.raises(ValueError, match="cost_ratio"):
            paper.equal_compute(cost_ratio=bad)
    for name in ("label_noise", "finetuning", "hessian_spectrum"):
        with pytest.raises(ValueError, match="over epochs"):
            paper.equal_compute(name)


# --------------------------------------------------------------------------------------------
# Every value against the seed presentation's tables, when it is on disk


def _seed_text() -> str:
    files = sorted(SEED_DIR.glob("*.txt")) if SEED_DIR.is_dir() else []
    if not files:
        pytest.skip(f"the seed presentation ({SEED_DIR}) is not available here (it is not part of the repository)")
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


def _seed_rows(text: str, header: str, skip: int) -> list[list[str]]:
    """The tab-separated rows under the line starting with ``header`` (after ``skip`` sub-header lines)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 1 + skip
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append([_normalize(c) for c in line.split("\t")])
    return rows


def _normalize(text: str) -> str:
    text = text.replace("$", "").replace("\\pm", "±")
    return re.sub(r"\s+", " ", text).strip()


def test_every_value_matches_the_seed_presentation():
    text = _seed_text()

    cifar = paper.published("cifar")
    rows = _seed_rows(text, "Model\tAugmentation\tCIFAR-10", skip=1)
    assert len(rows) == len(cifar) == 15
    for row in rows:
        assert list(cifar.loc[(row[0], row[1])]) == row[2:6], row

    imagenet = paper.published("imagenet")
    rows = _seed_rows(text, "Model\tEpoch\tSAM", skip=1)
    assert len(rows) == len(imagenet) == 9
    model = None
    for row in rows:
        model = row[0] or model
        assert list(imagenet.loc[(model, int(row[1]))]) == row[2:6], row

    fine = paper.published("finetuning")
    rows = _seed_rows(text, "Dataset\tEffNet-b7 + SAM", skip=0)
    assert len(rows) == len(fine) == 9
    for row in rows:
        assert list(fine.loc[row[0]]) == row[1:7], row

    noise = paper.published("label_noise")
    rows = _seed_rows(text, "Method\tNoise rate", skip=1)
    assert len(rows) == len(noise) == 13
    assert [m for _, m in noise.index] == [row[0] for row in rows]  # same methods, same order
    for (_, method), row in zip(noise.index, rows):
        assert list(noise.loc[(slice(None), method), :].iloc[0]) == row[1:5], row
