# `make run` and `make test` are the two commands of the README. Both set up .venv from
# requirements.txt first (once, and again whenever requirements.txt changes).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export PORT ?= 8000

.PHONY: run test chaos bench install clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed

.env: | $(VENV)/.installed
	$(PY) -m config.envfile .env

run: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	bin/run

test: install
	$(PY) -m mypy
	$(PY) -m pytest

# The load scenario at full size: 10,000 requests, 5 % repeated keys, random Twilio failures, on
# PostgreSQL (this machine's) and a Redis of its own. Prints the reconciliation table.
chaos: install
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ext_twilio} CHAOS_REQUESTS=$${CHAOS_REQUESTS:-10000} \
		$(PY) -m pytest -s --timeout=3600 tests/chaos/test_chaos.py -k load

# The benchmark (bench/run.py; README "Benchmark"): starts PostgreSQL and Redis if needed, uses its own
# database ext_twilio_bench_load and Redis db 12. BENCH_QUICK=1 for a short run. Never part of `make test`.
bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) var staticfiles
