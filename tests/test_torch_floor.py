"""The torch floor in pyproject.toml is the version the package really needs (issue 14).

An AST scan of ``sam_course/**/*.py`` (``sam_course/integrations`` excepted: its frameworks pin
their own torch through the ``integrations`` extra) finds every use of the late torch APIs listed
in :data:`LATE_APIS`, with import aliases resolved (``from torch.func import functional_call``,
``import torch.distributed as dist``). The floor must cover every one used, and must be no higher
than the newest of them: it is honest both ways. A new late API goes into the table with the
release that introduced it and where that was checked.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sam_course"
SKIPPED = (PACKAGE / "integrations",)

# Dotted name (or ".attribute" for an attribute of any object) -> (the torch release that
# introduced it, the evidence). Where the evidence left a doubt, the later release is taken.
LATE_APIS: dict[str, tuple[tuple[int, int], str]] = {
    # SAM, LookSAM, SAMEveryK and SAMStep set it so that LR schedulers do not warn about a
    # scheduler step before the first optimizer step with the two-step API (which never calls
    # .step). The flag replaced the `_step_count` counter in pytorch/pytorch#123751 (April-May
    # 2024), so 2.4; before it the schedulers warn wrongly (a false warning, not a wrong result).
    "._opt_called": ((2, 4), "pytorch/pytorch#123751"),
    # The device-generic GradScaler: pytorch.org/docs/2.3 has torch.cuda.amp.GradScaler as a
    # subclass of torch.amp.GradScaler; 2.2 and earlier define it in torch.cuda.amp only.
    "torch.amp.GradScaler": ((2, 3), "docs 2.3 torch/cuda/amp/grad_scaler.py"),
    "torch.GradScaler": ((2, 3), "docs 2.3 (the same class, re-exported)"),
    "torch.amp.custom_fwd": ((2, 4), "pytorch/pytorch#126531"),
    "torch.amp.custom_bwd": ((2, 4), "pytorch/pytorch#126531"),
    # In-place foreach copy: pytorch/pytorch#107226, merged August 2023, released in 2.1.
    "torch._foreach_copy_": ((2, 1), "pytorch/pytorch#107226"),
    # torch.func (functorch merged into torch) and torch.compile: the 2.0 release.
    "torch.func": ((2, 0), "torch 2.0 release notes"),
    "torch.compile": ((2, 0), "torch 2.0 release notes"),
    "torch.serialization.add_safe_globals": ((2, 4), "torch 2.4 release notes"),
    # Not used today; listed so that a first use raises the floor in the same change.
    "torch.nn.utils.get_total_norm": ((2, 6), "torch 2.6 release notes"),
    "torch.nn.utils.clip_grads_with_norm_": ((2, 6), "torch 2.6 release notes"),
    "torch.distributed.fsdp.fully_shard": ((2, 6), "torch 2.6 release notes"),
    "torch._foreach_max": ((2, 4), "torch 2.4 release notes"),
}


def torch_floor() -> tuple[int, int]:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    (spec,) = [d for d in dependencies if re.match(r"torch\b", d)]
    match = re.fullmatch(r"torch>=(\d+)\.(\d+)", spec.replace(" ", ""))
    assert match, f"pyproject.toml's torch requirement must read torch>=X.Y, got {spec!r}"
    return int(match[1]), int(match[2])


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from the module's absolute imports."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(parts)])


def scan(files=None) -> dict[str, list[str]]:
    """Table entry -> the ``file:line`` of each use of it in the package."""
    found: dict[str, list[str]] = {}
    files = files or [f for f in sorted(PACKAGE.rglob("*.py")) if not any(s in f.parents for s in SKIPPED)]
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        aliases = _aliases(tree)
        where = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                where.setdefault(f".{node.attr}", node.lineno)
            if isinstance(node, (ast.Attribute, ast.Name)):
                dotted = _dotted(node, aliases)
                if dotted:
                    where.setdefault(dotted, node.lineno)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    where.setdefault(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    where.setdefault(f"{node.module}.{alias.name}", node.lineno)
        for entry in LATE_APIS:
            lines = sorted({line for name, line in where.items() if name == entry or name.startswith(entry + ".")})
            shown = path.relative_to(ROOT) if ROOT in path.parents else path
            found.setdefault(entry, []).extend(f"{shown}:{line}" for line in lines)
    return {entry: uses for entry, uses in found.items() if uses}


def test_the_scan_finds_the_late_apis_the_package_is_known_to_use():
    # So that a scan that finds nothing (a broken alias resolution, a wrong folder) cannot pass.
    found = scan()
    for entry, where in [("torch.amp.GradScaler", "sam_course/optim/distributed.py"),
                         ("._opt_called", "sam_course/optim/sam.py"),
                         ("torch._foreach_copy_", "sam_course/optim/sam.py"),
                         # reached through `from torch.func import functional_call`
                         ("torch.func", "sam_course/curvature/hessian.py")]:
        assert any(use.startswith(where + ":") for use in found.get(entry, [])), (entry, found.get(entry))


def test_the_scan_resolves_aliases(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import torch.distributed.fsdp as fsdp\nfrom torch import amp as a\nfrom torch.nn import utils\n"
                      "fsdp.fully_shard\na.GradScaler()\nutils.get_total_norm([])\nx = 1\n")
    found = scan([source])
    assert set(found) == {"torch.distributed.fsdp.fully_shard", "torch.amp.GradScaler", "torch.nn.utils.get_total_norm"}


def test_the_torch_floor_covers_every_late_api_the_package_uses():
    floor = torch_floor()
    too_new = {entry: (LATE_APIS[entry][0], uses) for entry, uses in scan().items() if LATE_APIS[entry][0] > floor}
    assert not too_new, (f"pyproject.toml says torch>={floor[0]}.{floor[1]}, but the package uses "
                         + "; ".join(f"{e} (torch {v[0]}.{v[1]}, at {', '.join(u)})" for e, (v, u) in too_new.items()))


def test_the_torch_floor_is_no_higher_than_the_package_needs():
    # Colab and other managed environments ship their own torch: a floor above what the code
    # needs would refuse them for nothing.
    needed = max(LATE_APIS[entry][0] for entry in scan())
    assert torch_floor() == needed, f"the newest late API the package uses needs torch {needed}, the floor is {torch_floor()}"


@pytest.mark.parametrize("entry", sorted(LATE_APIS))
def test_every_table_entry_has_a_version_and_evidence(entry):
    (major, minor), evidence = LATE_APIS[entry]
    assert major >= 2 and minor >= 0 and evidence
