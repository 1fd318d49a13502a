# Two commands do everything on a machine with only python3 and make:
#   make demo   - a 5-node cluster that elects a leader and fails over, live
#   make test   - lint, type-check, build the docs and run the test suite
#   make docs   - the documentation, into docs/_build/html
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs pytest sim bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/almost-raft demo

test: lint typecheck docs pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The reference is built from the docstrings; a broken reference or link fails the build.
docs: $(STAMP)
	$(BIN)/sphinx-build -q -W --keep-going -n -b html docs docs/_build/html

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
	rm -rf $(VENV) build dist docs/_build src/*.egg-info .mypy_cache .pytest_cache .ruff_cache
