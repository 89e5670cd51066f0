"""Strip outputs, execution counts and run-time metadata from the book's notebooks.

Chapters are committed without outputs (the book build executes them); tests/test_repo.py fails
on any output left. Run before committing:

    python tools/strip_outputs.py                 # every notebook under book/ (`make strip`)
    python tools/strip_outputs.py book/x.ipynb    # only these
    python tools/strip_outputs.py --check         # change nothing; exit 1 naming each notebook
                                                  # that still has outputs (`make lint`, pre-commit)

Uses only the standard library, so any Python 3 runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Cell metadata written by Jupyter while running, not part of the chapter.
RUNTIME_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")
#: Notebook metadata holding run-time state.
RUNTIME_NOTEBOOK_METADATA = ("widgets", "varInspector", "toc-autonumbering")


def strip(nb: dict) -> dict:
    """The notebook without outputs, execution counts or run-time metadata (modified in place)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        for key in RUNTIME_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
    for key in RUNTIME_NOTEBOOK_METADATA:
        nb.get("metadata", {}).pop(key, None)
    return nb


def notebooks(paths: list[str]) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    return sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                  if "_build" not in p.parts and ".ipynb_checkpoints" not in p.parts)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    dirty = []
    for path in notebooks([a for a in argv if a != "--check"]):
        text = path.read_text(encoding="utf-8")
        stripped = json.dumps(strip(json.loads(text)), indent=1, ensure_ascii=False) + "\n"
        if stripped != text:
            dirty.append(path)
            if not check:
                path.write_text(stripped, encoding="utf-8")
                print(f"stripped {path}")
    if check and dirty:
        for path in dirty:
            print(f"{path}: has outputs or run-time metadata; run `make strip`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
