# One-command entry points. Every target installs what it needs into .venv first, so a fresh
# clone needs only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= default
SEED ?= 42
PYTEST_ARGS ?=
UI_PORT ?= 3000

.PHONY: install demo ui test test-all test-spark bench lint lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/dbt parse --project-dir dbt --profiles-dir dbt --quiet >/dev/null
	touch $(STAMP)

install: $(STAMP)

## Generate the synthetic Salford world and run the whole pipeline on it: one line per stage,
## the Dagster and dbt logs in data/logs/ (VERBOSE=1 shows them live). The run is recorded in
## the Dagster instance data/dagster_home, which `make ui` serves.
demo: $(STAMP)
	$(BIN)/sicp demo --scenario $(SCENARIO) --seed $(SEED) $(if $(VERBOSE),--verbose)

## The Dagster UI (webserver and daemon) on http://127.0.0.1:$(UI_PORT), over the instance the
## demo writes ($DAGSTER_HOME, else dagster_home/ beside the warehouse: data/dagster_home).
## Sensors start switched off.
ui: $(STAMP)
	home="$$($(BIN)/python -m dagster_project.instance)" && \
	  DAGSTER_HOME="$$home" $(BIN)/dagster dev -m dagster_project.definitions \
	  -h 127.0.0.1 -p $(UI_PORT)

## The default test suite, after the lint and format checks (Monte Carlo studies at full size
## are marked slow). Test files run on two workers, one file per worker, so each end-to-end
## world is built once.
test: lint
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

## ruff's lint rules and its formatter (make test runs both first).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Re-pin the dependency lock from the current environment.
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf data/warehouse.duckdb data/results reports/output dbt/target dbt/logs
