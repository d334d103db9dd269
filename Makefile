# Task Manager API: `make run` serves the API, `make test` runs the whole suite.
# Both create .venv and install everything on first use; nothing needs installing by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WEB_CONCURRENCY ?= 1
STAMP := $(VENV)/.installed
# Every uvicorn we start: the client's address is the peer's (X-Forwarded-For is the app's to
# judge, from TRUSTED_PROXIES), and slow clients are cut off (server_protocol.py).
UVICORN_FLAGS := --no-proxy-headers --http server_protocol:SlowClientProtocol --no-access-log

include mk/infra.mk
include mk/bench.mk

.PHONY: install run migrate test lint format check clean fuzz security browser-deps

# pip runs quietly, so each step says what it is doing (a first install takes about a minute).
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@echo "install: creating $(VENV) with $$($(PYTHON) --version)"
	@$(PYTHON) -m venv $(VENV)
	@echo "install: upgrading pip"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@echo "install: installing the pinned packages of requirements-dev.txt (about a minute the first time)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)
	@echo "install: done"

install: $(STAMP) ## Install runtime and dev dependencies into .venv

migrate: $(STAMP) ## Apply database migrations (DATABASE_URL, default SQLite file)
	@echo "migrate: alembic upgrade head"
	@$(BIN)/alembic upgrade head

run: migrate ## Serve the API on HOST:PORT (default 127.0.0.1:8000)
	@echo "run: serving http://$(HOST):$(PORT) (docs at /docs) with $(WEB_CONCURRENCY) worker(s)"
	$(BIN)/uvicorn main:app --host $(HOST) --port $(PORT) --workers $(WEB_CONCURRENCY) \
		$(UVICORN_FLAGS) --timeout-graceful-shutdown 8 --log-config uvicorn-logging.json

lint: $(STAMP) ## ruff (lint and format check) and strict mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Debian's chromium and its driver, if missing: tests/test_docs_browser.py drives /docs in them.
# apt-get update only when a package has no install candidate (fresh image, empty lists).
browser-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		for pkg in $$missing; do \
			apt-cache policy "$$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]' \
				|| { $(INFRA_SUDO) apt-get update -qq; break; }; \
		done; \
		echo "browser-deps: installing$$missing"; \
		DEBIAN_FRONTEND=noninteractive $(INFRA_SUDO) apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; \
	fi; \
	echo "browser-deps: $$(command -v chromium) $$(command -v chromedriver)"

# infra-deps installs nginx if missing: the blue-green deploy tests drive a real one.
test: $(STAMP) infra-deps browser-deps ## Run the whole suite (TEST_DATABASE_URL / TEST_REDIS_URL: PostgreSQL / Redis)
	$(BIN)/pytest $(PYTEST_ARGS)

check: lint test

# Security tooling lives in its own venv so its dependencies never move the app's pins.
FUZZ_VENV := .venv-fuzz
$(FUZZ_VENV)/.installed: requirements-security.txt
	$(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-security.txt
	@touch $@

fuzz: $(STAMP) $(FUZZ_VENV)/.installed ## schemathesis --checks all against the app's own OpenAPI schema, two peer users
	$(BIN)/python scripts/fuzz/fuzz_api.py $(FUZZ_ARGS)

security: $(FUZZ_VENV)/.installed ## bandit over the app code: no finding of medium severity or higher
	$(FUZZ_VENV)/bin/bandit --quiet --recursive --severity-level medium \
		--exclude ./.venv,./.venv-fuzz,./.venv-infra,./.venv-bench,./node_modules,./tests,./bench .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
