# ShopiBundle V2 bundle service. Two commands do all set-up on a fresh machine:
#   make run    the service on the embedded database, with demo data and the Shopify simulator
#   make test   the whole suite
# Both create .venv/ (Python 3.11) and install what they need.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install lock audit run test lint typecheck openapi bench bench-migration bench-migration-targets bench-storefront wrk clean

# Installs exactly what requirements/dev-lock.txt pins (every package with its hashes, the build
# backend included), then the project itself without resolving anything: a fresh machine next year
# gets what was tested. Plain pip, so nothing but Python is needed first. `make lock` moves the pins.
$(STAMP): pyproject.toml requirements/dev-lock.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

# Regenerate the locks from pyproject.toml (keeps current pins where they still fit; move them with
# `make lock LOCK_FLAGS=--upgrade` or `LOCK_FLAGS='--upgrade-package NAME'`). The runtime lock
# (the Docker image) is constrained by the dev lock, so both pin the same versions.
LOCK_FLAGS ?=
LOCK_COMPILE = $(BIN)/python -m uv pip compile pyproject.toml requirements/build.in --generate-hashes \
	--universal --python-version 3.11 --custom-compile-command "make lock" --quiet
lock: install
	$(LOCK_COMPILE) --extra dev $(LOCK_FLAGS) -o requirements/dev-lock.txt
	$(LOCK_COMPILE) -c requirements/dev-lock.txt -o requirements/lock.txt

# Known vulnerabilities in the locked dependencies (pip-audit; fails when none of the data answers).
audit: install
	$(BIN)/python requirements/audit.py

run: install
	$(BIN)/python -m app.devserver

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not chaos"

# ruff, the architecture's import contracts (pyproject's [tool.importlinter]) and the types.
lint: install
	$(BIN)/ruff check app tests bench alembic
	$(BIN)/lint-imports
	$(BIN)/mypy app

typecheck: install
	$(BIN)/mypy app

openapi: install
	$(BIN)/python -m app.openapi_export > openapi.yaml

# The job engine against the plan's Phase 3 script run literally (target >= 100x, ~2 minutes).
bench-migration: install
	$(BIN)/python bench/bench_migration.py

# Standard-plan bucket share, peak RSS 10k vs 50k items, storefront p99 during a paced job, dual
# write on vs off (~4 minutes; BENCH_DATABASE_URL / TEST_DATABASE_URL, else embedded PostgreSQL).
bench-migration-targets: install wrk
	$(BIN)/python bench/bench_migration_targets.py

# The storefront benchmark drives the servers with wrk (compiled; a Python client saturates first).
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; \
	  else echo "wrk is missing: run 'sudo apt-get install -y wrk'" >&2; exit 1; fi; }

bench-storefront: install wrk
	$(BIN)/python bench/bench_storefront.py

# `make bench`: every target, each printed with holds / falls short and saved under bench/results/
# (the storefront vs the bare app, the migration vs the plan's script, the migration and dual-write
# targets; ~10 minutes).
bench: bench-storefront bench-migration bench-migration-targets

# `make chaos`: the long reliability runs (docs/reliability.md). Tests marked `chaos` (exit 5 = none
# collected is fine), the fault run with two replicas (CHAOS_SECONDS, default 60) and the soak
# (SOAK_SECONDS, default 600). Each writes JSON under tests/chaos/results/ and fails on a failed check.
CHAOS_SECONDS ?= 60
SOAK_SECONDS ?= 600
chaos: install wrk
	$(BIN)/python -m pytest -q -p no:cacheprovider -m chaos; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]
	HYPOTHESIS_PROFILE=chaos $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_fuzz_parsers.py tests/integration/test_storefront_cache.py
	$(BIN)/python tests/chaos/run_chaos.py --duration $(CHAOS_SECONDS)
	$(BIN)/python tests/chaos/run_soak.py --duration $(SOAK_SECONDS)
	$(BIN)/python -m tests.fuzz.run_schemathesis --max-examples 100 --report-dir .data/schemathesis

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
