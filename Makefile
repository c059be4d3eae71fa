# keap-pipeline: `make install`, `make demo`, `make test`, `make ui`. Needs only python3 and the package registries.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export KEAP_PIPELINE_HOME ?= $(CURDIR)/.keap_pipeline
export DAGSTER_HOME ?= $(KEAP_PIPELINE_HOME)/dagster_home

.PHONY: install demo test test-db ui lint bench fuzz clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(BIN)/keap-pipeline: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python $(PYTHON)
	@touch $@

## install: build .venv from uv.lock (exact versions, nothing unlocked)
install: $(BIN)/keap-pipeline

## demo: the main job on embedded defaults (embedded PostgreSQL + the local Keap sandbox)
demo: install
	$(BIN)/python -m keap_pipeline.demo

# pytest-xdist workers: the cores, at most 4 (each worker on the embedded default starts its own server;
# the suite mostly waits on servers and subprocesses, so 2 workers on 2 cores take under half the time).
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))

## test: the whole suite on a real PostgreSQL (embedded unless KEAP_PIPELINE_TEST_DATABASE_URL is set)
test: install
	$(BIN)/pytest -n $(TEST_WORKERS)

## test-db: only the tests that touch PostgreSQL (CI runs these again on PostgreSQL 15)
test-db: install
	$(BIN)/pytest -n $(TEST_WORKERS) -m db

## ui: the Dagster UI on the same data as `make demo`
ui: install
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -m keap_pipeline.ui

## lint: ruff on the code, tests and benchmarks; mypy on the package
lint: install
	$(BIN)/ruff check keap_pipeline tests bench
	$(BIN)/mypy keap_pipeline

## bench: the benchmarks into docs/benchmarks.md (issue 16's by default; BENCH="pooling load_test" or `python -m bench --list`)
bench: install
	$(UV) sync --locked --group bench --python $(PYTHON)
	$(BIN)/python -m bench $(BENCH)

## fuzz: issue 9's property on a long random pass (hostile records through sandbox, sync, replay); FUZZ_ARGS="--examples 2000 --seed S"
fuzz: install
	$(BIN)/python -m bench.fuzz_records $(FUZZ_ARGS)

clean:
	-$(BIN)/keap-pipeline db down
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache
