# The README's two commands: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?=

.PHONY: run test test-deps lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

## run: set up the virtualenv and run the collector (embedded ClickHouse under ./data)
run: $(VENV)/.installed
	$(VENV)/bin/agentwatch serve $(if $(CONFIG),-c $(CONFIG))

## test: install everything the tests need, run the whole suite, then ruff and mypy
test: $(VENV)/.installed test-deps
	$(PY) -m pytest
	$(MAKE) --no-print-directory lint

test-deps: $(VENV)/.installed
	bash scripts/install-test-deps.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check collector processors exporters extensions tests bench
	$(VENV)/bin/mypy collector processors exporters extensions

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
