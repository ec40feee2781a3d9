# Set-up and checks. `make demo` and `make test` work on a fresh machine with python3 only.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch as pip resolves it (here a local CPU wheel; from PyPI on Linux the CUDA build). For a
# CPU-only install: TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
# Real data for tests and the demo: the shared folder beside the project, when it exists.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export LIFELONG_DATA ?= $(SHARED_DATA)
endif

.PHONY: install browser demo test lint typecheck bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Headless Chromium for the HTML report's browser test (tests/test_report.py), from Debian's
# packages: needs root or sudo. Playwright (a dev extra) drives it; it downloads no browser.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { \
	    $$SUDO apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null; }; }
	@chromium --version

demo: install
	$(BIN)/lifelong run forgetting

test: install
	$(BIN)/python -m pytest
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

lint: install
	$(BIN)/ruff check src tests benchmarks

typecheck: install
	$(BIN)/mypy

bench: install
	# One thread: on a shared 2-core machine two threads make single runs up to 10x slower
	# at random, for both loops; see benchmarks/README.md.
	$(BIN)/python benchmarks/overhead.py --threads 1 --json > benchmarks/overhead.json.tmp
	mv benchmarks/overhead.json.tmp benchmarks/overhead.json
	$(BIN)/python benchmarks/speed_table.py benchmarks/overhead.json --readme README.md
	# MemN2N on bAbI (multi-input examples) against a bare loop with the same model.
	$(BIN)/python benchmarks/babi.py --json > benchmarks/babi.json.tmp
	mv benchmarks/babi.json.tmp benchmarks/babi.json
	# Five seeds as one vectorised group, against 5 bare loops and 5 runs of ours.
	$(BIN)/python benchmarks/group.py --protocols P1 --json > benchmarks/group_p1.json.tmp
	mv benchmarks/group_p1.json.tmp benchmarks/group_p1.json

# The generated page of methods, from each strategy's card (tests/test_catalog.py checks it).
docs: install
	$(BIN)/lifelong list --markdown > docs/methods.md.tmp
	mv docs/methods.md.tmp docs/methods.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache  # never runs/: it holds your results
