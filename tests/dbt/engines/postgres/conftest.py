"""The PostgreSQL unit's shared fixtures: one throwaway server and one warehouse build of the demo, for every
test file of the unit (tests/dbt/engines/postgres/), so each starts and builds once.

One throwaway cluster for the session (tests/pgserver.py), set up with the SQL `mesh grants
--bootstrap` prints. The mesh is built on DuckDB, then on `--target postgres`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pgserver
from tests.dbt.engines.postgres.warehouse import PASSWORDS
from tests.helpers import Built, copy_demo, run_mesh


@pytest.fixture(scope="session")
def pg() -> Iterator[pgserver.Server]:
    problem = pgserver.available()
    assert problem is None, f"the PostgreSQL tests need a server: {problem}"
    server = pgserver.start()
    try:
        yield server
    finally:
        server.stop()


def _policy_twists(root: Path) -> None:
    """Two policies the demo does not exercise: a restricted product, and a consumer of PII that may not
    read it in clear (finance declares customers, which names only marketing as a PII reader)."""
    report = root / "projects/sales/models/marts/_weekly_sales_report.yml"
    text = report.read_text()
    assert "      meta:\n" in text
    report.write_text(text.replace("      meta:\n", "      meta:\n        allowed_consumers: [marketing]\n", 1))
    deps = root / "projects/finance/dependencies.yml"
    deps.write_text(deps.read_text() + "  - name: customers\n")


@pytest.fixture(scope="session")
def pg_mesh(pg: pgserver.Server, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The demo, built on DuckDB and then on the warehouse (whose setup is what `mesh grants --bootstrap` says)."""
    root = copy_demo(tmp_path_factory.mktemp("pgmesh") / "mesh")
    _policy_twists(root)
    # no `dbt source freshness` before each domain's build: these tests judge access, not freshness
    (root / "mesh.yml").write_text((root / "mesh.yml").read_text() + "health:\n  source_freshness: false\n")
    data = run_mesh("demo-data", cwd=root)
    assert data.returncode == 0, data.stdout + data.stderr
    os.environ.update({"MESH_PG_HOST": "127.0.0.1", "MESH_PG_PORT": str(pg.port), "MESH_PG_DATABASE": "mesh"})
    bootstrap = run_mesh("grants", "--bootstrap", "--target", "postgres", cwd=root)  # needs no password
    assert bootstrap.returncode == 0, bootstrap.stderr
    pg.admin("create database mesh")
    pg.admin(bootstrap.stdout, dbname="mesh")
    for domain, password in PASSWORDS.items():
        pg.admin(f"alter role {domain} password '{password}'")
        os.environ[f"MESH_PG_PASSWORD_{domain.upper()}"] = password
    duck = run_mesh("build", cwd=root)
    assert duck.returncode == 0, duck.stdout + duck.stderr
    return Built(root, run_mesh("build", "--target", "postgres", cwd=root))
