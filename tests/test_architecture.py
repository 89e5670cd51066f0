"""The package's layers (ARCHITECTURE.md), enforced: who may import whom, what ``import SAM`` loads,
and how long a module may grow.

The import graph is read from every module's AST, imports inside functions included, so a lazy
import cannot hide a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sam_course"
#: Every module stays under this many lines (a module holds one idea).
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module that ``path`` imports (``from . import x`` resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            # `from pkg import sub` imports the submodule pkg.sub; `from pkg import name`, pkg itself.
            subs = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES}
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(base)
    return found


def internal_imports(name: str) -> set[str]:
    return {m for m in imports_of(MODULES[name]) if m == "sam_course" or m.startswith("sam_course.")} - {name}


def layer(name: str) -> str:
    """``checks``, ``params``, ``optim``, ``integrations``, ``book`` (plotting, report) or ``lab`` (everything else)."""
    rel = name.removeprefix("sam_course").lstrip(".")
    top = rel.split(".")[0]
    if top == "_checks":
        return "checks"
    if top == "_params":
        return "params"
    if top == "optim":
        return "optim"
    if top == "integrations":
        return "integrations"
    if top in ("plotting", "report"):
        return "book"
    return "top" if rel == "" else "lab"


#: Which layers each layer may import (ARCHITECTURE.md draws the same table).
ALLOWED = {
    "checks": set(),
    "params": {"checks"},
    "optim": {"optim", "checks", "params"},
    # Adapters to training frameworks: the optimizer and nothing of the lab.
    "integrations": {"integrations", "optim", "checks", "params"},
    "lab": {"lab", "optim", "checks", "params"},
    "book": {"book", "lab", "optim", "checks", "params"},
    "top": {"optim"},
}


def test_every_module_is_seen():
    assert {"sam_course", "sam_course.optim.sam", "sam_course._checks", "sam_course.report"} <= set(MODULES)
    assert imports_of(MODULES["sam_course.optim.variants"]) >= {"sam_course.optim.sam"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_only_the_layers_below_it(name):
    bad = {m for m in internal_imports(name) if m != "sam_course" and layer(m) not in ALLOWED[layer(name)]}
    # The top package itself is only the lazy loader: no module imports `sam_course` for its contents.
    bad |= {m for m in internal_imports(name) if m == "sam_course" and layer(name) != "top"}
    assert not bad, f"{name} ({layer(name)} layer) imports {sorted(bad)}; ARCHITECTURE.md says which layers it may use"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_the_book_tools_or_tests(name):
    tops = {m.split(".")[0] for m in imports_of(MODULES[name])}
    assert not tops & {"book", "tools", "tests", "conftest"}


def test_the_layer_rule_catches_a_violation(tmp_path):
    """The rule above is not vacuous: an optimizer module importing the models would fail it."""
    assert layer("sam_course.models") == "lab" and "lab" not in ALLOWED["optim"]
    assert layer("sam_course.plotting.style") == "book" and "book" not in ALLOWED["lab"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_short(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines (at most {MAX_LINES}: split it)"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_is_imported_across_modules(name):
    """Helpers shared between modules are public (``_checks`` and ``_params`` are private modules
    with public names); ``from .x import _y`` couples a module to another's internals."""
    tree = ast.parse(MODULES[name].read_text())
    private = [f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
    assert not private, f"{name} imports private names {private}"


FORBIDDEN_AFTER_SAM = ["pandas", "matplotlib", "scipy", "torchvision", "seaborn", "mlxtend", "sam_course.data",
                       "sam_course.train", "sam_course.models", "sam_course.plotting", "sam_course.report",
                       "lightning", "transformers", "timm", "accelerate", "sam_course.integrations"]


@pytest.mark.parametrize("statement", ["import sam_course", "from sam_course import SAM",
                                       "from sam_course.optim import SAM, LookSAM"])
def test_importing_the_optimizer_loads_torch_and_nothing_of_the_lab(statement):
    code = f"import sys\n{statement}\nprint(sorted(m for m in {FORBIDDEN_AFTER_SAM!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"{statement} loaded {out.stdout.strip()}"


def test_integrations_import_only_their_framework_and_the_optimizer():
    """Each adapter imports its framework at the top (it is importable only where that is installed)."""
    assert layer("sam_course.integrations.lightning") == "integrations" and "lab" not in ALLOWED["integrations"]
    assert "lightning" in {m.split(".")[0] for m in imports_of(MODULES["sam_course.integrations.lightning"])}
    assert "integrations" not in ALLOWED["optim"] | ALLOWED["top"]


def test_lazy_modules_load_on_first_use():
    code = ("import sys, sam_course\nassert 'sam_course.train' not in sys.modules\n"
            "sam_course.train.RunConfig\nprint('sam_course.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "True"
    import sam_course

    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        sam_course.nonexistent  # noqa: B018


def test_optim_is_an_import_path():
    from sam_course import SAM
    from sam_course.optim import SAM as SAM_optim
    from sam_course.optim.sam import SAM as SAM_sam

    assert SAM is SAM_optim is SAM_sam


@pytest.mark.parametrize("name", ["epsilon_hat", "frozen_batchnorm_stats", "global_norm", "check_rho", "check_p"])
def test_the_perturbation_keeps_its_older_import_paths(name):
    """The functions moved from optim.sam to optim.perturbation; code written against the old
    path (``from sam_course.optim.sam import epsilon_hat``) gets the same object."""
    import sam_course
    import sam_course.optim.perturbation as perturbation
    import sam_course.optim.sam as sam

    assert getattr(sam, name) is getattr(perturbation, name)
    if name in ("epsilon_hat", "frozen_batchnorm_stats"):
        assert getattr(sam_course, name) is getattr(sam_course.optim, name) is getattr(perturbation, name)
    # Each function is documented once, in the module that defines it.
    assert name in perturbation.__all__ and name not in sam.__all__
