# The two commands of the README's quick start, and the tools around them.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test bench bench-full bench-rules lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the project as a plain (non-editable) package, as a user would. A stale
# build/ left by an older checkout would put modules that no longer exist into the wheel.
demo: $(BIN)/python
	rm -rf build
	$(BIN)/python -m pip install --quiet '.[demo]'
	$(BIN)/bulk-backfill demo

test: $(BIN)/python
	rm -rf build
	$(BIN)/python -m pip install --quiet '.[test]'
	$(BIN)/python -m pytest

# Benchmarks against the local PostgreSQL and RabbitMQ (see benchmarks/README.md).
bench: $(BIN)/python
	$(BIN)/python -m pip install --quiet '.[bench]'
	$(BIN)/python -m benchmarks --quick

bench-full: $(BIN)/python
	$(BIN)/python -m pip install --quiet '.[bench]'
	$(BIN)/python -m benchmarks --killmails 300000

# Each kill-date rule set against a pure-SQL ceiling of the same rules (~15 min).
bench-rules: $(BIN)/python
	$(BIN)/python -m pip install --quiet '.[bench]'
	$(BIN)/python -m benchmarks.rules --killmails 20000 --rounds 3

lint: $(BIN)/python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/python
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .bulk-backfill-demo
