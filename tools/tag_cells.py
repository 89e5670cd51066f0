"""Fold the chapters' bookkeeping cells: tag ``hide-input`` every code cell that only glues values.

A cell whose statements are glue calls (and the assignments that feed them) shows the reader
nothing but the prose it fills; the rendered book folds it behind a "Show code" button, where it
stays one click away. ``tests/test_notebook_code.py`` fails on an untagged one. Usage:
``python tools/tag_cells.py [notebook ...]`` (default: every chapter in the TOC).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import toc_notebooks  # noqa: E402

#: Glue calls: they record a value for the prose and display nothing.
GLUE_CALLS = {"glue_number", "glue_numbers", "glue_markdown", "glue_text", "glue_figure"}
HIDING_TAGS = {"remove-input", "hide-input", "remove-cell", "hide-cell"}


def is_glue_call(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")) in GLUE_CALLS
    if isinstance(stmt, ast.For):
        return all(is_glue_call(s) or isinstance(s, ast.Assign) for s in stmt.body)
    return False


def is_bookkeeping(source: str) -> bool:
    """Only glue calls and the assignments that feed them: nothing a reader sees but the prose it fills."""
    body = ast.parse(re.sub(r"^(\s*)[%!].*$", r"\1pass", source, flags=re.M)).body
    return any(map(is_glue_call, body)) and all(
        is_glue_call(s) or isinstance(s, (ast.Assign, ast.AugAssign, ast.Import, ast.ImportFrom, ast.Pass)) for s in body)



def tag(path: Path) -> list[int]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    tagged = []
    for i, cell in enumerate(notebook["cells"]):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if cell["cell_type"] == "code" and is_bookkeeping("".join(cell["source"])) and not HIDING_TAGS & set(tags):
            tags.append("hide-input")
            tagged.append(i)
        if not tags:
            del cell["metadata"]["tags"]
    if tagged:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return tagged


if __name__ == "__main__":
    for path in map(Path, sys.argv[1:]) if len(sys.argv) > 1 else toc_notebooks.toc_notebooks():
        cells = tag(path)
        if cells:
            print(f"{path.name}: hide-input on cells {cells}")
