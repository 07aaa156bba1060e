# The two commands of the README: `make run` and `make test`. Both install what they need.
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
DBT_SOURCES := $(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f) dbt_project/dbt_project.yml

.PHONY: install run test dev validate clean

install: $(VENV)/.installed dbt_project/target/manifest.json

# Re-installs only when pyproject.toml changes, so repeated `make` calls are instant.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $@

# The dbt manifest is built here, not when the code location loads.
dbt_project/target/manifest.json: $(VENV)/.installed $(DBT_SOURCES)
	cd dbt_project && RECSYS_WAREHOUSE=$${RECSYS_WAREHOUSE:-/tmp/recsys-parse.duckdb} ../$(BIN)/dbt parse --quiet
	touch $@

run: install
	$(BIN)/recsys run

test: install
	$(BIN)/pytest

dev: install
	$(BIN)/dagster dev -w workspace.yaml

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

clean:
	rm -rf data dbt_project/target dagster_home/storage dagster_home/history dagster_home/schedules dagster_home/logs
