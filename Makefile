# The README's commands. Everything installs itself on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= config/sipguard.toml
# The call path compiled with mypyc (setup.py): a package directory put first on PYTHONPATH.
COMPILED := build/compiled

.PHONY: run run-compiled compiled test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=77'
	$(PY) -m pip install -q -e '.[test]'
	touch $@

## Set up and run the gateway on the embedded default config (SQLite only, no broker).
run: $(VENV)/.installed
	$(VENV)/bin/sipguard serve -c $(CONFIG)

## Compile the call path with mypyc into build/compiled (a minute or two; gcc and the Python
## headers needed). Rebuilt when a source changes.
compiled: $(COMPILED)/.built

$(COMPILED)/.built: $(VENV)/.installed setup.py pyproject.toml $(shell find src -name '*.py')
	rm -rf $(COMPILED)
	$(PY) -m pip install -q 'setuptools>=77'  # a venv made before setup.py existed has less
	SIPGUARD_COMPILE=1 $(PY) -m pip install -q --no-deps --no-build-isolation --target $(COMPILED) .
	touch $@

## The gateway on the compiled call path (what the Docker image and `make bench` run).
run-compiled: compiled
	PYTHONPATH=$(CURDIR)/$(COMPILED) $(PY) -m sipguard serve -c $(CONFIG)

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
	rm -rf $(VENV) var build .pytest_cache .mypy_cache .ruff_cache
