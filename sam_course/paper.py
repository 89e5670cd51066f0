"""The result tables of Foret et al. (2021), as data (chapter 10; chapter 13 uses the Hessian numbers).

The paper reports its experiments in four tables: Table 1 (CIFAR-10 and CIFAR-100 error rates of
WRN-28-10, Shake-Shake, PyramidNet and PyramidNet+ShakeDrop with three augmentations, SAM vs SGD),
Table 2 (ImageNet top-1 and top-5 error of ResNet-50/101/152 at 100, 200 and 400 epochs), Table 3
(fine-tuning EfficientNet-b7 and EfficientNet-L2 on nine data sets, with the previous state of the
art) and Table 4 (CIFAR-10 test accuracy under 20-80 % symmetric label noise, SAM against methods
built for noisy labels). A fifth, small file holds the numbers the paper prints next to its
Hessian spectra (λmax and λmax/λ5 of a WRN-40-10 without BatchNorm after 1, 50 and 300 epochs).

The CSV files under ``sam_course/data_files/`` are transcriptions: every number is the text the
paper prints (``6.80`` stays ``6.80``), one published number per row. Two kinds of entries are
not plain numbers and are kept as what they are:

- ``± <0.1`` (and ``<0.01``, ``<0.0``): the paper gives only an upper bound on the spread. The
  CSV holds the text ``<0.1``; :func:`load_table` returns ``error_std = 0.1`` with
  ``std_upper_bound = True``, never a made-up value below the bound.
- ``-`` (a method that did not report that noise rate) and cells without a spread: NaN.

:func:`load_table` returns a tidy :class:`pandas.DataFrame`, :func:`published` the paper's own
layout (for display), :func:`compare` SAM against its baseline cell by cell (the error reduction
and its spread), and :func:`equal_compute` the comparison at equal training cost that Table 2
allows. Reading the tables needs pandas (``pip install sam_course[book]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import numpy as np
import pandas as pd

from ._checks import check_choice, check_real

__all__ = [
    "RUNS_PER_CELL",
    "TableInfo",
    "TABLES",
    "load_table",
    "published",
    "compare",
    "equal_compute",
]

#: Independent runs behind each mean ± spread of Tables 1-3 (the paper's protocol: 5 seeds).
RUNS_PER_CELL = 5


@dataclass(frozen=True)
class TableInfo:
    """What one shipped table is and how it is laid out.

    Attributes:
        name: the key of :data:`TABLES` and the argument of :func:`load_table`.
        source: where the numbers come from in Foret et al. (2021).
        caption: one sentence saying what the table measures, with units.
        filename: the CSV file under ``sam_course/data_files/``.
        value: the column holding the published numbers ("error", "accuracy" or "value").
        higher_is_better: True for accuracies, False for error rates.
        n_rows: rows of the tidy table (one per published number).
        index, columns: the columns that make the rows and the columns of the paper's layout
            (:func:`published`).
        keys: the columns that identify one SAM-vs-baseline comparison (:func:`compare`).
        sam: the method label of SAM in this table; None when the table has no comparison.
        baseline: the label of the baseline the paper compares SAM with.
    """

    name: str
    source: str
    caption: str
    filename: str
    value: str
    higher_is_better: bool
    n_rows: int
    index: tuple[str, ...]
    columns: tuple[str, ...]
    keys: tuple[str, ...] = ()
    sam: str | None = None
    baseline: str | None = None


_CITE = "Foret, Kleiner, Mobahi, Neyshabur (ICLR 2021)"

#: The shipped tables by name. Read-only.
TABLES: Mapping[str, TableInfo] = MappingProxyType({
    "cifar": TableInfo(
        name="cifar",
        source=f"Table 1 of {_CITE}",
        caption="Test error rate (%) on CIFAR-10 and CIFAR-100, mean ± spread over 5 runs, SAM vs SGD, "
                "for four architectures and three augmentations (Basic, Cutout, AutoAugment).",
        filename="foret2021_table1_cifar.csv",
        value="error",
        higher_is_better=False,
        n_rows=60,
        index=("model_label", "augmentation"),
        columns=("dataset", "method"),
        keys=("model", "epochs", "augmentation", "dataset"),
        sam="SAM",
        baseline="SGD",
    ),
    "imagenet": TableInfo(
        name="imagenet",
        source=f"Table 2 of {_CITE}",
        caption="ImageNet top-1 and top-5 test error rate (%), mean ± spread over 5 runs, ResNet-50/101/152 "
                "trained for 100, 200 and 400 epochs with SAM or with standard training.",
        filename="foret2021_table2_imagenet.csv",
        value="error",
        higher_is_better=False,
        n_rows=36,
        index=("model", "epochs"),
        columns=("method", "metric"),
        keys=("model", "epochs", "metric"),
        sam="SAM",
        baseline="Standard training",
    ),
    "finetuning": TableInfo(
        name="finetuning",
        source=f"Table 3 of {_CITE}",
        caption="Top-1 test error rate (%) after fine-tuning EfficientNet-b7 (ImageNet pre-training) and "
                "EfficientNet-L2 (pre-training with extra data) with and without SAM, mean ± spread over "
                "5 runs, next to the previous state of the art (a single number, with its method).",
        filename="foret2021_table3_finetuning.csv",
        value="error",
        higher_is_better=False,
        n_rows=54,
        index=("dataset",),
        columns=("model", "method"),
        keys=("dataset", "model"),
        sam="SAM",
        baseline="no SAM",
    ),
    "label_noise": TableInfo(
        name="label_noise",
        source=f"Table 4 of {_CITE}",
        caption="Test accuracy (%) on the clean CIFAR-10 test set after training on labels with 20, 40, 60 "
                "or 80 % symmetric noise: methods for noisy labels as reported in their papers, then the "
                "paper's own ResNet-32 runs.",
        filename="foret2021_table4_label_noise.csv",
        value="accuracy",
        higher_is_better=True,
        n_rows=52,
        index=("group", "method"),
        columns=("noise_rate",),
        keys=("noise_rate",),
        sam="SAM",
        baseline="SGD",
    ),
    "hessian_spectrum": TableInfo(
        name="hessian_spectrum",
        source=f"the Hessian-spectrum figure of {_CITE}",
        caption="Largest Hessian eigenvalue λmax and the ratio λmax/λ5 of a WRN-40-10 without BatchNorm "
                "on CIFAR-10, trained with SGD or SAM, after 1, 50 and 300 epochs.",
        filename="foret2021_hessian_spectrum.csv",
        value="value",
        higher_is_better=False,
        n_rows=12,
        index=("method",),
        columns=("quantity", "epoch"),
    ),
})


def _info(name) -> TableInfo:
    return TABLES[check_choice("name", name, sorted(TABLES))]


def _read(info: TableInfo) -> pd.DataFrame:
    # Every column as text: the numbers are parsed below, so that "6.80" and "<0.1" survive.
    with resources.files("sam_course").joinpath("data_files", info.filename).open("r", encoding="utf-8") as f:
        return pd.read_csv(f, dtype=str, keep_default_na=False)


def _number(text: str) -> float:
    # "-" (not reported) and "" (no spread printed) are missing values.
    return math.nan if text in ("", "-") else float(text)


def _spread(std: pd.Series, bound: pd.Series) -> pd.Series:
    # "± <0.0" (Table 2) says the spread rounds to 0.0 at one decimal, i.e. it is below 0.05: use
    # that as the bound, not 0. Other bounds ("<0.1", "<0.01") are usable as printed.
    std = std.astype(float)
    return std.where(~(bound.astype(bool) & (std == 0.0)), 0.05)


def _as_published(value: str, std: str = "", reference: str = "") -> str:
    if reference:
        return f"{value} ({reference})"
    return f"{value} ± {std}" if std else value


def load_table(name: str) -> pd.DataFrame:
    """One of the paper's tables as a tidy DataFrame, one published number per row.

    Columns by table (all tables also have ``as_published``, the cell's text as printed, e.g.
    ``"2.1 ± <0.1"``):

    - ``"cifar"`` (Table 1): ``model``, ``epochs`` (nullable integer; ``<NA>`` where the table
      names no epoch count), ``augmentation`` ("Basic", "Cutout", "AA" = AutoAugment),
      ``dataset``, ``method`` ("SAM", "SGD"), ``error`` (%), ``error_std`` (%),
      ``std_upper_bound``, ``model_label`` (the row label as printed).
    - ``"imagenet"`` (Table 2): ``model``, ``epochs``, ``method`` ("SAM", "Standard training"),
      ``metric`` ("top-1", "top-5"), ``error``, ``error_std``, ``std_upper_bound``.
    - ``"finetuning"`` (Table 3): ``dataset``, ``model`` ("EffNet-b7", "EffNet-L2"), ``method``
      ("SAM", "no SAM", "Prev. SOTA"), ``error``, ``error_std`` (NaN where none is printed: the
      previous state of the art, and EffNet without SAM on ImageNet), ``std_upper_bound``,
      ``reference`` (the previous state-of-the-art method; empty string otherwise).
    - ``"label_noise"`` (Table 4): ``group`` ("reported elsewhere", "this paper (ResNet-32)"),
      ``method``, ``noise_rate`` (% of training labels replaced), ``accuracy`` (% on the clean
      test set; NaN where the method's paper reports none).
    - ``"hessian_spectrum"``: ``method`` ("SGD", "SAM"), ``epoch``, ``quantity`` ("lambda_max",
      "lambda_max/lambda_5"), ``value``. ``.pivot(index=["method", "epoch"], columns="quantity",
      values="value")`` gives one row per checkpoint.

    ``std_upper_bound`` is True where the paper prints ``± <x``: then ``error_std`` is the bound
    ``x``, and the true spread is smaller. A ``<0.0`` in Table 2 reads as "rounds to 0.0".

    Args:
        name: a key of :data:`TABLES`.

    Returns:
        A new DataFrame (changing it does not change later calls), rows in the paper's order.

    Raises:
        ValueError: when ``name`` is not a key of :data:`TABLES`; the message lists them.
    """
    info = _info(name)
    raw = _read(info)
    table = raw.copy()
    if "error_std" in raw:
        table["error"] = raw["error"].map(_number)
        table["error_std"] = raw["error_std"].map(lambda s: _number(s.lstrip("<")))
        table["std_upper_bound"] = raw["error_std"].str.startswith("<")
        reference = raw["reference"] if "reference" in raw else pd.Series("", index=raw.index)
        table["as_published"] = [_as_published(v, s, r) for v, s, r in zip(raw["error"], raw["error_std"], reference)]
    else:
        table[info.value] = raw[info.value].map(_number)
        table["as_published"] = raw[info.value]
    for column in ("epochs", "epoch", "noise_rate"):
        if column in table:
            table[column] = pd.array([int(v) if v else pd.NA for v in raw[column]], dtype="Int64")
    if name == "cifar":
        table["model_label"] = [f"{m} ({e} epochs)" if e else m for m, e in zip(raw["model"], raw["epochs"])]
    return table


def published(name: str) -> pd.DataFrame:
    """The table in the paper's layout, each cell the text the paper prints (for display).

    Rows and columns follow ``TableInfo.index`` and ``TableInfo.columns``, in the paper's
    order; e.g. ``published("cifar").loc[("WRN-28-10 (200 epochs)", "Basic"), ("CIFAR-10", "SAM")]``
    is ``"2.7 ± 0.1"``.

    Raises:
        ValueError: when ``name`` is not a key of :data:`TABLES`.
    """
    info = _info(name)
    frame = load_table(name)[[*info.index, *info.columns, "as_published"]].copy()
    for column in (*info.index, *info.columns):
        # Categories in order of first appearance keep the paper's order through the pivot.
        frame[column] = pd.Categorical(frame[column], categories=list(dict.fromkeys(frame[column])), ordered=True)
    wide = frame.pivot(index=list(info.index), columns=list(info.columns), values="as_published")
    wide.columns.names = list(info.columns)
    return wide


def compare(name: str, baseline: str | None = None) -> pd.DataFrame:
    """SAM against a baseline, one row per cell of the table (chapter 10).

    For error tables the improvement is ``baseline error - SAM error``; for the label-noise table
    (accuracies) it is ``SAM accuracy - baseline accuracy``. Either way it is in percentage points
    and positive when SAM is better.

    Columns: the table's ``TableInfo.keys``, then

    - ``sam``, ``baseline``: the two published numbers; ``sam_std``, ``baseline_std`` their
      spreads (NaN where none is printed);
    - ``std_upper_bound``: True when either spread is only a bound (``± <x``);
    - ``improvement``: as above;
    - ``improvement_std``: ``sqrt(sam_std² + baseline_std²)``, the spread of the difference
      between one SAM run and one baseline run if the printed spreads are per-run standard
      deviations of independent runs (an upper bound where ``std_upper_bound``; a printed
      ``<0.0`` enters as 0.05, the largest spread that rounds to 0.0);
    - ``improvement_se``: ``improvement_std / sqrt(RUNS_PER_CELL)``, the standard error of the
      difference of the two means under the same reading;
    - ``gap_in_std``: ``improvement / improvement_std``;
    - ``relative_reduction``: the improvement as a fraction of the baseline's error rate (for
      accuracies, of ``100 - accuracy``): 0.2 means SAM removes a fifth of the errors.

    Args:
        name: a table with a comparison ("cifar", "imagenet", "finetuning", "label_noise").
        baseline: the method to compare SAM with; the paper's own baseline when None (SGD,
            standard training, EffNet without SAM, SGD). Any other method of the table is allowed,
            e.g. ``"Prev. SOTA"`` for fine-tuning or ``"MentorMix (2019)"`` for label noise.

    Raises:
        ValueError: for an unknown table, a table without a SAM-vs-baseline comparison, or a
            baseline that is not a method of the table.
    """
    info = _info(name)
    if info.sam is None:
        comparable = sorted(n for n, t in TABLES.items() if t.sam is not None)
        raise ValueError(f"table {name!r} has no SAM-vs-baseline comparison; use one of {comparable}")
    table = load_table(name)
    methods = list(dict.fromkeys(table["method"]))
    baseline = info.baseline if baseline is None else baseline
    if baseline not in methods or baseline == info.sam:
        allowed = [m for m in methods if m != info.sam]
        raise ValueError(f"baseline must be one of {allowed} for table {name!r}, got {baseline!r}")
    keys = list(info.keys)
    std = "error_std" if "error_std" in table else None

    def side(method: str, suffix: str) -> pd.DataFrame:
        rows = table[table["method"] == method]
        part = rows[keys].copy()
        part[suffix] = rows[info.value].to_numpy()
        part[f"{suffix}_std"] = rows[std].to_numpy() if std else np.nan
        part[f"{suffix}_bound"] = rows["std_upper_bound"].to_numpy() if std else False
        return part

    # A join on keys that may hold <NA> (cifar epochs) must treat <NA> as a value: merge does.
    out = side(info.sam, "sam").merge(side(baseline, "baseline"), on=keys, how="inner", validate="one_to_one")
    spread = np.hypot(_spread(out["sam_std"], out["sam_bound"]), _spread(out["baseline_std"], out["baseline_bound"]))
    out["std_upper_bound"] = out.pop("sam_bound") | out.pop("baseline_bound")
    sign = 1.0 if info.higher_is_better else -1.0
    out["improvement"] = sign * (out["sam"] - out["baseline"])
    out["improvement_std"] = spread
    out["improvement_se"] = out["improvement_std"] / math.sqrt(RUNS_PER_CELL)
    out["gap_in_std"] = out["improvement"] / out["improvement_std"]
    baseline_error = 100.0 - out["baseline"] if info.higher_is_better else out["baseline"]
    out["relative_reduction"] = out["improvement"] / baseline_error
    return out.reset_index(drop=True)


def equal_compute(name: str = "imagenet", cost_ratio: float = 2.0) -> pd.DataFrame:
    """SAM at E epochs against the best baseline run that costs no more, where the table allows it.

    A SAM step takes two forward-backward passes where the baseline takes one (chapter 5), so a
    SAM run of E epochs costs about as much as a baseline run of ``cost_ratio`` × E epochs
    (``cost_ratio = 2``). Following the paper's own rule for baselines (the best of 1× and 2× the
    epochs), the baseline here is the lowest error among its runs of at most ``cost_ratio`` × E
    epochs, chosen per cell (per model and metric; the shorter run on ties). A SAM row enters only
    when the table has a baseline run of exactly ``cost_ratio`` × E epochs, so that the whole budget
    was tried. Table 2 reports every model at 100, 200 and 400 epochs: SAM at 100 meets the best of
    standard training at 100 and 200 epochs, SAM at 200 the best at 100, 200 and 400 epochs.

    Args:
        name: a table with an ``epochs`` column and a comparison ("imagenet"; "cifar" has no
            pair of epoch counts in the ratio 2 and gives an empty frame).
        cost_ratio: the cost of a SAM epoch in baseline epochs, a positive number.

    Returns:
        One row per SAM cell: the table's keys other than ``epochs`` (``model``, ``metric``),
        ``sam_epochs``, ``budget_epochs`` (``cost_ratio`` × ``sam_epochs``), ``baseline_epochs``
        (those of the best baseline run), ``sam``, ``sam_std``, ``baseline``, ``baseline_std``,
        ``std_upper_bound``, ``improvement`` (baseline error - SAM error, in percentage points),
        ``improvement_std`` and ``improvement_se`` (as in :func:`compare`).

    Raises:
        ValueError: for an unknown table, a table without epochs or comparison, or a bad
            ``cost_ratio``.
    """
    info = _info(name)
    if info.sam is None or "epochs" not in info.keys:
        raise ValueError(f"table {name!r} has no SAM comparison over epochs; use 'imagenet'")
    check_real("cost_ratio", cost_ratio, 0.0, low_open=True)
    table = load_table(name).dropna(subset=["epochs"])
    keys = [k for k in info.keys if k != "epochs"]
    better = max if info.higher_is_better else min
    rows = []
    for cell, group in table.groupby(keys, sort=False):
        cell = cell if isinstance(cell, tuple) else (cell,)
        base = group[group["method"] == info.baseline]
        for _, sam in group[group["method"] == info.sam].iterrows():
            budget = float(cost_ratio) * int(sam["epochs"])
            if not (base["epochs"].astype(float) == budget).any():
                continue
            affordable = base[base["epochs"].astype(float) <= budget]
            best = affordable.loc[affordable[info.value] == better(affordable[info.value])].iloc[0]
            rows.append({
                **dict(zip(keys, cell)),
                "sam_epochs": int(sam["epochs"]),
                "budget_epochs": budget,
                "baseline_epochs": int(best["epochs"]),
                "sam": sam[info.value],
                "sam_std": sam["error_std"],
                "baseline": best[info.value],
                "baseline_std": best["error_std"],
                "sam_bound": bool(sam["std_upper_bound"]),
                "baseline_bound": bool(best["std_upper_bound"]),
            })
    columns = [*keys, "sam_epochs", "budget_epochs", "baseline_epochs", "sam", "sam_std", "baseline",
               "baseline_std", "sam_bound", "baseline_bound"]
    out = pd.DataFrame(rows, columns=columns)
    sign = 1.0 if info.higher_is_better else -1.0
    out["improvement"] = sign * (out["sam"] - out["baseline"])
    out["improvement_std"] = np.hypot(_spread(out["sam_std"], out["sam_bound"]),
                                      _spread(out["baseline_std"], out["baseline_bound"]))
    out["improvement_se"] = out["improvement_std"] / math.sqrt(RUNS_PER_CELL)
    out.insert(len(columns) - 2, "std_upper_bound", out.pop("sam_bound") | out.pop("baseline_bound"))
    return out
