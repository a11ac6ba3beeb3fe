# Every target bootstraps .venv from nothing, so a fresh clone needs no other step.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
FUZZ_STAMP := $(VENV)/.fuzz-installed

.PHONY: demo test lint typecheck unit bench fuzz clean chromium prometheus

$(STAMP): pyproject.toml
	@command -v chromium >/dev/null || $(MAKE) --no-print-directory chromium
	@command -v prometheus >/dev/null || $(MAKE) --no-print-directory prometheus
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Peer SDKs are measured in their own environment, never in the project's dependencies.
$(BENCH_STAMP): benchmarks/peers/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r benchmarks/peers/requirements.txt
	touch $(BENCH_STAMP)

# schemathesis joins .venv only for `make fuzz` (the `fuzz` extra), behind its own stamp.
$(FUZZ_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,fuzz]'
	touch $(FUZZ_STAMP)

demo: $(STAMP)
	$(BIN)/rollwise demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python benchmarks/evaluation.py --peers-python $(BENCH_VENV)/bin/python
	$(BIN)/python benchmarks/judgement.py
	$(BIN)/python benchmarks/validity.py
	$(BIN)/python benchmarks/mixture.py
	$(BIN)/python benchmarks/detection_floor.py
	$(BIN)/python benchmarks/ingestion.py
	$(BIN)/python benchmarks/server_ingestion.py
	$(BIN)/python benchmarks/server_batch_cost.py
	$(BIN)/python benchmarks/kill_switch.py
	$(BIN)/python benchmarks/kill_switch_sdk.py --rounds 10
	$(BIN)/python benchmarks/kill_switch_floor.py --target raw
	$(BIN)/python benchmarks/kill_switch_floor.py --target rollwise
	$(BIN)/python benchmarks/snapshot_apply.py
	$(BIN)/python benchmarks/sdk_close.py
	$(BIN)/python benchmarks/ofrep.py
	$(BIN)/python benchmarks/simulate.py
	$(BIN)/python benchmarks/controller.py
	$(BIN)/python benchmarks/rollout_page.py

# Not part of `make test`: a real server per database (SQLite, then PostgreSQL at
# ROLLWISE_TEST_POSTGRES_URL or 127.0.0.1:5432) and 10,000 generated requests each; fails on any
# 5xx. FUZZ_ARGS passes options, e.g. FUZZ_ARGS='--db sqlite --cases 2000'.
fuzz: $(FUZZ_STAMP)
	$(BIN)/python tests/fuzz/run.py $(FUZZ_ARGS)

# Browser tests drive Debian's chromium through Playwright; Playwright never downloads a browser.
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)
chromium:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	  || ($(SUDO) apt-get update -q >/dev/null && \
	      $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .pytest_cache .ruff_cache

# The Prometheus source's tests run Debian's prometheus binary (tests/sources/).
prometheus:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null \
	  || ($(SUDO) apt-get update -q >/dev/null && \
	      $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null)
