# Every target creates .venv itself, so a machine with only Python, pip and git can run it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The locks: every package at one version with the hashes of its files. The image installs
# requirements.lock (the service's dependencies); the venv requirements-dev.lock (those and
# the tools), a superset at the same versions. `make lock` regenerates both.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
# pip keeps the machine's own configuration (its index, proxy or certificates may be the only
# way to PyPI); --require-hashes refuses any file whose hash the lock does not name.
PIP := $(BIN)/python -m pip
UV_VERSION := uv>=0.13,<0.14
COMPILE := $(BIN)/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 --quiet

.PHONY: run test lint types audit check lock bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(DEV_LOCK) | $(BIN)/python
	$(PIP) install --quiet --require-hashes -r $(DEV_LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/check_lock.py $(DEV_LOCK) $(LOCK)
	touch $(STAMP)

lock: | $(BIN)/python  ## both locks from pyproject.toml, keeping their pins where the ranges allow (UPGRADE=1: newest)
	$(PIP) install --quiet '$(UV_VERSION)'
	$(COMPILE) --extra dev $(if $(UPGRADE),--upgrade) -o $(DEV_LOCK)
	$(COMPILE) -c $(DEV_LOCK) -o $(LOCK)
	$(BIN)/python scripts/check_lock.py $(DEV_LOCK) $(LOCK)

run: $(STAMP)  ## the demo: a simulated Simpro build, scanned and counted
	$(BIN)/simpro-counter demo

test: $(STAMP)  ## every test (installs Chromium for the browser tests where missing)
	scripts/ensure-chromium.sh
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

types: $(STAMP)
	$(BIN)/mypy

# Known vulnerabilities in the locked versions, from PyPI's advisory data. --strict: a package
# the service could not answer for fails the audit (without it pip-audit would report
# "No known vulnerabilities found" for packages it never checked).
audit: $(STAMP)
	$(BIN)/pip-audit --strict --require-hashes --disable-pip -r $(DEV_LOCK) || { echo \
	  "audit: failed (above): a known vulnerability, or a package the advisory service could not answer for (docs/guide.md)" >&2; \
	  exit 1; }

check: lint types test audit  ## what CI runs, then the audit (which needs the advisory service)

bench: $(STAMP)  ## benchmarks (add --record by hand to update docs/performance.md)
	$(BIN)/python -m bench.refresh
	$(BIN)/python -m bench.read_path
	$(BIN)/python -m bench.realtime
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.ledger_memory

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
