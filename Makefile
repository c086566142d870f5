# The newcomer's commands: `make demo` (the local stack end to end) and `make test` (what CI runs).
# VENV and PYTHON can be overridden: `make install VENV=/tmp/venv PYTHON=python3.12`.

VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(VENV)/bin
# What the [dev] install was made from; deploy/local/run.sh reads the same stamp, so neither quick-start
# command reinstalls what the other one installed, in whichever order they run.
DEV_STAMP := $(VENV)/.animegan-dev-stamp
PROJECT_HASH = $(shell cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
# The Redis database the tests flush; give each person running tests at once their own number.
ANIMEGAN_TEST_REDIS_DB ?= 9
export ANIMEGAN_TEST_REDIS_DB

.PHONY: help install dev-env demo stop test test-slow lint typecheck format settings-table

help:
	@echo "make demo            start Redis, the API and a worker; stylize the sample photos (deploy/local/run.sh)"
	@echo "make stop            stop what make demo started"
	@echo "make test            lint + type check + the default test suite (CPU, tiny models; what .ci/run runs)"
	@echo "make test-slow       the opt-in slow tier"
	@echo "make install         create $(VENV) and install the project with the [dev] extra"
	@echo "make lint / format   ruff check / ruff format"
	@echo "make typecheck       mypy over api/ and workers/"
	@echo "make settings-table  regenerate the table of ANIMEGAN_* settings in README.md"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	echo "$(PROJECT_HASH)" >$(DEV_STAMP)

# After the demo's run.sh the venv holds only [api,worker] (no pytest, no ruff): install [dev] on top, once.
dev-env: $(BIN)/python
	@if [ "$$(cat $(DEV_STAMP) 2>/dev/null)" != "$(PROJECT_HASH)" ]; then $(MAKE) --no-print-directory install; fi

demo:
	./deploy/local/run.sh

stop:
	./deploy/local/run.sh --stop

# pytest exits 5 when it collected nothing; that is a failure here, never a silent pass.
test: dev-env lint typecheck
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): failing" >&2; fi; \
	exit $$rc

test-slow: dev-env
	$(BIN)/python -m pytest -q -m slow

lint: dev-env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy over the service (the files and options are [tool.mypy] in pyproject.toml).
typecheck: dev-env
	$(BIN)/mypy

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

settings-table:
	$(BIN)/python scripts/settings_table.py --write README.md
