# dbsync: `make run` starts the service on a demo database, `make test` runs the checks.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
export PATH := $(BIN):$(PATH)

.PHONY: run test install services migrate lint bench

AMQP_TESTS := tests/test_gate.py tests/test_tasks.py tests/test_queues.py tests/test_faults.py

# `make run` only: SECRET_KEY, SYNC_SECRET_KEYS and FLOWER_BASIC_AUTH, where the environment
# sets none, come from .run/secrets.mk, generated once and kept (git-ignored).
ifneq ($(filter run migrate,$(or $(MAKECMDGOALS),run)),)
LOCAL_SECRETS := $(shell $(PYTHON) scripts/local_secrets.py .run/secrets.mk >&2)
include .run/secrets.mk
endif

run: migrate
	python manage.py collectstatic --noinput -v0
	python manage.py demo
	python scripts/supervise.py  # checks SYNC_WEB_PORT and FLOWER_PORT, prints the addresses

test: install
	python scripts/ensure_services.py --browser
	ruff check .
	ruff format --check .
	mypy
	lint-imports --no-cache
	pytest
	# The tests of the gate, the tasks, the worker and the faults again, on RabbitMQ.
	DBSYNC_TEST_BROKER=amqp DJANGO_SETTINGS_MODULE=project.test_settings python scripts/ensure_services.py
	DBSYNC_TEST_BROKER=amqp pytest -p no:cacheprovider $(AMQP_TESTS)

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

services: install
	python scripts/ensure_services.py

migrate: services
	python manage.py migrate --noinput -v0

bench: services
	python bench/reflect.py
