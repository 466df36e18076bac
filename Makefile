# `make run` and `make test` bootstrap everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# No network but the package registries here: dbt must not try to send usage statistics.
export DBT_SEND_ANONYMOUS_USAGE_STATS := False

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mesh demo-data
	$(BIN)/mesh build

test: $(STAMP)
	$(BIN)/ruff check mesh_tools tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check mesh_tools tests benchmarks
	$(BIN)/ruff format --check mesh_tools tests benchmarks

clean:
	rm -rf projects/*/target projects/*/dbt_packages projects/*/logs projects/*/*.duckdb projects/*/landing
