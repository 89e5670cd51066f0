"""Empty a Jupyter Book execution cache when the code the notebooks import has changed.

Jupyter Book's execution cache (`execute_notebooks: cache`) re-executes a notebook only when the
notebook's own code changes. The chapters' results also depend on the sam_course package and on
the pinned dependencies, which the cache does not see: after a fix in sam_course the book would
keep showing outputs computed with the old code. The Makefile calls this script before each
build; it hashes sam_course/**/*.py, requirements.txt and pyproject.toml and, when the hash
differs from the one recorded in the build folder, deletes the execution cache and Sphinx's
saved environment (which would otherwise skip unchanged notebooks without reading them), so
that every chapter is executed again.

    python tools/cache_guard.py _build          # the build folder: <path-output>/_build
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def inputs_digest(root: Path = ROOT) -> str:
    """SHA-256 over the package sources and the dependency pins (paths and contents)."""
    files = sorted((root / "sam_course").rglob("*.py")) + [root / "requirements.txt", root / "pyproject.toml"]
    digest = hashlib.sha256()
    for path in files:
        if path.exists() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


#: What a change of inputs invalidates, inside the build folder.
STALE = (".jupyter_cache", ".doctrees", "jupyter_execute")
#: Where the digest of the inputs that filled the cache is kept, inside the build folder.
RECORD = ".jupyter_cache.inputs"


def guard(build: Path, root: Path = ROOT) -> bool:
    """Empty the caches of `build` when the inputs changed since they were filled.

    Returns True when something was deleted.
    """
    record = build / RECORD
    current = inputs_digest(root)
    previous = record.read_text().strip() if record.exists() else None
    if previous == current:
        return False
    stale = [build / name for name in STALE if (build / name).exists()]
    if stale:
        print(f"cache_guard: sam_course or the pins changed since the last build in {build}; "
              "emptying its execution cache so that every notebook is executed again")
    for path in stale:
        shutil.rmtree(path)
    build.mkdir(parents=True, exist_ok=True)
    record.write_text(current + "\n")
    return bool(stale)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    guard(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
