# superfactory — set-up and run targets. Everything installs into ./.venv; nothing global is touched.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SCENARIO ?= default
OUT    ?= results/$(SCENARIO)

.PHONY: run test lint setup setup-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
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

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
