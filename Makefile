# Runway: `make run` brings the whole stack up locally, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint format bench bench-schedule bench-api screenshots services migrate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

services: install
	@PYTHON=$(BIN)/python scripts/services.sh

migrate: services
	$(BIN)/runway migrate

run: migrate
	@$(BIN)/runway demo
	$(BIN)/honcho start -f Procfile

test: services
	$(BIN)/python -m pytest

test-fast: services
	$(BIN)/python -m pytest tests/unit tests/integration -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app api tasks

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: services
	$(BIN)/python -m bench.throughput

bench-schedule: services
	$(BIN)/python -m bench.schedule_lag

bench-api: services
	$(BIN)/python -m bench.api

screenshots: services
	$(BIN)/python -m scripts.screenshots

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
