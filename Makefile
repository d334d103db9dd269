# Task Manager API: `make run` serves the API, `make test` runs the whole suite.
# Both create .venv and install everything on first use; nothing needs installing by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WEB_CONCURRENCY ?= 1
STAMP := $(VENV)/.installed

include mk/infra.mk
include mk/bench.mk

.PHONY: install run migrate test lint format check clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP) ## Install runtime and dev dependencies into .venv

migrate: $(STAMP) ## Apply database migrations (DATABASE_URL, default SQLite file)
	$(BIN)/alembic upgrade head

run: migrate ## Serve the API on HOST:PORT (default 127.0.0.1:8000)
	$(BIN)/uvicorn main:app --host $(HOST) --port $(PORT) --workers $(WEB_CONCURRENCY) \
		--no-access-log --timeout-graceful-shutdown 8

lint: $(STAMP) ## ruff (lint and format check) and strict mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# infra-deps installs nginx if missing: the blue-green deploy tests drive a real one.
test: $(STAMP) infra-deps ## Run the whole suite (TEST_DATABASE_URL / TEST_REDIS_URL: PostgreSQL / Redis)
	$(BIN)/pytest $(PYTEST_ARGS)

check: lint test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
