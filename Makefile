# Two entry points: `make demo` (fresh venv, install, seed, run the example DAG) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/constraints-3.11.txt
TORCH_PIN := torch==2.13.0

.PHONY: demo test lint typecheck pytest install install-test clean

# The stack (torch first, then everything under the tested constraints) is installed once per
# change of pyproject.toml or the constraints; the project itself is reinstalled on every run
# (a plain, non-editable wheel: `provider/` installs as `synth_provider`).
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stack-installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) ".[test,postgres,mysql,s3,dbt,lineage,kubernetes,transformers,marginal]"
	touch $@

install: $(VENV)/.stack-installed
	$(BIN)/pip install --quiet --no-deps --force-reinstall .

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: install
	$(BIN)/pip check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache test-artifacts
