# superfactory — set-up and run targets. Everything installs into ./.venv; nothing global is touched.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SCENARIO ?= default
OUT    ?= results/$(SCENARIO)
# Every install is pinned by constraints.txt (the lock; `make lock` regenerates it). torch is locked to its CPU
# build (2.13.0+cpu), which pip takes from the machine's configured wheel directory; no extra index is named.
LOCK   := constraints.txt
PIP_INSTALL := $(BIN)/python -m pip install -q -c $(LOCK)

.PHONY: run test lint setup setup-dev bench clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) pip setuptools

$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e '.[dev]'
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

## run: set up and simulate the default scenario; the report lands in results/default/
run: setup
	$(BIN)/superfactory simulate $(SCENARIO) --out $(OUT)

## lint: ruff, mypy on the pure layers, import-linter layering contracts
lint: setup-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: set up, lint, install the Debian packages the tests use (as root), and run every test
test: lint
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest -n 2 -q

## bench: run the benchmarks (writes benchmarks/results/*.json)
bench: setup-dev
	$(BIN)/python benchmarks/run_all.py

## lock: pin every package installed in .venv (except superfactory itself) into constraints.txt
lock: setup-dev
	{ echo "# The lock: every package of a full dev install (pip install -e '.[dev]'), pinned. Used as pip's -c by"; \
	  echo "# \`make run\` / \`make test\` and CI; tests/unit/cli/test_lock.py checks .venv matches it."; \
	  echo "# Regenerate after changing dependencies in pyproject.toml: make lock (from \`pip freeze --all\`)."; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -v -i '^superfactory=='; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
