"""What the Dagster tests share: an instance in a folder, a materialization of every asset, the demo's products."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mesh_tools.core.mesh import load_mesh
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import ProductKey
from mesh_tools.store.exchange import open_exchange

HOSTILE = "<img src=x onerror=alert(1)> ![beacon](http://127.0.0.1:9/beacon.png)"


def instance_at(home: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def materialize(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, raise_on_error=False)


def products_of(root: Path) -> dict[str, tuple[str, ...]]:
    """Every demo product (from the domains' manifests): product key -> the asset key Dagster should show."""
    mesh = load_mesh(root)
    out = {}
    for name, domain in mesh.domains.items():
        manifest = Manifest.load(domain.manifest_path, name)
        for node in manifest.products():
            key = (name, f"{node.name}_v{node.version}") if node.version is not None else (name, node.name)
            out[node.key] = key
    return out


class Materialized:
    def __init__(self, root: Path, home: Path, before: dict[str, str | None], result: dg.ExecuteInProcessResult):
        self.root, self.home, self.before, self.result = root, home, before, result


def current_releases(root: Path) -> dict[str, str | None]:
    exchange = open_exchange(load_mesh(root))
    return {p: exchange.current_id(*ProductKey.parse(p).as_tuple()) for p in products_of(root)}
