"""The book's verdicts are reviewed when they change: compare them with the stored ones.

Every sentence that states a comparison (who is ahead, whether a difference exceeds the spread,
whether the paper's claim is reproduced) is glued from a cell through ``sam_course.report`` into
the prose. When a code or data change flips one, the prose around it may no longer read right, so
this check compares the glued verdicts of a built book with ``book/verdicts/<profile>.json``:

    python tools/check_verdicts.py ci _build/ci/_build/.jupyter_cache     # `make test` runs it
    python tools/check_verdicts.py book _build/.jupyter_cache             # `make book` runs it
    python tools/check_verdicts.py book _build/.jupyter_cache --update    # after reading the prose

Numbers inside a verdict are masked (``#``): a verdict is its words, so a new digit in a build
does not fail the check, a changed outcome ("ahead" turning into "within") does. Read the
sentences around each changed key in the rendered book, then store the new verdicts with
``--update`` and commit them with the prose.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "book" / "verdicts"
#: The glued verdicts: every glue key whose value is a comparison in words.
VERDICT_KEYS = (
    "ch07_verdict_pair", "ch08_verdict_main", "ch08_memorization_verdict", "ch09_best_verdict",
    "ch09_line_verdict", "ch09_mlp_verdict", "ch09_cnn_verdict", "ch11_verdict_last", "ch11_verdict_best",
    "ch11_peak_high", "ch12_verdict_0", "ch12_verdict_1", "ch12_trend_0", "ch12_trend_1",
    "ch12_tau_trend_acc", "ch12_tau_trend_loss", "ch12_tau_vs_base", "ch12_tau_conclusion",
    "ch13_verdict_lmax", "ch13_verdict_ratio", "ch13_verdict_rise", "ch13_trace_verdict",
    "ch07_no_hurt", "ch07_direction", "ch07_ahead", "ch07_seed_gap", "ch07_sam_sgd_gain_verdict", "ch07_sam_memorizes",
    "ch07_larger_radii",
    "ch07_sam_adam_gain_verdict", "ch13_ratio_verdict",
    "ch14_best_verdict", "ch14_last_sam_verdict", "ch14_every_k_trend", "ch14_looksam_verdict",
    "ch14_default_verdict", "ch14_base_sgd_verdict_best", "ch14_base_sgd_verdict_final", "ch14_base_adam_vs_sgd",
    "ch14_base_sam_adam_vs_sgd",
    "tf_usam_stall_verdict", "tf_gsam_stall_verdict", "tf_usam_stay_verdict", "tf_gsam_stay_verdict",
)
#: Chapter 15 quotes a chapter's verdict ``chNN_x`` under ``ch15_chNN_x`` (report.recorded_verdict).
QUOTE_PREFIX = "ch15_"
# A number, but not one that is part of a name ("CIFAR-10", "1-D", "S_m").
NUMBER = re.compile(r"(?<![A-Za-z_\d.,])(?<![A-Za-z]-)[-+−]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?%?(?!-D)")


def mask(text: str) -> str:
    """The words of a verdict, every number replaced by ``#``."""
    return NUMBER.sub("#", text).strip()


def execute_folder(path: Path) -> Path:
    """The ``jupyter_execute`` folder of a build, given the build's ``.jupyter_cache`` or its ``_build``."""
    return path.parent / "jupyter_execute" if path.name == ".jupyter_cache" else path / "jupyter_execute"


def glued_values(path: Path) -> dict[str, str]:
    """Glue key -> its text (Markdown or plain) in every notebook of a build.

    myst-nb writes each notebook's glue to ``jupyter_execute/**/<name>.glue.json`` whenever it
    reads the notebook, whether its outputs came from the execution cache or from an execution
    (chapter 15 is executed on every build and never cached), so these files are the build's
    current values. ``path`` is the build's ``.jupyter_cache`` or ``_build`` folder.
    """
    folder = execute_folder(path)
    files = sorted(folder.rglob("*.glue.json"))
    if not files:
        raise SystemExit(f"error: no *.glue.json in {folder}: build the book first")
    values = {}
    for file in files:
        for name, output in json.loads(file.read_text(encoding="utf-8")).items():
            data = output.get("data", {})
            prefix = output.get("metadata", {}).get("scrapbook", {}).get("mime_prefix", "")
            text = data.get("text/markdown", data.get(prefix + "text/markdown",
                            data.get("text/plain", data.get(prefix + "text/plain"))))
            if text is None:
                continue
            text = "".join(text) if isinstance(text, list) else str(text)
            if "text/markdown" not in data and text[:1] in "'\"":
                text = ast.literal_eval(text)      # glue_text's words arrive as their repr
            values[name] = text
    return values


def current_verdicts(cache_dir: Path) -> dict[str, str]:
    values = glued_values(cache_dir)
    missing = [key for key in VERDICT_KEYS if key not in values]
    if missing:
        raise SystemExit(f"error: the built book glues none of {missing}: a chapter renamed or dropped them")
    return {key: mask(values[key]) for key in VERDICT_KEYS}


def misquotes(values: dict[str, str]) -> list[str]:
    """Every quote of chapter 15 that is not, word for word and digit for digit, the glued original.

    Chapter 15 reads the verdicts recorded when chapters 11-14 ran; a quote differs from the
    original when the summary was executed against another run of a chapter (a stale cache entry).
    """
    quotes = {key: key.removeprefix(QUOTE_PREFIX) for key in values
              if key.startswith(QUOTE_PREFIX) and key.removeprefix(QUOTE_PREFIX) in VERDICT_KEYS}
    if not quotes:
        return ["chapter 15 quotes no verdict (no ch15_chNN_... glue): its summary is typed again?"]
    return [f"{quote}:\n  chapter 15: {values[quote]!r}\n  original:   {values.get(original)!r}"
            for quote, original in sorted(quotes.items()) if values[quote] != values.get(original)]


def differences(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    return [f"{key}:\n  stored:  {stored.get(key)!r}\n  now:     {current.get(key)!r}"
            for key in sorted(set(stored) | set(current)) if stored.get(key) != current.get(key)]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    profile, cache_dir, update = argv[0], Path(argv[1]), "--update" in argv
    path = STORE / f"{profile}.json"
    current = current_verdicts(cache_dir)
    wrong = misquotes(glued_values(cache_dir))
    if wrong:
        print("chapter 15 misquotes the chapters' verdicts (rebuild: chapter 15 is executed on every build):\n"
              + "\n".join(wrong), file=sys.stderr)
        return 1
    if update:
        path.write_text(json.dumps(current, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        print(f"stored {len(current)} verdicts in {path.relative_to(ROOT)}")
        return 0
    if not path.is_file():
        print(f"error: {path} is missing; store the verdicts with --update after reading them", file=sys.stderr)
        return 1
    changed = differences(json.loads(path.read_text(encoding="utf-8")), current)
    if changed:
        print(f"{len(changed)} glued verdicts of the {profile} build changed. Read the prose around them in the "
              f"rendered book, then run: python tools/check_verdicts.py {profile} {cache_dir} --update\n"
              + "\n".join(changed), file=sys.stderr)
        return 1
    print(f"the {len(current)} glued verdicts of the {profile} build are the stored ones")
    return 0


def test_masking_keeps_the_words_and_names():
    assert mask("SAM-Adam is +0.031 ahead (2.4e-05, 20%) on CIFAR-10, 1-D slices") == \
        "SAM-Adam is # ahead (#, #) on CIFAR-10, 1-D slices"


def test_misquotes_finds_a_stale_or_missing_quote():
    values = {"ch12_verdict_0": "+0.01, within", "ch15_ch12_verdict_0": "+0.01, within"}
    assert misquotes(values) == []
    assert "ch15_ch12_verdict_0" in misquotes({**values, "ch15_ch12_verdict_0": "+0.02, ahead"})[0]
    assert "quotes no verdict" in misquotes({"ch12_verdict_0": "x"})[0]


def test_chapter_15_quotes_the_verdicts_of_the_same_build():
    """Run by `make test` on the strict ci build (VERDICTS_CACHE names its jupyter cache)."""
    import os

    import pytest

    cache_dir = os.environ.get("VERDICTS_CACHE")
    if not cache_dir:
        pytest.skip("VERDICTS_CACHE not set (not run by make test)")
    wrong = misquotes(glued_values(Path(cache_dir)))
    assert not wrong, "chapter 15 misquotes the chapters' verdicts:\n" + "\n".join(wrong)


def test_built_verdicts_are_the_stored_ones():
    """Run by `make test` on the strict ci build (VERDICTS_CACHE names its jupyter cache)."""
    import os

    import pytest

    cache_dir = os.environ.get("VERDICTS_CACHE")
    if not cache_dir:
        pytest.skip("VERDICTS_CACHE not set (not run by make test)")
    profile = os.environ.get("SAM_COURSE_PROFILE", "ci")
    stored = json.loads((STORE / f"{profile}.json").read_text(encoding="utf-8"))
    changed = differences(stored, current_verdicts(Path(cache_dir)))
    assert not changed, (f"glued verdicts of the {profile} build changed; read the prose around them, then run "
                         f"python tools/check_verdicts.py {profile} {cache_dir} --update\n" + "\n".join(changed))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
