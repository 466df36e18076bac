"""The Dagster tests' shared build: the demo, materialized once in Dagster (tests/conftest.py unit "dagster")."""

from __future__ import annotations

import pytest

from tests.helpers import copy_demo, run_mesh

dg = pytest.importorskip("dagster")

from mesh_tools.dagster import mesh_definitions  # noqa: E402
from tests.dagster.support import HOSTILE, Materialized, instance_at, materialize  # noqa: E402


@pytest.fixture(scope="session")
def dagster_demo(tmp_path_factory: pytest.TempPathFactory) -> Materialized:
    """A fresh demo (its landing data, no manifest, no release) whose customers' description is hostile, loaded
    by the definitions (which stitch it) and materialized whole on a Dagster instance of its own: Dagster builds
    and publishes the mesh. Its own unit (tests/conftest.py): beside the demo's build, not after it."""
    base = tmp_path_factory.mktemp("dagster")
    root = copy_demo(base / "mesh")
    data = run_mesh("demo-data", cwd=root)
    assert data.returncode == 0, data.stdout + data.stderr
    # another team's description is data in every consumer's Dagster: HTML and a remote image, for the UI
    yml = root / "projects/customers/models/marts/_dim_customers.yml"
    yml.write_text(yml.read_text().replace("      The customer dimension:", f"      {HOSTILE} The customer dimension:"))
    assert not (root / "projects/sales/target/manifest.json").exists()
    defs = mesh_definitions(root)
    result = materialize(defs, instance_at(base / "home"))
    return Materialized(root, base / "home", {}, result)
