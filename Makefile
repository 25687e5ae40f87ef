# arouter: `make run` starts the gateway (embedded SQLite, no other servers); `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint type bench services migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/arouter serve

migrate: $(STAMP)
	$(BIN)/arouter migrate

# Postgres and Redis for the backend contract tests: started here if they are installed but down.
services:
	@./deploy/ensure-services.sh

test: $(STAMP) services
	$(BIN)/ruff check gateway tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check gateway tests benchmarks

type: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	./benchmarks/install.sh
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) var build *.egg-info
