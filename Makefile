# The README's commands. Everything installs itself on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= config/sipguard.toml

.PHONY: run test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

## Set up and run the gateway on the embedded default config (SQLite only, no broker).
run: $(VENV)/.installed
	$(VENV)/bin/sipguard serve -c $(CONFIG)

## Set up everything the tests need (Python deps, sipp, mosquitto) and run the whole suite.
test:
	scripts/test.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

## SIPp load through sipguard, Kamailio and direct, in one run (see bench/README.md).
bench: $(VENV)/.installed
	bench/run.sh

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
