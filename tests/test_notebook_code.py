"""The chapters' code goes through the package: no function is written twice, glue has one idiom.

Every code cell of every chapter is parsed (IPython magics and shell lines blanked). A function or
class defined at the top level of a cell is *notebook code*; the tests fail when the same name,
or the same body under another name, is defined in two chapters, or in a chapter and the package
(then it belongs in the package, ``CONTRIBUTING.md``). Functions nested in a cell's function,
such as SAM's ``closure``, are part of that function and not compared.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import toc_notebooks  # noqa: E402
from tag_cells import HIDING_TAGS, is_bookkeeping  # noqa: E402

CHAPTERS = toc_notebooks.toc_notebooks()
#: A code cell with more non-blank lines than this says why in a comment that starts with
#: "# One cell:" (one figure of several panels, say, which matplotlib shows at the end of a cell).
MAX_CELL_LINES = 20
LONG_CELL_MARK = "# One cell:"


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def parse_cell(source: str) -> ast.Module:
    # %magics and !shell lines are IPython syntax; `pass` keeps the block and the line numbers.
    return ast.parse(re.sub(r"^(\s*)[%!].*$", r"\1pass", source, flags=re.M))


def body_key(node: ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef) -> str:
    """The definition without its name and docstring: two copies under other names compare equal."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    args = ast.dump(node.args) if hasattr(node, "args") else ""
    return args + "|" + "".join(ast.dump(stmt) for stmt in body)


def notebook_definitions() -> dict[str, list[tuple[str, str]]]:
    """Name -> [(chapter, body key)] for every top-level function and class of every chapter."""
    found = defaultdict(list)
    for path in CHAPTERS:
        for source in code_cells(path):
            for node in parse_cell(source).body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    found[node.name].append((path.name, body_key(node)))
    return found


def package_definitions() -> dict[str, str]:
    """Public name -> body key of every top-level function and class of the package."""
    found = {}
    for path in sorted((ROOT / "sam_course").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.setdefault(node.name, body_key(node))
    return found


def test_chapters_are_found():
    names = {p.name for p in CHAPTERS}
    assert {"01-sharp-and-flat-minima.ipynb", "how-to-use.ipynb", "15-conclusions.ipynb"} <= names


def test_no_function_is_defined_in_two_chapters():
    twice = {name: sorted({chapter for chapter, _ in places}) for name, places in notebook_definitions().items()
             if len({chapter for chapter, _ in places}) > 1}
    assert not twice, f"defined in several chapters (move them into the package): {twice}"


def test_no_body_is_written_twice_under_other_names():
    by_body = defaultdict(set)
    for name, places in notebook_definitions().items():
        for chapter, key in places:
            by_body[key].add(f"{chapter}:{name}")
    for name, key in package_definitions().items():
        by_body[key].add(f"sam_course:{name}")
    copies = [sorted(places) for places in by_body.values() if len({p.split(":")[0] for p in places}) > 1]
    assert not copies, f"the same code in several places: {copies}"


def test_no_chapter_redefines_a_package_function():
    package = {name for name in package_definitions() if not name.startswith("_")}
    clash = {name: sorted({c for c, _ in places}) for name, places in notebook_definitions().items() if name in package}
    assert not clash, f"chapters define functions the package already has (import them): {clash}"


def test_the_duplicate_check_can_fail():
    """The comparison sees through a rename and a docstring: the checks above are not vacuous."""
    a = ast.parse('def f(x):\n    """doc"""\n    return x + 1').body[0]
    b = ast.parse("def g(x):\n    return x + 1").body[0]
    c = ast.parse("def g(x):\n    return x + 2").body[0]
    assert body_key(a) == body_key(b) != body_key(c)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_glue_goes_through_the_package(path):
    """One idiom: sam_course.report's glue_number / glue_text / glue_markdown / glue_figure."""
    for source in code_cells(path):
        tree = parse_cell(source)
        direct = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                  and n.func.id == "glue"]
        assert not direct, f"{path.name}: myst_nb.glue called directly (use sam_course.report): {source[:200]}"
        assert "set_printoptions(legacy" not in source, f"{path.name}: the NumPy print work-around is not needed"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_cells_are_short(path):
    long = [source.splitlines()[0] for source in code_cells(path)
            if sum(1 for line in source.splitlines() if line.strip()) > MAX_CELL_LINES and LONG_CELL_MARK not in source]
    assert not long, (f"{path.name}: {len(long)} code cells over {MAX_CELL_LINES} lines without a "
                      f"'{LONG_CELL_MARK} <why>' comment, starting: {long}")


def test_the_bookkeeping_rule_can_fail():
    assert is_bookkeeping('x = 1\nglue_number("k", x)')
    assert not is_bookkeeping('glue_number("k", 1)\ntable')
    assert not is_bookkeeping("x = 1")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_bookkeeping_cells_are_hidden(path):
    """A cell that only glues values is folded in the rendered book (``tools/tag_cells.py`` tags them)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    shown = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and is_bookkeeping("".join(c["source"]))
             and not HIDING_TAGS & set(c.get("metadata", {}).get("tags", []))]
    assert not shown, f"{path.name}: cells {shown} only glue values; tag them hide-input (python tools/tag_cells.py)"
