# dhcpleased for Linux — developer entry points.
#   make check   virtual environment + ruff + mypy --strict + pytest (integration tests need root)
#   make demo    (root) a real lease from dnsmasq in a throwaway network namespace
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: check lint typecheck test demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check dhcpleased dhcpleasectl tests
	$(BIN)/ruff format --check dhcpleased dhcpleasectl tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict dhcpleased dhcpleasectl

test: $(STAMP)
	$(BIN)/pytest

check: lint typecheck test

demo: $(STAMP)
	bash tests/integration/prepare.sh
	$(BIN)/python -m tests.integration.demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
