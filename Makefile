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

.PHONY: run test fuzz protos bench lint clean setup browser chaos cluster deploy-venv deploy-check

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

# The Kubernetes manifests (deploy/kubernetes): every overlay rendered with kustomize, validated against
# the Kubernetes schemas (kubernetes-validate) and checked by checkov, then the rules tests/deploy asserts.
# `make test` runs the same tests; their tools live in a virtual environment of their own (checkov's
# dependencies would clash with the project's), made by `make deploy-venv` from deploy/requirements.txt.
DEPLOY_VENV  ?= .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed-stamp

deploy-venv: $(DEPLOY_STAMP)

$(DEPLOY_STAMP): deploy/requirements.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	# Nothing in it is the project's: git ignores the whole folder.
	echo '*' > $(DEPLOY_VENV)/.gitignore
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEPLOY_VENV)/bin/python -m pip install --quiet -r deploy/requirements.txt
	touch $@

deploy-check: setup deploy-venv
	$(BIN)/python -m pytest tests/deploy -p no:cacheprovider $(PYTEST_ARGS)

# The platform on a 3-node JetStream cluster with 2 processes of every service (tests/cluster): the node leading
# EVENTS killed, then one process of every service, then the node restarted, under traffic, with the ledger.
# `make test` runs its short form (the node, an edge and a delivery process).
cluster: setup
	SWITCHBOARD_CLUSTER=full $(BIN)/python -m pytest tests/cluster -m cluster -p no:cacheprovider -s $(PYTEST_ARGS)

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
	rm -rf $(VENV) $(DEPLOY_VENV) switchboard/v1 .pytest_cache
