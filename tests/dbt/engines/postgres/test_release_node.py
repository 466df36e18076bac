"""On a warehouse, a release carries its product's node as a file release does, and consumers stitch from it.

Reuses the unit's one warehouse build of the demo (tests/dbt/engines/postgres/conftest.py ``pg_mesh``): no build of its own.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.dbt.engines.postgres.warehouse import current
from tests.helpers import Built

pytestmark = pytest.mark.postgres


def test_a_warehouse_release_carries_its_node_and_its_consumers_stubs_are_made_from_it(pg_mesh: Built) -> None:
    assert pg_mesh.result.returncode == 0, pg_mesh.output[-4000:]
    root = pg_mesh.root
    checked = 0
    for marker in sorted(root.glob("projects/*/dbt_packages/*/.mesh-stub.json")):
        stub = json.loads(marker.read_text())
        if "upstream" not in stub:
            continue  # the runtime package, not a stub
        models = yaml.safe_load((marker.parent / "models/_public_models.yml").read_text())["models"]
        for key, release_id in stub["releases"].items():
            descriptor = current(root, key)
            if descriptor["release_id"] != release_id:
                continue  # pinned or read through another channel: not this check's concern
            assert descriptor["warehouse"] is not None and descriptor["files"] == []  # a release in the warehouse
            node = descriptor["interface"]["node"]
            assert node["unique_id"] == descriptor["node"] and node["access"] == "public"
            assert not {"raw_code", "compiled_code"} & set(node)  # its SQL stays with its producer
            project, model, *version = key.split(".")
            (entry,) = [m for m in models if m["name"] == model]
            if version:
                (entry,) = [v for v in entry["versions"] if f"v{v['v']}" == version[0]]
            stubbed = [(c["name"], c.get("data_type")) for c in entry["columns"]]
            assert stubbed == [(c["name"], c["data_type"]) for c in descriptor["contract"]["columns"]]
            sql = (marker.parent / "models" / f"{model}{'_' + version[0] if version else ''}.sql").read_text()
            assert descriptor["warehouse"]["table"] in sql  # the view reads that very release's table
            checked += 1
    assert checked >= 2
