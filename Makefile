# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test lint bench mutate clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --config-settings editable_mode=compat -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/examvault serve --demo

# The web page's browser tests drive Debian's Chromium; no browser is ever downloaded by pip or
# Playwright. Without apt (not Debian) the tests skip locally and fail in CI (strict mode).
CHROMIUM := /usr/bin/chromium
APT_CHROMIUM := env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make browser: no apt-get here; install Chromium at $(CHROMIUM) by hand" >&2; \
	  else \
	    if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO $(APT_CHROMIUM) || { $$SUDO apt-get update && $$SUDO $(APT_CHROMIUM); }; \
	  fi; \
	fi

test: install browser
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) -m bench.ingest
	$(PY) -m bench.health
	$(PY) -m bench.coverage
	$(PY) -m bench.purge
	$(PY) -m bench.api

MUTATE_STAMP := $(VENV)/.mutate-installed

$(MUTATE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --config-settings editable_mode=compat -e '.[test,mutate]'
	touch $(MUTATE_STAMP)

# Not part of `make test`: minutes per module, one mutant at a time.
mutate: $(MUTATE_STAMP)
	$(PY) -m bench.mutation

clean:
	rm -rf $(VENV) var .pytest_cache
