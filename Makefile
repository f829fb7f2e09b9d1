# One-command entry points. Every target installs what it needs into .venv first, so a fresh
# clone needs only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= default
SEED ?= 42
PYTEST_ARGS ?=

.PHONY: install demo test test-all test-spark bench lint lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/dbt parse --project-dir dbt --profiles-dir dbt --quiet >/dev/null
	touch $(STAMP)

install: $(STAMP)

## Generate the synthetic Salford world and run the whole pipeline on it.
demo: $(STAMP)
	$(BIN)/sicp demo --scenario $(SCENARIO) --seed $(SEED)

## The default test suite (Monte Carlo studies at full size are marked slow). Test files run
## on two workers, one file per worker, so each end-to-end world is built once.
test: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

## Everything, including the slow Monte Carlo studies.
test-all: $(STAMP)
	$(BIN)/pytest -q -m "slow or not slow" $(PYTEST_ARGS)

## Stage-by-stage timings and memory on the default, mid and gm worlds (docs/benchmark.md).
bench: $(STAMP)
	$(BIN)/pip install --quiet csdid==0.4.3 differences==0.3.0
	$(BIN)/python -m bench.run --scenarios default mid gm

## The dbt project on Apache Spark (session mode, local pyspark), marts compared with DuckDB's.
test-spark: $(STAMP)
	$(BIN)/python -c "import pyspark, dbt.adapters.spark" 2>/dev/null || \
	  $(BIN)/pip install --quiet "dbt-spark[session]==1.11.0" "pyspark==4.3.0"
	$(BIN)/pytest -q -m spark tests/test_spark.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

## Re-pin the dependency lock from the current environment.
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf data/warehouse.duckdb data/results reports/output dbt/target dbt/logs
