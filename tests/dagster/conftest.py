"""The Dagster tests' shared build: the demo, materialized once in Dagster (tests/conftest.py unit "demo")."""

from __future__ import annotations

import pytest

from tests.helpers import Built, copy_tree

dg = pytest.importorskip("dagster")

from mesh_tools.dagster import mesh_definitions  # noqa: E402
from tests.dagster.support import HOSTILE, Materialized, current_releases, instance_at, materialize  # noqa: E402


@pytest.fixture(scope="session")
def dagster_demo(demo_built: Built, tmp_path_factory: pytest.TempPathFactory) -> Materialized:
    """A copy of the built demo whose customers changed one model and whose description is hostile, then every
    asset materialized on a Dagster instance of its own: customers and its reader (marketing) rebuild and publish,
    sales and finance are reused (state-aware). In the demo's unit (tests/conftest.py): it starts from its build."""
    assert demo_built.result.returncode == 0, demo_built.output
    base = tmp_path_factory.mktemp("dagster")
    root = copy_tree(demo_built.root, base / "mesh")
    before = current_releases(root)
    model = root / "projects/customers/models/marts/dim_customers.sql"
    model.write_text(model.read_text() + "\n-- changed for the Dagster test\n")
    # another team's description is data in every consumer's Dagster: HTML and a remote image, for the UI
    yml = root / "projects/customers/models/marts/_dim_customers.yml"
    yml.write_text(yml.read_text().replace("      The customer dimension:", f"      {HOSTILE} The customer dimension:"))
    defs = mesh_definitions(root)  # customers' manifest is stale: the definitions parse it outside the domain
    result = materialize(defs, instance_at(base / "home"))
    return Materialized(root, base / "home", before, result)
