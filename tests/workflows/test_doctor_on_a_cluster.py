"""`mesh doctor` on a cluster target, without a cluster: the cluster and its server, each domain's schemas and landing
views, and what would make one domain write into another's (read from the domains' manifests)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from mesh_tools.cli.render import doctor_document, doctor_lines
from mesh_tools.core.mesh import load_mesh
from mesh_tools.workflows.doctor import diagnose
from tests.helpers import copy_demo


def _write_manifest(project_dir: Path, custom: dict[str, str], landing: list[str]) -> None:
    """A parsed project's manifest, as much of it as doctor reads: models' custom schemas, landing sources."""
    project = project_dir.name
    nodes = {f"model.{project}.{name}": {"resource_type": "model", "package_name": project, "name": name,
                                         "config": {"schema": schema}} for name, schema in custom.items()}  # fmt: skip
    sources = {}
    for relation in landing:
        schema, table = relation.split(".")
        sources[f"source.{project}.{schema}.{table}"] = {
            "resource_type": "source", "package_name": project, "name": table, "source_name": schema,
            "schema": schema, "identifier": table, "source_meta": {},
            "meta": {"external_location": "read_parquet('landing/{name}.parquet')"},
        }  # fmt: skip
    (project_dir / "target").mkdir(exist_ok=True)
    metadata = {"project_name": project, "adapter_type": "spark", "invocation_id": "0"}
    data = {"metadata": metadata, "nodes": nodes, "sources": sources}
    (project_dir / "target/manifest.json").write_text(json.dumps(data))


def test_doctor_shows_the_cluster_its_server_each_domains_schemas_and_a_landing_view_two_domains_register(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_demo(tmp_path / "mesh")
    _write_manifest(root / "projects/sales", {"stg_orders": "staging", "fct_orders": "marts"}, ["shop.orders"])
    # customers lands a file of its own under the same name: on one metastore the later build would replace it
    _write_manifest(root / "projects/customers", {"dim_customers": "marts"}, ["crm.customers", "shop.orders"])
    with socket.socket() as probe:  # a port nothing listens on: the server does not answer
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MESH_SPARK_THRIFT_PORT", str(port))
    monkeypatch.delenv("MESH_SPARK_THRIFT_HOST", raising=False)
    found = diagnose(load_mesh(root), "spark_thrift")
    text = "\n".join(doctor_lines(found))
    server = f"thrift://127.0.0.1:{port}"
    assert (
        f"      profile sales, target spark_thrift (spark); storage {server}, schema sales\n"
        f"      on Spark cluster, Thrift server {server} (one metastore for every domain)\n"
        "      schemas sales, sales_marts, sales_staging; landing views shop.orders\n"
    ) in text, text
    # finance was never parsed: its target schema and its stubs of the domains it reads
    finance = next(p for p in found.projects if p.name == "finance")
    assert finance.schemas[0] == "finance" and all(s.startswith("finance_upstream_") for s in finance.schemas[1:])
    assert finance.landing == ()
    blocking = [(p.where, p.message) for p in found.blocking]
    # named once, against the domain later in the mesh's order (whose build would stop), naming the other
    (landed,) = [p for p in found.blocking if "registers the landing view shop.orders" in p.message]
    later, earlier = (landed.where, ({"sales", "customers"} - {landed.where}).pop())
    assert landed.message == f"{later} registers the landing view shop.orders on {server}, as {earlier} does"
    assert f"`schema: {later}_shop` on the source" in landed.fix
    (gone,) = [m for w, m in blocking if w == "cluster"]
    assert f"the Spark Thrift server {server} does not answer" in gone
    assert not [m for w, m in blocking if "builds into schema" in m]  # every other schema is its domain's own
    document = json.loads(json.dumps(doctor_document(found)))  # as `mesh doctor --format json` writes it
    sales = next(p for p in document["projects"] if p["name"] == "sales")
    assert sales["schemas"] == ["sales", "sales_marts", "sales_staging"] and sales["landing"] == ["shop.orders"]
    # on DuckDB, a file per domain: no server, no shared schemas shown
    local = diagnose(load_mesh(root), "dev")
    assert all(p.server == "" and p.schemas == () for p in local.projects)
    assert "      on Spark cluster" not in "\n".join(doctor_lines(local))
