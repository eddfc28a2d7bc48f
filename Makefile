# Every target creates .venv itself, so a machine with only Python, pip and git can run it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint types check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## the demo: a simulated Simpro build, scanned and counted
	$(BIN)/simpro-counter demo

test: $(STAMP)  ## every test (installs Chromium for the browser tests where missing)
	scripts/ensure-chromium.sh
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

types: $(STAMP)
	$(BIN)/mypy

check: lint types test  ## what CI runs

bench: $(STAMP)  ## benchmarks (add --record by hand to update docs/performance.md)
	$(BIN)/python -m bench.refresh
	$(BIN)/python -m bench.read_path
	$(BIN)/python -m bench.realtime
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.ledger_memory
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
