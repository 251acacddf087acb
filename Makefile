# `make run` and `make test` are the two commands of the README, and `make demo` a first look. They set
# up .venv first: `make run` and `make demo` install requirements.txt (what the service runs with),
# `make test` requirements-dev.txt (that plus the test, type and lint tools). Each stamp file in .venv
# is redone whenever its requirements change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export PORT ?= 8000

.PHONY: run demo test lint chaos fuzz bench bench-admin install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# requirements-dev.txt starts with `-r requirements.txt` and includes bench/requirements-baseline.txt
# (the benchmark's smoke run in the tests starts its baseline), so a change to any of them redoes it.
$(VENV)/.installed-dev: requirements-dev.txt requirements.txt bench/requirements-baseline.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

.env: | $(VENV)/.installed
	$(PY) -m config.envfile .env

run: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	bin/run

# The service as `make run` starts it, beside stand-ins for LimaCharlie and Twilio on 127.0.0.1, playing
# a short story through the real endpoints (bin/demo): no account, no network. Its own folder, var/demo
# (DEMO_VAR_DIR), emptied at each start; port 8100 (DEMO_PORT). Ctrl-C stops everything it started.
demo: install
	$(PY) bin/demo

# The browser tests drive Debian's /usr/bin/chromium: bin/ensure-chromium installs it when it can
# (root with apt-get), or says the one command to run.
test: install-dev lint
	bin/ensure-chromium
	$(PY) -m pytest

# ruff (lint and format, rules in ruff.toml), the import contracts (.importlinter), mypy (mypy.ini).
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

# The load scenario at full size: 10,000 requests, 5 % repeated keys, random Twilio failures, on
# PostgreSQL (this machine's) and a Redis of its own. Prints the reconciliation table.
chaos: install-dev
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ext_twilio} CHAOS_REQUESTS=$${CHAOS_REQUESTS:-10000} \
		$(PY) -m pytest -s --timeout=3600 tests/chaos/test_chaos.py -k load

# The adversarial suite at full size (docs/security.md): 10,000 examples per intake fuzz test (each a
# signed envelope: generated, mutated from a real one, raw bytes, broken gzip) and 500 Schemathesis
# calls per operation and mode of the OpenAPI document. `make test` runs the same tests, shorter.
# About 6 minutes on 2 cores; Hypothesis' statistics at the end show the examples each test ran.
fuzz: install-dev
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} ADVERSARIAL_EXAMPLES=$${ADVERSARIAL_EXAMPLES:-500} \
		$(PY) -m pytest -q --hypothesis-show-statistics --timeout=7200 tests/extension/test_fuzz.py tests/adversarial

# The service end to end against a synchronous lcextension baseline, on the embedded defaults and on
# PostgreSQL + Redis, with CPU per message, each also with events for LimaCharlie on (what they cost per
# alert); prints OK or REGRESSION per check (docs/benchmarks.md).
# Starts PostgreSQL and Redis if needed; its own database ext_twilio_bench_e2e, Redis db 11, var/bench/.
# BENCH_RECORD=1 records the run's figures in docs/benchmarks.md.
bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements-baseline.txt
	$(PY) -m bench.run

# The audit desk at a million deliveries (bench/admin_scale.py; its own database ext_twilio_bench).
bench-admin: install-dev
	$(PY) bench/admin_scale.py

clean:
	rm -rf $(VENV) var staticfiles
