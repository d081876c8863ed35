# IoT Playground API. Quickstart: `make run` (serves http://127.0.0.1:8000), `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every target below that runs a tool is an alias of one `iot-playground` command (`$(CLI) --help`).
CLI := $(BIN)/iot-playground
STAMP := $(VENV)/.installed
# Template and workflow checkers, apart from the app's pinned versions.
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
PORT ?= 8000
# Bytecode kept between runs, even where the shell sets PYTHONDONTWRITEBYTECODE: each test run
# imports the same modules again (and pytest's rewritten test modules are cached the same way).
unexport PYTHONDONTWRITEBYTECODE
STAGE ?= dev

.PHONY: install tools run check test lint typecheck bench clean tables package package-tf policies openapi

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip<26.3"
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

$(TOOLS_STAMP): requirements-tools.txt
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet -r requirements-tools.txt
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# Deployment (docs/operations.md): STAGE=dev|prod.
tables: $(STAMP)
	$(CLI) tables --stage $(STAGE)

# After `chalice deploy`: throttle, admin usage plan and key, gateway responses, alarms (idempotent).
.PHONY: guards
guards: $(STAMP)
	$(CLI) guards --stage $(STAGE)

package: $(STAMP)
	$(CLI) package --stage $(STAGE)

package-tf: $(STAMP)
	$(CLI) package --stage $(STAGE) --format terraform

policies: $(STAMP)
	$(CLI) policies

# docs/openapi.json from the msgspec schemas (iot_playground/openapi.py); served at GET /api/openapi.json.
openapi: $(STAMP)
	$(CLI) openapi

# The embedded MQTT broker's port (docs/mqtt.md), simulate --mqtt's default; other serves take a free one.
run: export MQTT_PORT ?= 1883
run: $(STAMP)
	$(CLI) serve --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The fast loop, under a minute: lint, types and the unit tests on moto, leaving to `make test` the
# tests that start a process of their own (e2e) and those that take seconds each (slow).
check: $(STAMP) lint typecheck
	$(BIN)/pytest -m "not e2e and not slow"

# Everything, as CI runs it.
test: $(STAMP) $(TOOLS_STAMP) lint typecheck
	$(BIN)/pytest

# The full benchmark (docs/capacity.md): tables on stdout, bench/results.json. Not part of
# `make test`, which runs it at tiny sizes (tests/test_bench.py).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(TOOLS_VENV) dist .pytest_cache .mypy_cache .ruff_cache
