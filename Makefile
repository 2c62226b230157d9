# Everything a person does twice. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo install test test-deps lint format typecheck unit bench fuzz clean docker-engine docker-base docker-image docker-stop

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
	$(MAKE) docker-image

## test: install what the tests need, check lint and types, run the whole suite (engines stopped after): two
##       workers (pytest-xdist), then the tests marked serial alone
test: test-deps lint
	bash scripts/docker-engine.sh start-tcp 23750
	CODERUNNER_TEST_REMOTE_DOCKER=tcp://127.0.0.1:23750 $(BIN)/pytest -n 2 --dist loadfile -m "not serial"; s=$$?; \
		CODERUNNER_TEST_REMOTE_DOCKER=tcp://127.0.0.1:23750 $(BIN)/pytest -m serial; t=$$?; \
		$(MAKE) docker-stop; [ $$s -eq 0 ] && [ $$t -eq 0 ]

## docker-engine: install (if missing) and start dockerd without a bridge or firewall changes (+ gVisor)
docker-engine:
	CODERUNNER_WITH_RUNSC=1 bash scripts/docker-engine.sh start

## docker-base: the sandbox's base image built offline (debootstrap + docker import)
docker-base: docker-engine
	bash docker/build-base.sh

## docker-image: the sandbox image (skipped when its content hash exists)
docker-image: docker-base
	$(BIN)/coderunner image build

## docker-stop: stop the Docker engines the scripts started
docker-stop:
	bash scripts/docker-engine.sh stop-tcp
	bash scripts/docker-engine.sh stop

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

## bench: install what the benchmarks need (engines, Chromium, the peers compared against), run each; JSON
bench: test-deps
	$(BIN)/pip install -q -e '.[bench]'
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## fuzz: the server's OpenAPI fuzzed at length (schemathesis, all phases; about an hour; the suite runs a short pass)
fuzz: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	CODERUNNER_FUZZ_EXAMPLES=100 CODERUNNER_FUZZ_PHASES=examples,coverage,fuzzing,stateful \
		CODERUNNER_FUZZ_TIMEOUT=5400 $(BIN)/pytest tests/server/test_schemathesis.py -v

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
