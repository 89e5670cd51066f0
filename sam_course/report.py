"""Book support: one idiom for handing numbers, words and figures to the prose, and one verdict rule.

Every chapter glues what its prose quotes through these functions, never through ``myst_nb.glue``
directly, so a number shows the same way on every page:

* :func:`glue_number` for ``{glue:text}`name:.3f``` (any Python, NumPy or 0-d torch number);
* :func:`glue_text` for plain words (``{glue:text}``), :func:`glue_markdown` for words with
  Markdown (``{glue:md}``);
* :func:`glue_figure` for ``{glue:figure}`` (the figure is closed, so it shows only where glued).

A verdict that compares two measurements is never typed by hand: :func:`compare` says whether a
difference stands clear of its spread (more than ``factor`` times it, two by default, as chapters
8 and 12 judge their seeds), and :func:`verdict` turns that into the chapter's words;
:func:`count_verdict` says in how many of ``n`` cases a claim holds, :func:`trend` how a sequence
moves. A test checks that no chapter defines its own.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ._checks import check_instance, check_int, check_real, wrong_kind

__all__ = [
    "as_plain_number",
    "glue_number",
    "glue_numbers",
    "glue_text",
    "glue_markdown",
    "glue_figure",
    "glue_verdict",
    "recorded_verdict",
    "verdict_store",
    "number_text",
    "with_spread",
    "text_table",
    "readable_name",
    "readable",
    "COMPARISONS",
    "compare",
    "verdict",
    "paired_difference",
    "count_verdict",
    "trend",
]


def as_plain_number(value, name: str = "value") -> int | float:
    """``value`` (a Python, NumPy or 0-d torch number) as a plain ``int`` or ``float``.

    ``name`` is the argument the caller received ``value`` as, for the error message.

    Booleans and integers become ``int``; everything else that converts with ``float()`` becomes
    ``float``. The prose formats glued numbers with ``{glue:text}`name:.3f```, which cannot format
    NumPy or torch scalars (NumPy 2 writes them as ``np.float64(...)``).

    Raises:
        TypeError: when ``value`` is not a single number (a string, a list, a tensor of several
            entries...).
    """
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            raise wrong_kind(name, value, "single number (not several entries)") from None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise wrong_kind(name, value, "single number")


def _glue(name: str, value) -> None:
    from myst_nb import glue

    if not check_instance("name", name, str):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    glue(name, value, display=False)


def glue_number(name: str, value) -> None:
    """Glue a number under ``name``, without displaying it (``{glue:text}`name:.2f``` in the prose)."""
    _glue(name, as_plain_number(value))


def glue_numbers(values: Mapping[str, object]) -> None:
    """:func:`glue_number` for every ``name: value`` of ``values``."""
    for name, value in check_instance("values", values, Mapping, "mapping of name -> number").items():
        glue_number(name, value)


def glue_text(name: str, text: str) -> None:
    """Glue plain words under ``name`` (``{glue:text}`name``` in the prose)."""
    _glue(name, check_instance("text", text, str))


def glue_markdown(name: str, text: str) -> None:
    """Glue words that hold Markdown (``**bold**``, links) under ``name`` (``{glue:md}`name```)."""
    from IPython.display import Markdown

    _glue(name, Markdown(check_instance("text", text, str)))


def glue_figure(name: str, fig) -> None:
    """Glue a matplotlib figure under ``name`` (a ``{glue:figure}`` block) and close it.

    Closing keeps the figure from showing a second time under the cell that drew it.

    Raises:
        ValueError: when two texts of the figure overlap (a title over a neighbour's x-label,
            crowded ticks; :func:`sam_course.plotting.layout.overlapping_texts`); the figure is
            closed and not glued, and the message names the texts.
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from .plotting.layout import overlapping_texts

    check_instance("fig", fig, Figure, "matplotlib Figure")
    overlaps = overlapping_texts(fig)
    if overlaps:
        picture = Path(tempfile.gettempdir()) / (re.sub(r"[^\w.-]", "_", name) + "-overlapping-texts.png")
        fig.savefig(picture)
        plt.close(fig)
        raise ValueError(f"figure {name!r} has overlapping texts (fig.tight_layout(), a taller figure or fewer "
                         "ticks fixes most): " + "; ".join(overlaps[:8]) + (" ..." if len(overlaps) > 8 else "")
                         + f"; the figure is saved as {picture}")
    _glue(name, fig)
    plt.close(fig)


#: A verdict's name: what a file name and a glue key can both hold.
_VERDICT_NAME = re.compile(r"[a-z][a-z0-9_]*")


def verdict_store() -> Path:
    """The folder where :func:`glue_verdict` records verdicts for the current profile.

    ``<run cache>/verdicts/<profile>/`` (:func:`sam_course.train.cache_dir`): a verdict is recorded
    next to the runs it was computed from, and a ``ci`` verdict never shows in a ``book`` build.
    """
    from .profiles import current_profile
    from .train import cache_dir

    return cache_dir() / "verdicts" / current_profile().name


def _verdict_path(name: str) -> Path:
    if not _VERDICT_NAME.fullmatch(check_instance("name", name, str)):
        raise ValueError(f"name must be a glue key of lower-case letters, digits and '_', got {name!r}")
    return verdict_store() / f"{name}.md"


def glue_verdict(name: str, text: str) -> None:
    """Glue a verdict (``{glue:md}`name```) and record it, so that a later chapter quotes it exactly.

    Chapter 15 sums up the verdicts of chapters 7-14 with :func:`recorded_verdict` instead of
    retyping them; ``tools/check_verdicts.py`` checks that every quote equals the glued original of
    the same build. One file per verdict (written whole, then renamed into place), so chapters that
    run at the same time never overwrite each other's verdicts.
    """
    path = _verdict_path(name)
    check_instance("text", text, str)
    glue_markdown(name, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def recorded_verdict(name: str, chapter: str) -> str:
    """The verdict that :func:`glue_verdict` last recorded under ``name`` in this profile.

    Args:
        chapter: where the verdict is computed ("chapter 12"), named in the error.

    Raises:
        LookupError: when no verdict of that name was recorded (run ``chapter`` first; a build of
            the book runs the chapters in order).
    """
    path = _verdict_path(name)
    check_instance("chapter", chapter, str)
    if not path.is_file():
        raise LookupError(f"no verdict {name!r} recorded in {path.parent}: run {chapter} first "
                          "(building the book runs every chapter in order)")
    return path.read_text(encoding="utf-8")


def number_text(value, spec: str, missing: str, template: str = "{}") -> str:
    """``value`` formatted with ``spec`` into ``template``, or the words ``missing`` when it is not finite.

    A quantity that was not measured in a build (a spread over one seed, the epoch of an onset no
    run reached) is NaN, which a reader should never meet in the prose; the chapter says why instead::

        number_text(3.5, ".1f", "not reached", "epoch {}")       # 'epoch 3.5'
        number_text(math.nan, ".1f", "not reached", "epoch {}")  # 'not reached'
    """
    value = as_plain_number(value)
    if not check_instance("missing", missing, str):
        raise ValueError("missing must be a non-empty string (the words shown for an unmeasured value), got ''")
    check_instance("spec", spec, str)
    check_instance("template", template, str)
    if not math.isfinite(value):
        return missing
    return template.format(format(value, spec))


def with_spread(mean, spread, spec: str = ".3f", missing: str = "one seed, no spread") -> str:
    """``"0.881 ± 0.004"``: a mean and its spread in one format, or ``"0.881 (one seed, no spread)"``
    when the spread is not finite (a standard deviation over a single seed)."""
    mean = as_plain_number(mean, "mean")
    spread = as_plain_number(spread, "spread")
    return number_text(spread, spec, f"{mean:{spec}} ({missing})", f"{mean:{spec}} ± {{}}")


def text_table(table, name: str = "value"):
    """A table of words (a chapter's set-up, say) shown whole, left-aligned.

    pandas cuts every cell of a DataFrame's display at 50 characters (``display.max_colwidth``),
    which leaves a set-up table ending in "..."; a Styler shows the full text.

    Args:
        table: a ``pandas.DataFrame``, or a mapping ``row label -> value`` (one column, ``name``).

    Returns:
        A ``pandas.io.formats.style.Styler``, the last expression of a cell.
    """
    import pandas as pd

    check_instance("table", table, (pd.DataFrame, Mapping), "pandas DataFrame or mapping of row label -> value")
    frame = table if isinstance(table, pd.DataFrame) else pd.Series(dict(table), name=name).to_frame()
    return frame.style.set_properties(**{"text-align": "left", "white-space": "normal"})


#: Words for the statistic suffixes that :func:`sam_course.train.summarize` appends.
_STATISTICS = {"mean": "mean", "std": "std", "n": "runs"}
#: Abbreviations a reader knows spelled out; Greek letters for the hyper-parameters.
_WORDS = {"acc": "accuracy", "sam_rho": "ρ", "rho": "ρ", "lr": "learning rate", "lmax": "λmax",
          "lambda_max": "λmax", "sam_adaptive": "adaptive", "noise_rate": "noise rate", "eps_hat": "ε̂",
          "ms": "(ms)", "q25": "25 % quantile", "q75": "75 % quantile", "median": "median"}


def readable_name(name) -> str:
    """A column name for a reader: ``"final_test_acc_mean"`` -> ``"final test accuracy (mean)"``.

    Snake-case identifiers (the fields of :class:`~sam_course.train.RunConfig` and the columns of
    :func:`~sam_course.train.summarize`) become words; any other name is returned unchanged.
    """
    if not isinstance(name, str) or " " in name or not name.islower():
        return name
    if name in _WORDS:
        return _WORDS[name]
    stem, _, stat = name.rpartition("_")
    suffix = ""
    if stem and stat in ("mean", "std"):
        name, suffix = stem, f" ({_STATISTICS[stat]})"
    elif name == "n":
        return "runs"
    words = [_WORDS.get(part, part) for part in name.split("_")]
    return " ".join(words) + suffix


def readable(table):
    """A copy of a ``pandas.DataFrame`` whose column and index names are :func:`readable_name`'s.

    For display only: the cells that follow a table keep indexing the original names.
    """
    import pandas as pd

    out = check_instance("table", table, pd.DataFrame, "pandas DataFrame").rename(columns=readable_name)
    out.index = out.index.set_names([readable_name(n) for n in out.index.names])
    return out


#: The outcomes of :func:`compare`.
COMPARISONS = ("ahead", "behind", "within", "unmeasured")


def compare(difference: float, spread: float, factor: float = 2.0) -> str:
    """Whether ``difference`` stands clear of ``spread``: the course's one verdict rule.

    Returns ``"ahead"`` when ``difference > factor * spread``, ``"behind"`` when
    ``difference < -factor * spread``, ``"within"`` otherwise, and ``"unmeasured"`` when the
    spread is not a finite number (one seed has none). ``spread`` is in the units of
    ``difference``: a seed-to-seed standard deviation, a standard error, or a tolerance.
    """
    factor = check_real("factor", factor, 0, low_open=True)
    if not isinstance(spread, numbers.Real) or not math.isfinite(float(spread)):
        return "unmeasured"
    spread = check_real("spread", spread, 0)
    difference = check_real("difference", difference)
    if difference > factor * spread:
        return "ahead"
    if difference < -factor * spread:
        return "behind"
    return "within"


def verdict(difference: float, spread: float, words: Mapping[str, str], factor: float = 2.0) -> str:
    """The chapter's words for :func:`compare`'s outcome.

    Args:
        words: one template per outcome of :data:`COMPARISONS`; each may use ``{difference}``,
            ``{spread}`` and ``{factor}`` (``"{difference:+.3f}, more than twice {spread:.3f}"``).
    """
    check_instance("words", words, Mapping, "mapping of outcome -> template")
    missing = [kind for kind in COMPARISONS if kind not in words]
    if missing:
        raise ValueError(f"words must give a template for each of {COMPARISONS}, missing {missing}")
    kind = compare(difference, spread, factor)
    return words[kind].format(difference=as_plain_number(difference), spread=as_plain_number(spread),
                              factor=as_plain_number(factor))


def paired_difference(differences: Sequence[float]) -> tuple[float, float]:
    """Mean of paired differences (one per seed) and its standard error ``std / sqrt(n)``.

    The standard error is NaN with fewer than two differences (nothing to measure it by).
    """
    values = [check_real(f"differences[{i}]", d) for i, d in enumerate(_numbers("differences", differences))]
    if not values:
        raise ValueError("differences must hold at least one number, got none")
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def count_verdict(k: int, n: int, unit: str = "seeds") -> str:
    """``"holds in every one of the n <unit>"``, ``"holds in none of them"`` or ``"holds in k of n <unit>"``.

    With ``n = 1``: ``"holds in the single seed"`` or ``"does not hold in the single seed"`` (the
    singular is ``unit`` without its final "s").
    """
    n = check_int("n", n, 1)
    k = check_int("k", k, 0, n)
    if n == 1:
        return f"{'holds' if k else 'does not hold'} in the single {unit.removesuffix('s')}"
    if k == n:
        return f"holds in every one of the {n} {unit}"
    if k == 0:
        return "holds in none of them"
    return f"holds in {k} of {n} {unit}"


def trend(values: Sequence[float]) -> str:
    """``"rises steadily"``, ``"falls steadily"`` or ``"goes up and down"`` for a sequence of numbers."""
    values = [check_real(f"values[{i}]", v) for i, v in enumerate(_numbers("values", values))]
    if len(values) < 2:
        raise ValueError(f"values must hold at least two numbers, got {len(values)}")
    steps = [b - a for a, b in zip(values[:-1], values[1:])]
    if all(s > 0 for s in steps):
        return "rises steadily"
    if all(s < 0 for s in steps):
        return "falls steadily"
    return "goes up and down"


def _numbers(name: str, values) -> Iterable:
    """``values`` when it can be read as numbers one by one (a list, an array, a Series); not a string."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise wrong_kind(name, values, "sequence of numbers")
    return values
