# SAM, executable: build the book and run every check CI runs.
#
#   make book    set up .venv, execute every chapter (profile `book`), build _build/html
#   make test    set up .venv, then everything CI checks (lint, unit tests, nbval, strict build
#                under the `ci` profile, rendered-page check in headless Chromium)
#   make lint    ruff (lint and import order) over the package, tests, tools and chapters
#
# Other targets: setup, lint, bench, strip, sync-url, serve, clean, distclean, help.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
STAMP := $(VENV)/.stamp

# `make book` always builds the `book` profile into _build/html, whatever SAM_COURSE_PROFILE
# says in the shell (`make book BOOK_PROFILE=paper` builds into _build/paper instead).
# Jupyter Book's execution cache does not know the profile, so every profile gets its own
# output folder, and with it its own cache (_config.yml leaves execute.cache empty, which puts
# the cache in <path-output>/_build/.jupyter_cache): a ci build can never feed cached ci
# outputs into the book, nor the other way round.
BOOK_PROFILE := book
ifeq ($(BOOK_PROFILE),book)
BOOK_OUT := .
else
BOOK_OUT := _build/$(BOOK_PROFILE)
endif
BOOK_HTML := $(BOOK_OUT)/_build/html

CI_OUT := _build/ci
CI_HTML := $(CI_OUT)/_build/html
# --all: a fresh Sphinx environment, so that every page is re-read and every warning shows
# (notebooks still come from the execution cache, so nothing is re-executed needlessly).
STRICT := -W -n --keep-going --all

.PHONY: help setup book test lint bench strip sync-url serve clean distclean check-python check-system

help:
	@echo "make book     build the book (profile book) into _build/html"
	@echo "make test     run everything CI checks (ends with pytest's summary line)"
	@echo "make lint     ruff over the package, tests, tools and chapters (make test runs it first)"
	@echo "make setup    create .venv and install the pinned dependencies (done by book/test)"
	@echo "make bench    run every script in benchmarks/"
	@echo "make strip    strip outputs from the chapters (book/**/*.ipynb) before committing"
	@echo "make sync-url copy repository.url from _config.yml into README and notebooks"
	@echo "make serve    serve _build/html on http://localhost:8000"
	@echo "make clean    remove build outputs and caches (keeps .venv); distclean removes .venv too"

# ---------------------------------------------------------------------------------------------
# Set-up: idempotent; the stamp is newer than requirements.txt and pyproject.toml when nothing
# changed, so a second `make setup` does nothing.

# Fails with a message saying what to install when $(PYTHON) is missing, too old or has no venv.
define CHECK_PYTHON
command -v $(PYTHON) >/dev/null 2>&1 || { \
  echo "error: '$(PYTHON)' not found. Install Python >= 3.10 (Debian/Ubuntu: apt-get install python3 python3-venv)," \
       "or point make at one: make book PYTHON=/path/to/python3.11" >&2; exit 1; }; \
$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { \
  echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())');" \
       "this course needs Python >= 3.10. Install a newer one (Debian/Ubuntu: apt-get install python3.11 python3.11-venv)" \
       "and run: make book PYTHON=python3.11" >&2; exit 1; }; \
$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
  echo "error: $(PYTHON) cannot create virtual environments (no venv/ensurepip module)." \
       "Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
endef

check-python:
	@$(CHECK_PYTHON)

$(STAMP): requirements.txt pyproject.toml
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then \
	  echo "error: $(VENV) was made with an old or broken Python; remove it (make distclean) and run make again" >&2; exit 1; fi
	@if [ ! -x $(PY) ]; then \
	  $(CHECK_PYTHON); \
	  echo ">>> creating $(VENV) with $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	@echo ">>> installing the pinned dependencies (requirements.txt) and sam_course (editable)"
	$(PY) -m pip install --quiet -r requirements.txt -e ".[book,test]"
	@touch $(STAMP)

setup: $(STAMP)

check-system:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || command -v google-chrome >/dev/null 2>&1 || { \
	  echo "error: the rendered-page check needs Chromium. Install it: apt-get install chromium" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# The book

book: setup
	@echo ">>> building the book, profile $(BOOK_PROFILE), into $(BOOK_HTML)"
	@$(PY) tools/cache_guard.py $(BOOK_OUT)/_build
	SAM_COURSE_PROFILE=$(BOOK_PROFILE) $(JB) build . --path-output $(BOOK_OUT) $(STRICT)
	@# The glued verdicts (who is ahead, whether a claim holds) against the reviewed ones.
	@if [ -f book/verdicts/$(BOOK_PROFILE).json ]; then \
	  $(PY) tools/check_verdicts.py $(BOOK_PROFILE) $(BOOK_OUT)/_build/.jupyter_cache; \
	else echo "(no stored verdicts for profile $(BOOK_PROFILE): tools/check_verdicts.py --update stores them)"; fi
	@echo
	@echo "The book is in $(BOOK_HTML). Open it: file://$(abspath $(BOOK_HTML))/index.html"
	@echo "(or run 'make serve' and visit http://localhost:8000)"

serve:
	@test -f $(BOOK_HTML)/index.html || { echo "error: no book in $(BOOK_HTML); run make book first" >&2; exit 1; }
	$(PY) -m http.server --directory $(BOOK_HTML) 8000

# ---------------------------------------------------------------------------------------------
# Tests: the strict ci build first (its exit code is checked by a test, so that the run always
# ends with one pytest summary), then a single pytest run: unit tests, nbval on every notebook
# of the TOC, and the rendered-page check of the ci build in headless Chromium.

# ruff reads its settings from pyproject.toml; chapters are linted as notebooks.
lint: setup
	@echo ">>> ruff"
	$(VENV)/bin/ruff check .
	$(PY) tools/strip_outputs.py --check

test: setup check-system lint
	@mkdir -p $(CI_OUT)
	@rm -f $(CI_OUT)/build-exit-code
	@echo ">>> strict book build, profile ci, into $(CI_HTML)"
	@$(PY) tools/cache_guard.py $(CI_OUT)/_build
	@set +e; SAM_COURSE_PROFILE=ci $(JB) build . --path-output $(CI_OUT) $(STRICT); \
	  echo $$? > $(CI_OUT)/build-exit-code
	@echo ">>> unit tests, nbval on the TOC's notebooks, rendered-page check"
	@# Two pytest workers share the two cores: one thread each, or OpenMP's spinning threads
	@# fight over the cores and every notebook runs several times slower.
	OMP_NUM_THREADS=1 SAM_COURSE_PROFILE=ci BOOK_HTML=$(CI_HTML) BOOK_BUILD_EXIT_CODE=$(CI_OUT)/build-exit-code \
	  VERDICTS_CACHE=$(CI_OUT)/_build/.jupyter_cache \
	  $(PY) -m pytest tests $$($(PY) tools/toc_notebooks.py) tools/check_rendered.py tools/check_verdicts.py \
	  --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -n 2 --dist loadscope

# ---------------------------------------------------------------------------------------------
# Other chores

bench: setup
	@shopt -s nullglob; scripts=(benchmarks/*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no scripts in benchmarks/"; exit 0; fi; \
	for script in "$${scripts[@]}"; do echo ">>> $$script"; $(PY) "$$script"; done

strip:
	$(PYTHON) tools/strip_outputs.py

sync-url:
	$(PYTHON) tools/sync_repo_url.py

clean:
	rm -rf _build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
