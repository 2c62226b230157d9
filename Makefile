# Everything a person does twice. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo install test test-deps lint format typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

## install: the package with the data-science extra (plots in the demo)
install: $(BIN)/python
	$(BIN)/pip install -q -e '.[datascience]'

## demo: install and run the quick start on the default (InProcess) backend
demo: install
	$(BIN)/python examples/quickstart.py

## test-deps: system packages, engines and Python dependencies the test suite needs
test-deps: $(BIN)/python
	bash scripts/setup-test-env.sh
	$(BIN)/pip install -q -e '.[dev]'

## test: install what the tests need, check lint and types, run the whole suite
test: test-deps lint
	$(BIN)/pytest

## unit: the suite without installing anything (for a prepared machine)
unit:
	$(BIN)/pytest

lint:
	$(BIN)/ruff check coderunner tests examples benchmarks
	$(BIN)/ruff format --check coderunner tests examples benchmarks
	$(BIN)/mypy

format:
	$(BIN)/ruff check --fix coderunner tests examples benchmarks
	$(BIN)/ruff format coderunner tests examples benchmarks

## bench: run every benchmark; each prints JSON
bench:
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
