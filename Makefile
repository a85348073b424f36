# The two commands of the README:
#   make run    install, migrate, create demo data, serve the embedded default on 127.0.0.1:8000
#   make test   install, lint (style, import contracts, types), run the whole test suite on
#               PostgreSQL and Redis
# Dependencies are pinned with hashes in requirements.lock (runtime) and requirements-dev.lock.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps

# Tests run on real services; override either on the command line or in the environment.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/bulwark
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format lock clean db-roles

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-installed: requirements.lock | $(BIN)/python
	$(PIP_INSTALL) -r requirements.lock
	touch $@

$(VENV)/.dev-installed: requirements-dev.lock | $(BIN)/python
	$(PIP_INSTALL) -r requirements-dev.lock
	touch $@ $(VENV)/.runtime-installed

run: $(VENV)/.runtime-installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py bootstrap_demo
	@echo ""
	@echo "Bulwark is starting on the embedded default (SQLite, in-process cache, eager Celery):"
	@echo "  home      http://$(HOST):$(PORT)/"
	@echo "  admin     http://$(HOST):$(PORT)/admin/"
	@echo "  API docs  http://$(HOST):$(PORT)/api/docs"
	@echo "  health    http://$(HOST):$(PORT)/healthz   readiness http://$(HOST):$(PORT)/readyz"
	@echo "Models run in this process (MODEL_ISOLATION=inprocess, the embedded default only);"
	@echo "production runs each in a sandboxed model runner that holds no secret."
	@echo "Its periodic jobs (audit chain, key expiry, the detectors every minute) run in the same"
	@echo "process (SCHEDULER=inprocess); production runs celery beat."
	@echo "Watch detectors open incidents: in a second terminal run (it asks for the keys above)"
	@echo "  .venv/bin/python manage.py demo_traffic --url http://$(HOST):$(PORT)"
	@echo "Stop it with Ctrl-C."
	@echo ""
	@# One process: the embedded default keeps rate-limit windows in its in-process cache, and
	@# its worker runs the scheduler (apps/core/scheduler.py) beside the requests.
	exec env SCHEDULER=inprocess $(BIN)/gunicorn -c controlplane/gunicorn.conf.py controlplane.wsgi \
		--bind $(HOST):$(PORT) --workers 1 --threads 4

test: lint
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" REDIS_URL="$${REDIS_URL:-$(TEST_REDIS_URL)}" \
		$(BIN)/pytest

# Style, the layers' import contracts (pyproject.toml, docs/architecture.md) and the types.
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# A PostgreSQL database with the two roles of production (README, Database roles): DB_OWNER
# owns the tables and only migrate connects as it; DB_APP, which Bulwark connects as, owns
# nothing (migrate creates it and grants it rows only). Needs psql and a role that may create
# roles and databases (PG_ADMIN). Safe to run again: it then only migrates.
PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432
PG_ADMIN ?= postgres
DB_NAME ?= bulwark
DB_OWNER ?= bulwark_owner
DB_APP ?= bulwark_app
PSQL := psql -h $(PG_HOST) -p $(PG_PORT) -U $(PG_ADMIN) -d postgres -v ON_ERROR_STOP=1 -qtA

db-roles: $(VENV)/.runtime-installed
	$(PSQL) -c "SELECT 1 FROM pg_roles WHERE rolname = '$(DB_OWNER)'" | grep -q 1 \
		|| $(PSQL) -c 'CREATE ROLE "$(DB_OWNER)" LOGIN CREATEROLE'
	$(PSQL) -c "SELECT 1 FROM pg_database WHERE datname = '$(DB_NAME)'" | grep -q 1 \
		|| $(PSQL) -c 'CREATE DATABASE "$(DB_NAME)" OWNER "$(DB_OWNER)"'
	DATABASE_OWNER_URL="postgres://$(DB_OWNER)@$(PG_HOST):$(PG_PORT)/$(DB_NAME)" \
		DATABASE_URL="postgres://$(DB_APP)@$(PG_HOST):$(PG_PORT)/$(DB_NAME)" \
		$(BIN)/python manage.py migrate --noinput
	@echo "Bulwark's database: DATABASE_URL=postgres://$(DB_APP)@$(PG_HOST):$(PG_PORT)/$(DB_NAME)"
	@echo "  and, for migrate only, DATABASE_OWNER_URL=postgres://$(DB_OWNER)@$(PG_HOST):$(PG_PORT)/$(DB_NAME)"

# Regenerate the lock files after changing pyproject.toml (needs the dev install for uv).
lock: $(VENV)/.dev-installed
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -q \
		-c requirements.lock -o requirements-dev.lock

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
