# arouter: `make run` starts the gateway (embedded SQLite, no other servers); `make test` runs the suite.
# .venv is made with PYTHON, else with the fastest Python 3.11+ build found here (deploy/pick-python)
PYTHON ?=
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
NATIVE  = gateway/.native

JS_STAMP = tests/js/node_modules/.installed

.PHONY: run test lint type bench services migrate clean

$(STAMP): pyproject.toml
	@py="$(PYTHON)"; py="$${py:-$$(./deploy/pick-python)}"; \
	echo "arouter: creating $(VENV) with $$py, Python $$("$$py" deploy/python_build.py | cut -d' ' -f2-)"; \
	"$$py" -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 'setuptools>=77'
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The request path's pure modules compiled in place with mypyc (setup.py; pip's isolated build
# leaves them out), again whenever any gateway source changed since: the types of what they import
# are compiled into them too.
$(NATIVE): $(STAMP) setup.py $(shell find gateway -name '*.py')
	$(BIN)/python setup.py --quiet build_ext --inplace
	touch $(NATIVE)

run: $(NATIVE)
	$(BIN)/arouter serve

migrate: $(STAMP)
	$(BIN)/arouter migrate

# Postgres and Redis for the backend contract tests: started here if they are installed but down.
services:
	@./deploy/ensure-services.sh

# The official JS SDKs for the smoke test (skipped, with its reason, where npm is missing).
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: tests/test_js_sdks.py will be skipped"; fi

# The tests of the compiled modules again with their sources (what `pip install .` runs): AROUTER_PURE=1.
PURE_TESTS = tests/translate tests/translate_gemini_in tests/translate_native tests/ratelimit tests/billing \
	tests/test_lease.py tests/test_relay_units.py tests/test_journal.py tests/test_build.py tests/test_chat.py \
	tests/test_bad_input.py tests/test_routing.py

test: $(NATIVE) services $(JS_STAMP)
	$(BIN)/ruff check gateway tests benchmarks setup.py
	$(BIN)/mypy
	$(BIN)/pytest -q
	AROUTER_PURE=1 $(BIN)/pytest -q $(PURE_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check gateway tests benchmarks setup.py

type: $(STAMP)
	$(BIN)/mypy

# `make bench` (~25 min; waits if another run is measuring); `make bench BENCH_ARGS=--quick` (~6 min).
# run.py: side by side on the clock; instructions.py: instructions per request under callgrind;
# publish.py: both into the README.
BENCH_ARGS ?=
bench: $(NATIVE)
	./benchmarks/install.sh
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	@if command -v valgrind >/dev/null 2>&1; then $(BIN)/python benchmarks/instructions.py; \
	else echo "valgrind not installed: instructions per request not measured"; fi
	$(BIN)/python benchmarks/publish.py

clean:
	rm -rf $(VENV) var build *.egg-info $(NATIVE)
	find gateway -name "*.so" -delete
