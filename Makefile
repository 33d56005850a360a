# ShopiBundle V2 bundle service. Two commands do all set-up on a fresh machine:
#   make run    the service on the embedded database, with demo data and the Shopify simulator
#   make test   the whole suite
# Both create .venv/ (Python 3.11) and install what they need.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck openapi bench bench-migration bench-storefront wrk clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m app.devserver

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check app tests bench alembic

typecheck: install
	$(BIN)/mypy app

openapi: install
	$(BIN)/python -m app.openapi_export > openapi.yaml

bench-migration: install
	$(BIN)/python bench/bench_migration.py

# The storefront benchmark drives the servers with wrk (compiled; a Python client saturates first).
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; \
	  else echo "wrk is missing: run 'sudo apt-get install -y wrk'" >&2; exit 1; fi; }

bench-storefront: install wrk
	$(BIN)/python bench/bench_storefront.py

# `make bench`: the storefront targets (service vs bare app, wrk, ~4 minutes). bench-migration is separate.
bench: bench-storefront

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
