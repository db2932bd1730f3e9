# Two entry points: `make demo` (fresh venv, install, seed, run the example DAG) and `make test`
# (Chromium for the browser test, install, then every check CI runs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/constraints-3.11.txt
TORCH_PIN := torch==2.13.0

.PHONY: demo test lint typecheck docs pytest install install-test chromium clean bench-smartnoise-venv

# The stack (torch first, then everything under the tested constraints) is installed once per
# change of pyproject.toml or the constraints; the project itself is reinstalled on every run
# (a plain, non-editable wheel: `provider/` installs as `synth_provider`).
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stack-installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) ".[test,postgres,mysql,s3,dbt,lineage,kubernetes,transformers,marginal,docs]"
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

# tests/test_report_browser.py opens the release report in Debian's Chromium: installed here when it
# is missing and make runs as root, else make stops with the command to run, before anything else
# (CHROMIUM and RUN_AS_UID are variables only so a test can take both branches; leave them be).
CHROMIUM := /usr/bin/chromium
RUN_AS_UID := $(shell id -u)
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$(RUN_AS_UID)" = 0 ]; then \
	    echo "make: installing Debian's chromium ($(CHROMIUM)) for tests/test_report_browser.py"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null && test -x $(CHROMIUM); \
	  else \
	    echo "make: $(CHROMIUM) is missing (tests/test_report_browser.py needs it): run 'sudo apt-get install -y chromium', then make again" >&2; \
	    exit 1; \
	  fi; \
	fi

# the documentation site (mkdocs.yml, docs/) into the git-ignored site/; --strict: a warning (a broken
# link, an unparsable docstring) fails the build. Offline: nothing is fetched.
MKDOCS_BUILD := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
docs: install
	$(MKDOCS_BUILD)

pytest: chromium install
	$(BIN)/pytest

test: chromium install
	$(BIN)/pip check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(MKDOCS_BUILD)
	$(BIN)/pytest

# SmartNoise (compared side by side in benchmarks/generators.py) pins opacus<0.15 and mbi<2, so it
# lives in its own virtualenv; torch first, as for the main stack.
SN_VENV := benchmarks/.venv-smartnoise
$(SN_VENV)/.installed: benchmarks/smartnoise-constraints.txt
	$(PYTHON) -m venv $(SN_VENV)
	$(SN_VENV)/bin/pip install --quiet $(TORCH_PIN)
	$(SN_VENV)/bin/pip install --quiet -c benchmarks/smartnoise-constraints.txt smartnoise-synth packaging
	$(SN_VENV)/bin/pip check
	touch $@

bench-smartnoise-venv: $(SN_VENV)/.installed

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache test-artifacts site
