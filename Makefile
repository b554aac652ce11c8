# Two commands on a fresh machine (Python 3.11 + pip): `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install serve test lint protos bench clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e 'clients/python[cli,typing]' -e '.[dev,bench,otel]'
	touch $(STAMP)

install: $(STAMP)

## Start the server on the embedded default (SQLite + qdrant-edge under ./var), ready for grpcurl.
serve: install
	$(BIN)/python -m pattern_service serve

# The machine's PostgreSQL and Redis (CI has both): tests create and drop their own databases and
# key namespaces there, never touching anything else.
TEST_POSTGRES ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
TEST_REDIS    ?= redis://127.0.0.1:6379/0

## Lint, type-check and run the whole suite: once on the embedded default (the SQL store and engine
## tests also on PostgreSQL), once with every test server on PostgreSQL + Redis + the Qdrant-server
## code path (qdrant-client local mode).
test: install lint
	TMWS_TEST_POSTGRES_URL=$(TEST_POSTGRES) $(BIN)/python -m pytest
	TMWS_TEST_POSTGRES_URL=$(TEST_POSTGRES) TMWS_TEST_DATABASE_URL=$(TEST_POSTGRES) \
	TMWS_TEST_REDIS_URL=$(TEST_REDIS) TMWS_TEST_VECTOR_BACKEND=qdrant_local \
	$(BIN)/python -m pytest tests/e2e tests/faults tests/replicas tests/security

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict clients/python/src/tmws/pattern/client

## Benchmark suite (the bench extra is installed with the rest), quick profile (~7 min): ratios to a bare grpc.aio echo server measured in the same run.
bench: install
	$(BIN)/python -m bench.run --quick

## Regenerate the protobuf/gRPC modules and .pyi types from protos/.
protos: install
	$(BIN)/python scripts/generate_protos.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
