"""Sphinx extension: the API page documents every module of sam_course, found at build time.

book/api.md holds the line ``<!-- sam_course-modules -->``; when Sphinx reads that page, this
extension replaces the line with one section per public module of the package (an ``automodule``
of each ``sam_course/*.py`` whose name does not start with ``_``), in the order of the course
(``ORDER``), then any other module alphabetically. A module added to the package therefore
appears in the API reference without editing the page. Loaded from _config.yml
(sphinx.local_extensions).
"""

from __future__ import annotations

from pathlib import Path

MARKER = "<!-- sam_course-modules -->"
PAGE = "book/api"
PACKAGE = Path(__file__).resolve().parents[2] / "sam_course"
#: Modules in the order the book introduces them; others follow alphabetically.
ORDER = ("optim", "scaling", "sam_gradient", "msharpness", "msam_lowrank", "variants", "bound", "noise", "functions", "data", "models",
         "train", "experiments", "landscape", "hessian", "paper", "plotting", "timing", "profiles", "notebook")


def public_modules(package: Path = PACKAGE) -> list[str]:
    """The public modules of the package, in the book's order."""
    names = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    ordered = [n for n in ORDER if n in names]
    return ordered + sorted(names - set(ordered))


def api_sections(package: Path = PACKAGE) -> str:
    """MyST source: a section with an automodule for each public module."""
    return "\n".join(
        f"## `sam_course.{name}`\n\n```{{eval-rst}}\n.. automodule:: sam_course.{name}\n```\n"
        for name in public_modules(package)
    )


def insert_modules(app, docname: str, source: list[str]) -> None:
    if docname == PAGE and MARKER in source[0]:
        source[0] = source[0].replace(MARKER, api_sections())


def setup(app):
    app.connect("source-read", insert_modules)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
