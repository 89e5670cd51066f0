"""Sphinx extension: the API page documents every module of sam_course, found at build time.

book/api.md holds the line ``<!-- sam_course-modules -->``; when Sphinx reads that page, this
extension replaces the line with one section per public module of the package: every
``sam_course/**/*.py`` whose path has no part starting with ``_``, by dotted name, in the order of
the course (``ORDER``; a module not named there follows the package above it, alphabetically). A
module added to the package therefore appears in the API reference without editing the page.

A package whose ``__init__`` only re-exports its submodules' names (it has submodules) gets its
docstring and, for each re-exported name, a short entry pointing to the submodule that defines
it, so ``sam_course.optim.SAM`` and ``sam_course.optim.sam.SAM`` both resolve. Loaded from
_config.yml (sphinx.local_extensions).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

MARKER = "<!-- sam_course-modules -->"
PAGE = "book/api"
PACKAGE = Path(__file__).resolve().parents[2] / "sam_course"
#: Modules in the order the book introduces them (by prefix); others follow alphabetically.
ORDER = ("optim", "optim.sam", "optim.perturbation", "optim.variants", "optim.gsam", "optim.msam", "optim.msam_lowrank",
         "optim.schedules", "optim.friendly", "optim.momentum_sam",
         "optim.distributed", "theory", "noise", "planar", "data", "models", "base_optimizers", "train", "experiments",
         "curvature", "paper", "plotting", "timing", "profiles", "report", "examples")


def _dotted(path: Path, package: Path) -> str:
    rel = path.relative_to(package).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def public_modules(package: Path = PACKAGE) -> list[str]:
    """Dotted names (relative to ``sam_course``) of the public modules and packages, in the book's order."""
    names = set()
    for path in package.rglob("*.py"):
        rel = path.relative_to(package)
        if any(part.startswith("_") for part in rel.parts[:-1]) or (rel.name.startswith("_") and rel.name != "__init__.py"):
            continue
        name = _dotted(path, package)
        if name:
            names.add(name)

    def rank(name: str) -> tuple:
        # The longest entry of ORDER that is the name or a package above it places the name.
        known = [i for i, entry in enumerate(ORDER) if name == entry or name.startswith(entry + ".")]
        if not known:
            return (len(ORDER), name)
        best = max(known, key=lambda i: len(ORDER[i]))
        return (best, "" if name == ORDER[best] else name)

    return sorted(names, key=rank)


def is_reexporting_package(name: str, package: Path = PACKAGE) -> bool:
    """True for a package with submodules: its ``__init__`` re-exports, the submodules document."""
    folder = package.joinpath(*name.split("."))
    return folder.is_dir() and any(p.name != "__init__.py" for p in folder.glob("*.py"))


def _home(module, member: str) -> str | None:
    """The submodule of ``module`` that lists ``member`` in its ``__all__`` (where it is documented)."""
    folder = Path(module.__file__).parent
    for path in sorted(folder.glob("*.py")):
        if path.name == "__init__.py":
            continue
        sub = importlib.import_module(f"{module.__name__}.{path.stem}")
        if member in getattr(sub, "__all__", ()):
            return sub.__name__
    return None


def _reexports(name: str) -> str:
    module = importlib.import_module(f"sam_course.{name}")
    lines = []
    for member in getattr(module, "__all__", ()):
        obj = getattr(module, member)
        home = _home(module, member)
        if inspect.ismodule(obj) or home is None:
            continue
        kind = "class" if inspect.isclass(obj) else "function" if inspect.isroutine(obj) else "data"
        role = {"class": "class", "function": "func", "data": "data"}[kind]
        lines += [f".. py:{kind}:: {member}", "", f"   Re-exported from :{role}:`{home}.{member}`.", ""]
    if not lines:
        return ""
    return "```{eval-rst}\n.. py:currentmodule:: " + module.__name__ + "\n\n" + "\n".join(lines) + "```\n"


def api_sections(package: Path = PACKAGE) -> str:
    """MyST source: a section with an automodule for each public module."""
    sections = []
    for name in public_modules(package):
        if is_reexporting_package(name, package):
            body = f"```{{eval-rst}}\n.. automodule:: sam_course.{name}\n   :no-members:\n```\n\n{_reexports(name)}"
        else:
            body = f"```{{eval-rst}}\n.. automodule:: sam_course.{name}\n```\n"
        sections.append(f"## `sam_course.{name}`\n\n{body}")
    return "\n".join(sections)


def insert_modules(app, docname: str, source: list[str]) -> None:
    if docname == PAGE and MARKER in source[0]:
        source[0] = source[0].replace(MARKER, api_sections())


def setup(app):
    app.connect("source-read", insert_modules)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
