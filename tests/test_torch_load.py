"""Every ``torch.load`` in the repository passes ``weights_only=True`` (issue 14).

A pickle can run any code when it is loaded; ``weights_only=True`` makes torch build tensors and
plain containers only. This test reads every ``.py`` file of the repository (the package, tests,
tools, benchmarks, examples) and fails on a call without it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"_build", "node_modules", "build", "dist", "__pycache__"}


def python_files() -> list[Path]:
    return [p for p in ROOT.rglob("*.py")
            if not any(part.startswith(".") or part in SKIP for part in p.relative_to(ROOT).parts[:-1])]


def unsafe_loads(source: str) -> list[int]:
    """Line numbers of ``torch.load(...)`` calls (or ``load`` imported from torch) without ``weights_only=True``."""
    tree = ast.parse(source)
    aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module == "torch" for a in node.names if a.name == "load"}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        is_load = (isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name)
                   and f.value.id == "torch") or (isinstance(f, ast.Name) and f.id in aliases)
        safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                   for k in node.keywords)
        if is_load and not safe:
            lines.append(node.lineno)
    return lines


def test_the_checker_finds_unsafe_calls():
    assert unsafe_loads("import torch\ntorch.load(p)\ntorch.load(p, weights_only=True)\n") == [2]
    assert unsafe_loads("from torch import load as L\nL(p, weights_only=False)\n") == [2]
    assert unsafe_loads("import torch\ntorch.load(p, map_location='cpu', weights_only=True)\n") == []


def test_every_torch_load_in_the_repository_is_weights_only():
    files = python_files()
    assert any(p.name == "checkpoint.py" for p in files) and any(p.name == "ddp.py" for p in files)
    offenders = [f"{p.relative_to(ROOT)}:{line}" for p in files for line in unsafe_loads(p.read_text())]
    assert offenders == [], "torch.load without weights_only=True: " + ", ".join(offenders)
