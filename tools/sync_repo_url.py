"""Copy the repository URL from _config.yml everywhere else it appears.

`repository.url` and `repository.branch` in _config.yml are the one place that names the
repository. The launch buttons read them directly; this script writes them into the places that
cannot read the config:

- the first cell of every notebook under book/ (tagged ``remove-cell``, hidden in the book), which
  installs sam_course from the repository in Colab and Binder when it is not importable;
- the Colab and Binder badges of README.md.

    python tools/sync_repo_url.py           # rewrite what is out of date (`make sync-url`)
    python tools/sync_repo_url.py --check   # exit 1 and list what is out of date

tests/test_repo.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TAG = "remove-cell"
README_BLOCK = re.compile(r"(<!-- launch-badges -->\n)(.*?)(<!-- /launch-badges -->)", re.S)


def repository() -> tuple[str, str]:
    """(url, branch) from _config.yml, read without PyYAML so the script runs with any Python."""
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    block = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)+)", text, re.M)
    if not block:
        raise SystemExit("error: _config.yml has no `repository:` section")
    fields = dict(re.findall(r"^[ \t]+(\w+)\s*:\s*([^#\n]*?)\s*(?:#.*)?$", block.group(1), re.M))
    url = fields.get("url", "").strip("\"'").rstrip("/")
    branch = fields.get("branch", "main").strip("\"'") or "main"
    if not url.startswith("https://github.com/"):
        raise SystemExit(f"error: repository.url in _config.yml must be a GitHub URL, got {url!r}")
    return url, branch


def install_cell_source(url: str, branch: str) -> str:
    """The source of the install cell that starts every chapter."""
    return (
        "# Colab or Binder: install sam_course from the repository (does nothing when it is installed).\n"
        "try:\n"
        "    import sam_course  # noqa: F401 (only: is it installed?)\n"
        "except ImportError:\n"
        f'    %pip install -q "sam_course[book] @ git+{url}@{branch}"'
    )


def readme_badges(url: str, branch: str) -> str:
    """The README's launch badges (between the launch-badges markers)."""
    slug = url.removeprefix("https://github.com/")
    notebook = "book/how-to-use.ipynb"
    return (
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{slug}/blob/{branch}/{notebook})\n"
        f"[![Launch Binder](https://mybinder.org/badge_logo.svg)]"
        f"(https://mybinder.org/v2/gh/{slug}/{branch}?labpath={notebook})\n"
    )


def chapter_notebooks() -> list[Path]:
    """Every notebook under book/ (chapters and the template), build outputs excluded."""
    return sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                  if "_build" not in p.parts and ".ipynb_checkpoints" not in p.parts)


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _sync_notebook(path: Path, expected: str, write: bool) -> str | None:
    """None when the notebook's first cell is the install cell; else what is wrong."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    first = cells[0] if cells else {}
    is_install = (first.get("cell_type") == "code" and INSTALL_TAG in first.get("metadata", {}).get("tags", [])
                  and "import sam_course" in _source(first))
    if is_install and _source(first) == expected:
        return None
    problem = ("install cell out of date" if is_install
               else f"first cell is not the install cell (a code cell tagged {INSTALL_TAG})")
    if write:
        cell = {"cell_type": "code", "execution_count": None, "id": "install-sam-course",
                "metadata": {"tags": [INSTALL_TAG]}, "outputs": [], "source": expected}
        if is_install:
            first["source"] = expected
        else:
            if nb.get("nbformat", 4) == 4 and nb.get("nbformat_minor", 0) < 5:
                del cell["id"]  # cell ids exist from nbformat 4.5 on
            elif cell["id"] in {c.get("id") for c in cells}:
                cell["id"] = "install-sam-course-0"
            cells.insert(0, cell)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return problem


def check(write: bool = False) -> list[str]:
    """What is out of date (fixed when `write`), as 'path: problem' lines."""
    url, branch = repository()
    problems = []
    expected = install_cell_source(url, branch)
    for path in chapter_notebooks():
        problem = _sync_notebook(path, expected, write)
        if problem:
            problems.append(f"{path.relative_to(ROOT)}: {problem}")
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    match = README_BLOCK.search(text)
    badges = readme_badges(url, branch)
    if not match:
        problems.append("README.md: no <!-- launch-badges --> ... <!-- /launch-badges --> block")
    elif match.group(2) != badges:
        problems.append("README.md: launch badges out of date")
        if write:
            readme.write_text(text[: match.start(2)] + badges + text[match.end(2):], encoding="utf-8")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report, change nothing")
    args = parser.parse_args(argv)
    problems = check(write=not args.check)
    for line in problems:
        print(("out of date: " if args.check else "updated: ") + line)
    if args.check and problems:
        print("run `make sync-url` (python tools/sync_repo_url.py) to fix", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
