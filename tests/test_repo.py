"""Repository checks: the configuration files agree, the notebooks are clean, CI and publishing
call the README's commands.

Fast (no build, no network): part of the unit tests that `make test` runs.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


toc_tool = _load_tool("toc_notebooks")
sync_tool = _load_tool("sync_repo_url")
strip_tool = _load_tool("strip_outputs")


def _yaml(name: str):
    with open(ROOT / name, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


# --------------------------------------------------------------------------------------------
# Pinned versions: requirements.txt, environment.yml and pyproject.toml agree.


def requirement_pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"requirements.txt: pin exactly: {line!r}"
        assert canonicalize_name(req.name) not in pins, f"requirements.txt: {req.name} twice"
        pins[canonicalize_name(req.name)] = Version(specs[0].version)
    return pins


def environment_pins() -> dict[str, Version]:
    env = _yaml("environment.yml")
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml: one pip: section"
    pins = {}
    for line in pip_sections[0]:
        if line.startswith("-"):
            continue  # pip options such as --extra-index-url
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"environment.yml: pin exactly: {line!r}"
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def test_requirements_pin_the_agreed_versions():
    pins = requirement_pins()
    assert pins["torch"] == Version("2.14.1")
    assert pins["torchvision"] == Version("0.29.1")
    assert pins["jupyter-book"] == Version("1.0.4.post1"), "Jupyter Book 1 (jupyter-book 2.x is another tool)"
    for needed in ["nbval", "pytest", "pytest-xdist", "playwright", "sphinx-exercise", "pyyaml", "ipykernel", "ruff"]:
        assert needed in pins, f"requirements.txt: {needed} is missing"


def test_requirements_satisfy_pyproject_ranges():
    project = pyproject()["project"]
    pins = requirement_pins()
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    for line in declared:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"pyproject.toml needs {line!r} but requirements.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {line!r}")


def test_environment_yml_repeats_the_requirement_pins():
    pins, env = requirement_pins(), environment_pins()
    assert set(env) == set(pins), (f"environment.yml and requirements.txt list different packages: "
                                   f"only in environment.yml {sorted(set(env) - set(pins))}, "
                                   f"only in requirements.txt {sorted(set(pins) - set(env))}")
    for name, version in pins.items():
        if name in ("torch", "torchvision"):
            # Binder has no GPU: the CPU-only build of the very same version.
            assert env[name].local == "cpu" and Version(env[name].public) == version, (
                f"environment.yml: {name}=={version}+cpu expected, got {env[name]}")
        else:
            assert env[name] == version, f"environment.yml pins {name}=={env[name]}, requirements.txt =={version}"


def test_environment_yml_python_and_cpu_index():
    env = _yaml("environment.yml")
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons, "environment.yml: pin a Python version"
    version = Version(pythons[0].split("=")[-1])
    requires = pyproject()["project"]["requires-python"]
    assert Requirement(f"python{requires}").specifier.contains(version)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any("download.pytorch.org/whl/cpu" in line for line in pip), "environment.yml: CPU wheel index"


def test_python_requirement_matches_the_makefile_check():
    requires = pyproject()["project"]["requires-python"]
    assert requires == ">=3.10"
    makefile = (ROOT / "Makefile").read_text()
    assert "sys.version_info < (3, 10)" in makefile and "Python >= 3.10" in makefile


# --------------------------------------------------------------------------------------------
# Makefile: the targets the README promises, and separate outputs for the ci and book builds.


def makefile_variables() -> dict[str, str]:
    text = (ROOT / "Makefile").read_text()
    return dict(re.findall(r"^(\w+)\s*:?=\s*(.*?)\s*$", text, re.M))


def test_makefile_targets_exist():
    text = (ROOT / "Makefile").read_text()
    for target in ["setup", "book", "test", "bench", "clean"]:
        assert re.search(rf"^{target}:", text, re.M), f"Makefile: no {target} target"
    assert re.search(r"^\$\(STAMP\): requirements.txt pyproject.toml", text, re.M), \
        "setup must depend on a stamp file newer than requirements.txt and pyproject.toml"
    assert "pip install --quiet -r requirements.txt -e" in text


def test_ci_and_book_builds_use_separate_outputs_and_caches():
    """The execution cache does not know SAM_COURSE_PROFILE: each profile needs its own."""
    text = (ROOT / "Makefile").read_text()
    variables = makefile_variables()
    assert variables["CI_OUT"] == "_build/ci"
    assert variables["BOOK_PROFILE"] == "book"
    assert "BOOK_OUT := ." in text and "BOOK_OUT := _build/$(BOOK_PROFILE)" in text
    assert "SAM_COURSE_PROFILE=$(BOOK_PROFILE) $(JB) build . --path-output $(BOOK_OUT) $(STRICT)" in text
    assert "SAM_COURSE_PROFILE=ci $(JB) build . --path-output $(CI_OUT) $(STRICT)" in text
    # Jupyter Book puts the cache in <path-output>/_build/.jupyter_cache unless one is configured.
    config = _yaml("_config.yml")
    assert config["execute"]["execute_notebooks"] == "cache"
    assert not config["execute"].get("cache"), (
        "_config.yml: leave execute.cache empty so that each --path-output (each profile) has its own cache")
    book_cache = Path(".") / "_build" / ".jupyter_cache"
    ci_cache = Path(variables["CI_OUT"]) / "_build" / ".jupyter_cache"
    assert book_cache != ci_cache and book_cache not in ci_cache.parents
    # nbval and the ci build run under the ci profile.
    assert "SAM_COURSE_PROFILE=ci BOOK_HTML=$(CI_HTML)" in text
    for flag in ["--nbval-lax", "--nbval-current-env", "-n 2", "--dist loadscope"]:
        assert flag in text, f"make test: pytest without {flag}"
    assert "-W -n --keep-going" in variables["STRICT"]


def test_make_test_ends_with_one_pytest_run():
    text = (ROOT / "Makefile").read_text()
    recipe = text[text.index("\ntest:"):]
    recipe = recipe[: recipe.index("\n\n")].replace("\\\n", " ")
    last_command = recipe.strip().split("\n\t")[-1]
    assert "-m pytest tests" in last_command and "tools/check_rendered.py" in last_command


# --------------------------------------------------------------------------------------------
# Jupyter Book configuration and table of contents.


def test_config():
    config = _yaml("_config.yml")
    assert config["only_build_toc_files"] is True
    for pattern in [".venv", "_build", ".pytest_cache", "tools", "tests", "benchmarks", "book/_templates"]:
        assert pattern in config["exclude_patterns"], f"_config.yml exclude_patterns: add {pattern}"
    assert isinstance(config["execute"]["timeout"], int) and config["execute"]["timeout"] > 0
    assert config["execute"]["allow_errors"] is False
    assert {"dollarmath", "amsmath"} <= set(config["parse"]["myst_enable_extensions"])
    extensions = config["sphinx"]["extra_extensions"]
    for ext in ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx_exercise"]:
        assert ext in extensions
    for bib in config["bibtex_bibfiles"]:
        assert (ROOT / bib).is_file()
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["repository"]["branch"] == "main"
    assert config["launch_buttons"]["colab_url"] and config["launch_buttons"]["binderhub_url"]
    assert config["html"]["use_repository_button"] is True
    for name, path in config["sphinx"].get("local_extensions", {}).items():
        assert (ROOT / path / f"{name}.py").is_file(), f"local extension {name} not in {path}"


def test_toc_entries_exist_and_every_page_is_listed():
    docs = toc_tool.toc_docnames()
    assert docs[0] == "book/intro" and docs[1] == "book/how-to-use"
    assert docs[-4:] == ["book/api", "book/glossary", "book/bibliography", "book/execution-times"]
    assert len(docs) == len(set(docs)), "_toc.yml lists a page twice"
    sources = toc_tool.toc_sources()  # raises when an entry has no file
    listed = {p.resolve() for p in sources}
    pages = [p for p in (ROOT / "book").rglob("*")
             if p.suffix in (".md", ".ipynb") and "_templates" not in p.parts and "_build" not in p.parts
             and ".ipynb_checkpoints" not in p.parts]
    orphans = sorted(str(p.relative_to(ROOT)) for p in pages if p.resolve() not in listed)
    assert not orphans, f"pages under book/ missing from _toc.yml (they would not be built): {orphans}"


def test_toc_notebooks_tool_lists_notebooks_only():
    notebooks = toc_tool.toc_notebooks()
    assert notebooks and all(p.suffix == ".ipynb" for p in notebooks)
    assert ROOT / "book" / "how-to-use.ipynb" in notebooks
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "toc_notebooks.py")], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.split()
    assert out == [p.relative_to(ROOT).as_posix() for p in notebooks]


def test_template_is_not_in_the_toc():
    assert (ROOT / "book" / "_templates" / "chapter-template.ipynb").is_file()
    assert not any("_templates" in doc for doc in toc_tool.toc_docnames())


def test_api_page_documents_every_module():
    """tools/sphinx_ext/api_modules.py expands the marker into one automodule per module."""
    assert "<!-- sam_course-modules -->" in (ROOT / "book" / "api.md").read_text()
    spec = importlib.util.spec_from_file_location("api_modules", ROOT / "tools" / "sphinx_ext" / "api_modules.py")
    api_modules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(api_modules)
    package = ROOT / "sam_course"
    expected = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and not any(part.startswith("_") for part in parts):
            expected.add(".".join(parts))
    assert {"optim", "optim.sam", "train", "curvature.hessian"} <= expected
    listed = api_modules.public_modules()
    assert set(listed) == expected and len(listed) == len(expected)
    assert listed[:2] == ["optim", "optim.sam"]
    sections = api_modules.api_sections()
    for name in expected:
        assert f".. automodule:: sam_course.{name}\n" in sections
    # A package that re-exports documents its names once, in the submodule that defines them.
    assert ".. automodule:: sam_course.optim\n   :no-members:" in sections
    assert "Re-exported from :class:`sam_course.optim.sam.SAM`" in sections


def test_glossary_terms():
    text = (ROOT / "book" / "glossary.md").read_text()
    assert "```{glossary}" in text
    terms = set(re.findall(r"^(\S[^\n]*)\n  \S", text.split("```{glossary}")[1], re.M))
    for term in ["SAM", "Sharpness", "ρ (rho)", "epsilon hat (ε̂)", "m-sharpness", "Label noise", "PAC-Bayes",
                 "Dual norm", "ASAM", "Hessian", "λmax", "Filter normalization", "Profile"]:
        assert term in terms, f"glossary: no entry {term!r}"


def test_bibliography_has_the_related_work():
    from pybtex.database import parse_file

    bib = parse_file(str(ROOT / "book" / "references.bib"))
    for key in ["foret2021sam", "kwon2021asam", "zhuang2022gsam", "du2022esam", "liu2022looksam", "du2022saf",
                "andriushchenko2022understanding", "wen2023howsam", "baek2024labelnoise", "keskar2017largebatch",
                "dinh2017sharp", "jiang2020fantastic", "hochreiter1997flat", "mcallester1999pacbayes",
                "sun2021parameter", "wei2020allayer", "li2018visualizing"]:
        assert key in bib.entries, f"references.bib: no {key}"
    for key, entry in bib.entries.items():
        assert entry.persons.get("author"), f"{key}: no author"
        for field in ("title", "year"):
            assert entry.fields.get(field), f"{key}: no {field}"
    assert "{bibliography}" in (ROOT / "book" / "bibliography.md").read_text()
    assert "{nb-exec-table}" in (ROOT / "book" / "execution-times.md").read_text()


# --------------------------------------------------------------------------------------------
# Notebook hygiene.


def committed_notebooks() -> list[Path]:
    """Notebooks under book/ that git tracks or would add (ignored files excluded)."""
    if shutil.which("git") and (ROOT / ".git").exists():
        result = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "book"],
                                cwd=ROOT, capture_output=True, text=True)
        if result.returncode == 0:
            return sorted(ROOT / line for line in result.stdout.splitlines()
                          if line.endswith(".ipynb") and (ROOT / line).exists())
    return sync_tool.chapter_notebooks()


NOTEBOOKS = committed_notebooks()


def test_there_are_notebooks():
    assert ROOT / "book" / "how-to-use.ipynb" in NOTEBOOKS
    assert ROOT / "book" / "_templates" / "chapter-template.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_is_stripped_and_valid(path):
    import nbformat

    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    name = path.relative_to(ROOT)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{name}: cells {dirty} have outputs or execution counts; run `make strip`"
    assert json.loads(text) == strip_tool.strip(json.loads(text)), f"{name}: run-time metadata left; run `make strip`"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{name}: kernel must be python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_starts_with_the_install_cell(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = nb["cells"][0]
    source = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
    assert first["cell_type"] == "code" and "remove-cell" in first["metadata"].get("tags", [])
    assert source == sync_tool.install_cell_source(*sync_tool.repository()), (
        f"{path.relative_to(ROOT)}: the install cell differs from the canonical one; run `make sync-url`")


def test_chapters_have_a_title():
    for path in toc_tool.toc_notebooks():
        nb = json.loads(path.read_text(encoding="utf-8"))
        markdown = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                    for c in nb["cells"] if c["cell_type"] == "markdown"]
        assert markdown and markdown[0].lstrip().startswith("# "), f"{path.name}: first markdown cell needs a # title"


def test_repository_url_is_in_sync():
    problems = sync_tool.check(write=False)
    assert not problems, "out of date (run `make sync-url`):\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------
# CI and publishing.


def test_ci_script_installs_system_packages_then_runs_make_test():
    text = (ROOT / ".ci" / "run").read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert "apt-get update" in text and "apt-get install -y" in text
    assert "chromium" in text and "dataset-fashion-mnist" in text
    assert text.rstrip().splitlines()[-1].strip() == 'exec make test PYTHON="$PYTHON"', \
        "make test must be the last command: the run ends with pytest's summary line"


def workflow():
    data = _yaml(".github/workflows/book.yml")
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def test_workflow_builds_with_make_book_and_deploys_pages():
    flow = workflow()
    assert "push" in flow["on"] and flow["on"]["push"]["branches"] == ["main"]
    jobs = flow["jobs"]
    runs = {name: [step.get("run", "") for step in job.get("steps", [])] for name, job in jobs.items()}
    uses = {name: [step.get("uses", "") for step in job.get("steps", [])] for name, job in jobs.items()}
    assert "make book" in runs["build"]
    assert "bash .ci/run" in runs["test"]
    upload = next(s for s in jobs["build"]["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert any(u.startswith("actions/deploy-pages") for u in uses["deploy"])
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert set(jobs["deploy"]["needs"]) == {"build", "test"}
    # The workflow calls only make targets that exist, the README's two commands.
    makefile = (ROOT / "Makefile").read_text()
    called = {m for cmds in runs.values() for c in cmds for m in re.findall(r"\bmake (\w[\w-]*)", c)}
    assert called == {"book"} and all(re.search(rf"^{t}:", makefile, re.M) for t in called)
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme


def test_readme():
    text = (ROOT / "README.md").read_text()
    for snippet in ["make book", "make test", "from sam_course import SAM",
                    "SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)",
                    "opt.step(closure)", "opt.first_step(zero_grad=True)", "opt.second_step(zero_grad=True)",
                    "SAM_COURSE_PROFILE", "repository.url", "make sync-url"]:
        assert snippet in text, f"README.md: missing {snippet!r}"
    for image in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
        if not image.startswith("http"):
            assert (ROOT / image).is_file(), f"README.md: image {image} missing"


# --------------------------------------------------------------------------------------------
# The book's local Sphinx extensions (tools/sphinx_ext).


def _load_ext(name: str):
    spec = importlib.util.spec_from_file_location(f"ext_{name}", ROOT / "tools" / "sphinx_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text, prose", [
    ("int", False), ("list[Tensor]", False), ("int or None", False), ("torch.Tensor", False),
    ("tuple[Tensor, Tensor]", False), ("The right-hand side", True),
    ("A DataFrame with one row per epoch, row 0 before training", True),
])
def test_napoleon_prose_tells_types_from_sentences(text, prose):
    assert _load_ext("napoleon_prose").looks_like_prose(text) is prose


def test_napoleon_prose_keeps_constant_docstrings_and_long_returns_as_text():
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring

    ext = _load_ext("napoleon_prose")
    original = (GoogleDocstring._consume_inline_attribute, GoogleDocstring._consume_returns_section)
    try:
        ext.setup(type("App", (), {"setup_extension": lambda self, name: None})())
        config = Config(napoleon_use_rtype=True)
        lines = GoogleDocstring("Easom: -cos x cos y, minimum -1.", config, what="data", name="EASOM").lines()
        assert ":type:" not in "\n".join(lines) and "Easom: -cos x cos y" in "\n".join(lines)
        doc = "Sum.\n\nReturns:\n    The right-hand side: a bound.\n"
        assert ":rtype:" not in "\n".join(GoogleDocstring(doc, config, what="function", name="f").lines())
        doc = "Sum.\n\nReturns:\n    int: the sum.\n"
        assert ":rtype: int" in "\n".join(GoogleDocstring(doc, config, what="function", name="f").lines())
    finally:
        GoogleDocstring._consume_inline_attribute, GoogleDocstring._consume_returns_section = original


def test_dedup_scripts_keeps_the_first_of_identical_scripts():
    from sphinx.builders.html._assets import _JavaScript

    ext = _load_ext("dedup_scripts")
    scripts = [_JavaScript("_static/a.js"), _JavaScript(None, body="const X = 1"),
               _JavaScript("", body="const X = 1"), _JavaScript("_static/a.js"), _JavaScript(None, body="y")]
    context = {"script_files": scripts}
    ext.dedup_scripts(None, "page", "page.html", context, None)
    assert [(s.filename, s.attributes) for s in context["script_files"]] == [
        ("_static/a.js", {}), (None, {"body": "const X = 1"}), (None, {"body": "y"})]


def test_ruff_and_pre_commit_share_one_version():
    """make lint runs the pinned ruff; .pre-commit-config.yaml names the same release."""
    pins = requirement_pins()
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    revs = {repo["repo"]: repo.get("rev") for repo in config["repos"]}
    assert revs["https://github.com/astral-sh/ruff-pre-commit"] == f"v{pins['ruff']}"
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert hooks["strip-outputs"]["entry"] == "python tools/strip_outputs.py --check"
    assert "ruff check ." in (ROOT / "Makefile").read_text()


def test_strip_check_fails_on_outputs_and_changes_nothing(tmp_path):
    nb = {"cells": [{"cell_type": "code", "execution_count": 3, "metadata": {}, "outputs": [{"output_type": "stream",
          "name": "stdout", "text": "1"}], "source": "print(1)"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "dirty.ipynb"
    path.write_text(json.dumps(nb))
    before = path.read_text()
    assert strip_tool.main(["--check", str(path)]) == 1
    assert path.read_text() == before
    assert strip_tool.main([str(path)]) == 0
    assert strip_tool.main(["--check", str(path)]) == 0


def test_readme_python_examples_run():
    """The README's optimizer examples run as written, given a model, a loader and a loss.

    The SAMStep example needs a DistributedDataParallel model and is run by tests/test_scaling.py's
    2-process tests instead; the others must import and step with the current layout.
    """
    import torch

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    runnable = [b for b in blocks if "SAMStep(" not in b]
    assert len(runnable) >= 3, "the README lost its optimizer examples"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def closure():
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    # One namespace, as a reader runs them: the two-step example uses the first example's `opt`.
    namespace = {"model": model, "loader": [(x, y)] * 3, "loss_fn": loss_fn, "x": x, "y": y, "closure": closure}
    for block in runnable:
        before = [p.detach().clone() for p in model.parameters()]
        exec(compile(block, "README.md", "exec"), namespace)
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), block[:80]


def test_stored_verdicts_cover_exactly_the_glued_verdict_keys():
    """book/verdicts/<profile>.json holds one masked entry per key of tools/check_verdicts.VERDICT_KEYS."""
    verdicts = _load_tool("check_verdicts")
    for profile in ("ci", "book"):
        stored = json.loads((ROOT / "book" / "verdicts" / f"{profile}.json").read_text(encoding="utf-8"))
        assert sorted(stored) == sorted(verdicts.VERDICT_KEYS), profile
        assert all(verdicts.mask(v) == v for v in stored.values()), f"{profile}: numbers must be masked"
