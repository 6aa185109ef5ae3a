# Two commands on a fresh machine: `make run` and `make test`.
# Each target sets up what is missing (virtual environment, dependencies,
# generated gRPC stubs) and nothing more.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/switchboard/v1/*.proto)
STUBS  := switchboard/v1/.generated-stamp
GOOGLE_API_PROTOS = $(BIN)/python -c 'import google.api, pathlib; print(pathlib.Path(google.api.__path__[0]).parents[1])'

.PHONY: run test fuzz protos bench lint clean setup browser chaos

setup: $(STAMP) $(STUBS)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Stubs are generated on setup and never committed (switchboard/v1 is in
# .gitignore), so they can never drift from protos/.
$(STUBS): $(STAMP) $(PROTOS)
	mkdir -p switchboard/v1
	# google/api/*.proto (the http bindings) ship with googleapis-common-protos.
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iprotos -I"$$($(GOOGLE_API_PROTOS))" \
		--python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. \
		$(PROTOS)
	touch switchboard/v1/__init__.py
	$(BIN)/python -m switchboard.client_methods_gen switchboard/v1/client_methods.py
	touch $@

protos:
	rm -f $(STUBS)
	$(MAKE) $(STUBS)

run: setup
	$(BIN)/switchboard up

test: setup browser lint
	$(BIN)/python -m pytest --durations=20 $(PYTEST_ARGS)

# ruff and mypy over the whole tree, the generated stubs' .pyi included ([tool.ruff] and [tool.mypy] in
# pyproject.toml); `make test` runs it first.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# schemathesis over every operation of /openapi.json with many more examples than `make test` runs.
fuzz: setup
	SWITCHBOARD_FUZZ_EXAMPLES=$${SWITCHBOARD_FUZZ_EXAMPLES:-200} $(BIN)/python -m pytest \
		tests/e2e/test_api_contract.py -k schemathesis $(PYTEST_ARGS)

# Fault injection against the real platform (tests/chaos): every scenario, its zero-loss ledger printed.
# `make test` runs only its short form (kill -9 of the delivery process).
chaos: setup
	SWITCHBOARD_CHAOS=full $(BIN)/python -m pytest tests/chaos -m chaos -p no:cacheprovider -s $(PYTEST_ARGS)

# Debian's chromium for the dashboard's browser test (tests/e2e/test_dashboard.py).
# Nothing to do when it is there; installed when apt-get is at hand as root;
# otherwise that test skips, saying why.
browser:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed: tests/e2e/test_dashboard.py will skip"

bench: setup
	$(BIN)/python -m tests.bench.ingest_bench
	$(BIN)/python -m tests.bench.ingest_dedup_bench
	$(BIN)/python -m tests.bench.auth_bench
	$(BIN)/python -m tests.bench.sources_bench
	$(BIN)/python -m tests.bench.end_to_end_bench
	$(BIN)/python -m tests.bench.delivery_bench
	$(BIN)/python -m tests.bench.delivery_drain_bench
	$(BIN)/python -m tests.bench.router_bench
	$(BIN)/python -m tests.bench.ai_local_bench
	$(BIN)/python -m tests.bench.analytics_bench
	$(BIN)/python -m tests.bench.floor_pipeline
	$(BIN)/python -m tests.bench.steady_bench

clean:
	rm -rf $(VENV) switchboard/v1 .pytest_cache
