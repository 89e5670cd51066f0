"""The pages of the book's table of contents (_toc.yml), in reading order.

Used by `make test` (nbval runs on every notebook listed here), by the rendered-page check
(tools/check_rendered.py loads every page) and by tests/test_repo.py.

    python tools/toc_notebooks.py          # the .ipynb chapters, one path a line
    python tools/toc_notebooks.py --all    # every page (source path), one a line
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_SUFFIXES = (".ipynb", ".md")


def _load_yaml(path: Path):
    try:
        import yaml
    except ImportError:  # pragma: no cover - the venv always has it
        sys.exit("error: PyYAML is missing; run `make setup` (or pip install pyyaml)")
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _walk(node) -> list[str]:
    """Every `file:` entry under a TOC node, depth first (reading order)."""
    docs: list[str] = []
    if isinstance(node, dict):
        if "file" in node:
            docs.append(str(node["file"]))
        for key in ("root", "parts", "chapters", "sections"):
            if key == "root" and key in node:
                docs.insert(0, str(node["root"]))
            elif key in node:
                for child in node[key] or []:
                    docs.extend(_walk(child))
    elif isinstance(node, list):
        for child in node:
            docs.extend(_walk(child))
    return docs


def toc_docnames(toc: Path | None = None) -> list[str]:
    """The documents of the TOC (paths relative to the repository root, no extension)."""
    data = _load_yaml(toc or ROOT / "_toc.yml")
    docs = _walk(data)
    for doc in docs:
        for suffix in SOURCE_SUFFIXES:
            if doc.endswith(suffix):
                raise ValueError(f"_toc.yml: write {doc!r} without its extension")
    return docs


def source_path(doc: str, root: Path = ROOT) -> Path:
    """The source file of a TOC document (.ipynb preferred over .md)."""
    for suffix in SOURCE_SUFFIXES:
        candidate = root / f"{doc}{suffix}"
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"_toc.yml lists {doc!r} but neither {doc}.ipynb nor {doc}.md exists")


def toc_sources(root: Path = ROOT) -> list[Path]:
    """The source file of every TOC page, in reading order."""
    return [source_path(doc, root) for doc in toc_docnames(root / "_toc.yml")]


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks (.ipynb) of the TOC, in reading order."""
    return [path for path in toc_sources(root) if path.suffix == ".ipynb"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every page, not only the notebooks")
    args = parser.parse_args(argv)
    paths = toc_sources() if args.all else toc_notebooks()
    for path in paths:
        print(path.relative_to(ROOT).as_posix())
    return 0


if __name__ == "__main__":
    sys.exit(main())
