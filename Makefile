# The two commands of the README's quick start, and the tools around them.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test test-fast install-test bench bench-full bench-rules lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the project as a plain (non-editable) package, as a user would. A stale
# build/ left by an older checkout would put modules that no longer exist into the wheel.
demo: $(BIN)/python
	rm -rf build
	$(BIN)/python -m pip install --quiet '.[demo]'
	$(BIN)/bulk-backfill demo

# The suite tests the working tree: an editable install, so the console script the
# tests spawn runs the code as edited (tests/conftest.py refuses a stale copy).
# Two parts: everything that may share the machine, in parallel; then, alone, the few
# tests that restart the broker, close all its connections or build network namespaces.
TEST_WORKERS ?= 6
PYTEST_ARGS  ?=
test: install-test
	BBT_PREWARM_SERIAL_TEMPLATES=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS)

# The fast tier: everything not marked slow, in parallel (a few minutes).
test-fast: install-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow and not serial" $(PYTEST_ARGS)

# Benchmarks against the local PostgreSQL and RabbitMQ (see benchmarks/README.md).
bench: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks --quick

bench-full: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks --killmails 300000

# Each kill-date rule set against a pure-SQL ceiling of the same rules (~15 min).
bench-rules: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.rules --killmails 20000 --rounds 3

install-test: $(BIN)/python
	rm -rf build
	$(BIN)/python -m pip install --quiet -e '.[test]'

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/python
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .bulk-backfill-demo
