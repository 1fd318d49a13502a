# Two commands do everything on a machine with only python3 and make:
#   make demo   - a 5-node cluster that elects a leader and fails over, live
#   make test   - lint, type-check and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest sim bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/almost-raft demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

sim: $(STAMP)
	$(BIN)/python -m almost_raft.sim --seeds 10000

# Failover benchmarks (minutes each; BENCH_ARGS=--quick for a minute each). The last one
# needs PySyncObj, which almost-raft does not depend on: $(BIN)/pip install pysyncobj
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/figure16.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/failover.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/cluster_size.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/pysyncobj_compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .mypy_cache .pytest_cache .ruff_cache
