# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The slowest tests are named at the end of every run (CI too), so the suite time stays watched.
PYTEST_ARGS ?= --durations=25
# Every test run writes what the hostile-input, fault, crash and load tests tried and lost
# (tests/reliability.py) here; var/ is not tracked, so `make test` dirties nothing.
RELIABILITY_DIR := var/reliability
FUZZ_EXAMPLES ?= 5000

.PHONY: install run test lint bench mutate clean browser nginx axe soak fuzz reliability

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --config-settings editable_mode=compat -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/examvault serve --demo

# The web page's browser tests drive Debian's Chromium; no browser is ever downloaded by pip or
# Playwright. Without apt (not Debian) the tests skip locally and fail in CI (strict mode). A CJK
# font too: the page is Chinese first, and the screenshots should show it, not empty boxes.
CHROMIUM := /usr/bin/chromium
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
APT_CHROMIUM := env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
  fonts-wqy-microhei

browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -f $(CJK_FONT) ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make browser: no apt-get here; install Chromium at $(CHROMIUM) by hand" >&2; \
	  else \
	    if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO $(APT_CHROMIUM) || { $$SUDO apt-get update && $$SUDO $(APT_CHROMIUM); }; \
	  fi; \
	fi

# deploy/'s checks and the nginx-fronted tests and bench run Debian's nginx (nginx-light) from a
# temporary prefix; systemd-analyze (systemd) verifies deploy/systemd/, promtool (prometheus)
# deploy/prometheus/. Installed like Chromium.
NGINX := /usr/sbin/nginx
APT_NGINX := env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  nginx-light systemd prometheus

nginx:
	@if [ ! -x $(NGINX) ] || ! command -v systemd-analyze >/dev/null 2>&1 \
	    || ! command -v promtool >/dev/null 2>&1; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make nginx: no apt-get here; install nginx, systemd and promtool by hand" >&2; \
	  else \
	    if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO $(APT_NGINX) || { $$SUDO apt-get update && $$SUDO $(APT_NGINX); }; \
	  fi; \
	fi

# The browser tests check every page with axe-core (tests/web/a11y.py), from npm at a pinned
# version into var/npm (untracked); npm itself from apt when the machine lacks it.
AXE_VERSION := 4.14.1
AXE := var/npm/node_modules/axe-core/axe.min.js
APT_NPM := env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm

$(AXE):
	@if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO $(APT_NPM) || { $$SUDO apt-get update && $$SUDO $(APT_NPM); }; \
	fi
	npm install --prefix var/npm --no-audit --no-fund --no-save axe-core@$(AXE_VERSION)

axe: $(AXE)

test: install browser nginx axe
	EXAMVAULT_RELIABILITY_JSON=$(RELIABILITY_DIR)/test.json $(PY) -m pytest $(PYTEST_ARGS)

# The long versions (minutes to an hour): every test that records into the reliability record
# or is marked `soak` runs with EXAMVAULT_SOAK=1 (the convention: such a test reads it and
# tries more rounds, kills, clients or time), then the full load run on PostgreSQL
# (EXAMVAULT_TEST_POSTGRES_URL, else postgres@127.0.0.1:5432/test), which writes
# bench/results/load.json.
soak: install
	EXAMVAULT_SOAK=1 EXAMVAULT_RELIABILITY_JSON=$(RELIABILITY_DIR)/soak.json \
	  $(PY) -m pytest -m "reliability or soak" $(PYTEST_ARGS)
	$(PY) -m bench.load

# The probe's mutation fuzzing (hypothesis) with many more cases than `make test` tries.
fuzz: install
	EXAMVAULT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) EXAMVAULT_RELIABILITY_JSON=$(RELIABILITY_DIR)/fuzz.json \
	  $(PY) -m pytest tests/ingest -k fuzz $(PYTEST_ARGS)

# docs/reliability.md from the suite's own output: the reliability-recording tests run now,
# rendered with whatever `make soak` and `make fuzz` left in var/reliability/. The page is
# written even when a test failed (it says which), and the target then fails too.
reliability: install
	status=0; \
	EXAMVAULT_RELIABILITY_JSON=$(RELIABILITY_DIR)/test.json $(PY) -m pytest -m reliability \
	  $(PYTEST_ARGS) || status=$$?; \
	$(PY) -m tests.reliability $(RELIABILITY_DIR)/*.json > docs/reliability.md.new \
	  && mv docs/reliability.md.new docs/reliability.md || status=1; \
	rm -f docs/reliability.md.new; exit $$status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install nginx
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
