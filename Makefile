# `make run` and `make test` bootstrap everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# No network but the package registries here: dbt must not try to send usage statistics.
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
# The tests start hundreds of interpreters (commands, dbt, benchmarks): each compiling mesh_tools from source
# again when the environment sets PYTHONDONTWRITEBYTECODE costs ~0.1 s of CPU; let them keep the bytecode.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-cluster lint clean chromium postgres-server bootstrap docs docs-serve docs-check screenshots tutorial

# Installs go through uv (PyPI), with pip as the fallback where uv cannot be installed: the same
# resolution (pyproject.toml pins what differed), a fresh clone's three environments in 40 s instead of 71 s.
# uv lives in the main environment and installs into the others with --python.
UV_STAMP := $(VENV)/.uv
$(UV_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv>=0.5" || echo "uv unavailable: installing with pip"
	touch $(UV_STAMP)
# $(call install,<venv>,<pip arguments>,<uv's own options>); the arguments hold commas, so they come in
# variables. The main environment's bytecode is compiled at install, as pip does (uv does not by default):
# without it the suite's parallel processes compile the same modules again and again (a fresh clone's
# suite: 556 s without, 503 s with, the same clone).
MAIN_SPEC := -e ".[dev,spark,postgres,s3,lineage,dagster]"
DC_SPEC := "datacontract-cli[duckdb,parquet]>=1.2.8,<1.3"
MYPY_SPEC := "mypy>=1.20,<3"
install = test -x $(1)/bin/python || $(PYTHON) -m venv $(1); \
	if test -x $(BIN)/uv; then $(BIN)/uv pip install --quiet $(3) --python $(1)/bin/python $(2); \
	else $(1)/bin/python -m pip install --quiet $(2); fi

# The spark, postgres, s3, lineage and dagster extras are installed too: the test suite builds the demo mesh on
# both engines, runs the exchange in an object store (an S3 API on loopback), emits OpenLineage events and
# materializes the mesh in Dagster.
$(STAMP): pyproject.toml $(UV_STAMP)
	$(call install,$(VENV),$(MAIN_SPEC),--compile-bytecode)
	touch $(STAMP) $(BASE_STAMP)

# The mesh alone (no extras): what `make docs` needs to write the reference pages from the code, so building the
# documentation does not install Spark, Dagster and the test tools (2 GB) into a user's environment.
BASE_STAMP := $(VENV)/.installed-base
$(BASE_STAMP): pyproject.toml $(UV_STAMP)
	$(call install,$(VENV),-e .,--compile-bytecode)
	touch $(BASE_STAMP)

# datacontract-cli (`mesh check --datacontract`) pins its own DuckDB (1.5), so it lives in an environment
# of its own; the mesh finds it through MESH_DATACONTRACT.
DC_VENV := .venv-datacontract
DC_STAMP := $(DC_VENV)/.installed
$(DC_STAMP): $(UV_STAMP)
	$(call install,$(DC_VENV),$(DC_SPEC))
	touch $(DC_STAMP)

# mypy 1.20+ needs a pathspec that dbt-core 1.11 refuses, so it lives in an environment of its own and
# reads the project's packages through --python-executable ([tool.mypy] in pyproject.toml).
MYPY_VENV := .venv-mypy
MYPY_STAMP := $(MYPY_VENV)/.installed
$(MYPY_STAMP): $(UV_STAMP)
	$(call install,$(MYPY_VENV),$(MYPY_SPEC))
	touch $(MYPY_STAMP)

# The tool's documentation site (mkdocs.yml, docs/) is built with MkDocs and Material for MkDocs, which pin a
# Markdown stack of their own: an environment of its own keeps them out of the mesh's dependencies.
# MkDocs 2.0 will not run Material's plugins: stay on 1.6.
DOCS_VENV := .venv-docs
DOCS_SPEC := "mkdocs>=1.6,<2" "mkdocs-material>=9.5,<10"
DOCS_STAMP := $(DOCS_VENV)/.installed
$(DOCS_STAMP): $(UV_STAMP)
	$(call install,$(DOCS_VENV),$(DOCS_SPEC))
	touch $(DOCS_STAMP)
# Material 9.7+ prints a banner about MkDocs 2.0 on every build.
export NO_MKDOCS_2_WARNING := 1

# The browser tests drive Debian's chromium through Playwright; no browser is ever downloaded.
CHROMIUM := $(shell command -v chromium || command -v chromium-browser)
chromium:
ifeq ($(CHROMIUM),)
	apt-get install -y --no-install-recommends chromium >/dev/null || \
	  (apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null)
endif

# The PostgreSQL tests start a throwaway server from the machine's PostgreSQL binaries (tests/pgserver.py).
PG_CTL := $(shell command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | tail -1)
postgres-server:
ifeq ($(PG_CTL),)
	apt-get install -y --no-install-recommends postgresql >/dev/null || \
	  (apt-get update >/dev/null && apt-get install -y --no-install-recommends postgresql >/dev/null)
endif

# The site: docs-site/index.html opens from disk; `make docs-serve` serves it with live reload.
# The reference pages (docs/reference/) are generated from the code first.
docs: $(BASE_STAMP) $(DOCS_STAMP)
	$(BIN)/python scripts/docs_reference.py
	$(DOCS_VENV)/bin/mkdocs build --strict
	@echo "docs: $(abspath docs-site)/index.html"

docs-serve: $(BASE_STAMP) $(DOCS_STAMP)
	$(BIN)/python scripts/docs_reference.py
	$(DOCS_VENV)/bin/mkdocs serve

# What `make test` checks of the site: the generated reference is what the code says, and the site builds with
# no broken link, anchor or image (--strict); it writes nowhere in the checkout.
docs-check: $(BASE_STAMP) $(DOCS_STAMP)
	$(BIN)/python scripts/docs_reference.py --check
	site=$$(mktemp -d) && $(DOCS_VENV)/bin/mkdocs build --strict --quiet --site-dir "$$site"; rc=$$?; rm -rf "$$site"; exit $$rc

# The pictures in docs/images/: the demo mesh built in a temporary folder (or MESH=path, a built mesh), its docs
# site, lineage, health report (healthy, and with a failing test planted in the copy), `mesh doctor` and
# `mesh build` output photographed by headless chromium (make chromium; no browser is downloaded).
screenshots: $(STAMP) chromium
	$(BIN)/python scripts/screenshots.py --out docs/images $(if $(MESH),--mesh $(MESH))

# Follow docs/tutorial.md in a temporary folder and write what each step prints into the page (tests/docs checks it).
tutorial: $(BASE_STAMP)
	$(BIN)/python scripts/tutorial.py

run: $(STAMP)
	$(BIN)/mesh demo-data
	$(BIN)/mesh build

# Tests run in parallel processes (pytest-xdist); tests/conftest.py keeps those that share a build together.
# One worker more than cores: a worker often waits (process starts, dbt's files, a JVM), and the
# spare one fills that time (2 cores: 610 s with 2 workers, 560 s with 3; a fourth changed nothing: 587 s
# against 592 s, the suite is CPU-bound).
# Their commands are forks of a warm server with dbt imported (tests/cli_server.py); the subprocess lane
# runs the cheap `subprocess_lane` tests with each command a new interpreter, so a start-up or shutdown
# bug (import-time state, a missing import the server's preload hid, an atexit handler, a thread left
# running) fails it; a command that never exits fails after MESH_TESTS_TIMEOUT s.
# ruff with lint-imports, mypy and the lane run beside the suite, in the time its workers wait (about 110 s of a
# core's time idles in a suite of 480 s): each writes to a log of its own, printed when the suite ends; any
# failure fails.
# The documentation lane beside them: the generated reference is current, then the `docs_lane` tests in one
# process: the tutorial followed as written (~30 s) and the site built --strict (tests/docs/test_site.py, so not
# twice as `make docs-check` alone would) and opened from disk in chromium.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
TEST_LOGS := .test-logs
# The tests' folders (and every temporary file of the processes they start: TMPDIR) live in memory where the
# machine has a tmpfs: DuckDB, SQLite and the exchange sync their writes to disk, and on a disk the workers wait
# for it (2 cores: the suite took 669 s on disk, 605 s on /dev/shm; it writes about 2.5 GB, removed at the end).
test: bootstrap
	@mkdir -p $(TEST_LOGS)
	@tmp=$$(test -d /dev/shm && test -w /dev/shm && mktemp -d /dev/shm/mesh-tests.XXXXXX 2>/dev/null || true); \
	if test -n "$$tmp"; then chmod 711 "$$tmp"; export TMPDIR="$$tmp"; trap 'rm -rf "$$TMPDIR"' EXIT; fi; \
	($(BIN)/ruff check mesh_tools tests benchmarks scripts && $(BIN)/lint-imports) >$(TEST_LOGS)/lint.log 2>&1 & lint=$$!; \
	$(MYPY_VENV)/bin/mypy --python-executable $(BIN)/python >$(TEST_LOGS)/mypy.log 2>&1 & mypy=$$!; \
	($(BIN)/python scripts/docs_reference.py --check && MESH_TESTS_REQUIRE_DOCS=1 $(BIN)/python -m pytest -q \
	  -p no:xdist -m docs_lane tests/docs) >$(TEST_LOGS)/docs.log 2>&1 & docs=$$!; \
	MESH_TESTS_SUBPROCESS=1 MESH_TESTS_TIMEOUT=120 $(BIN)/python -m pytest -q -p no:xdist -x -m subprocess_lane \
	  >$(TEST_LOGS)/subprocess-lane.log 2>&1 & lane=$$!; \
	MESH_DATACONTRACT=$(abspath $(DC_VENV))/bin/datacontract MESH_TESTS_REQUIRE_DATACONTRACT=1 \
	  $(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not subprocess_lane and not cluster and not docs_lane"; suite=$$?; \
	wait $$lint; linted=$$?; echo "== ruff and lint-imports (exit $$linted)"; tail -n 40 $(TEST_LOGS)/lint.log; \
	wait $$mypy; checked=$$?; echo "== mypy (exit $$checked)"; cat $(TEST_LOGS)/mypy.log; \
	wait $$lane; laned=$$?; echo "== subprocess lane (exit $$laned)"; tail -n 30 $(TEST_LOGS)/subprocess-lane.log; \
	wait $$docs; documented=$$?; echo "== documentation site (exit $$documented)"; tail -n 30 $(TEST_LOGS)/docs.log; \
	test $$suite -eq 0 && test $$linted -eq 0 && test $$checked -eq 0 && test $$laned -eq 0 && test $$documented -eq 0

# The tests on a local Spark cluster (master, 2 workers, the Thrift and Connect servers: tests/sparkcluster.py):
# the demo through Thrift and Connect, an executor killed mid-build, landing views on one metastore, the
# launcher. They cost 180 s of CPU (a third of `make test`'s time on 2 cores), so `make test` leaves them out and
# they run here; run them when changing the Spark engines, the launcher or the exchange's paths.
test-cluster: bootstrap
	$(BIN)/python -m pytest -q -n 2 -m cluster

# The environments install side by side (pip is CPU-bound; 2 cores: 71 s together against 97 s one
# after the other).
bootstrap:
	@$(MAKE) --no-print-directory -j4 $(STAMP) $(DC_STAMP) $(MYPY_STAMP) $(DOCS_STAMP) chromium postgres-server

lint: $(STAMP) $(MYPY_STAMP)
	$(BIN)/ruff check mesh_tools tests benchmarks scripts
	$(BIN)/lint-imports
	$(MYPY_VENV)/bin/mypy --python-executable $(BIN)/python
	$(BIN)/ruff format --check mesh_tools tests benchmarks scripts

clean:
	rm -rf .test-logs health site docs-site projects/*/target projects/*/metastore_db projects/*/spark-warehouse projects/*/derby.log projects/*/dbt_packages projects/*/logs projects/*/*.duckdb projects/*/landing
