"""Everything a rule may look at, loaded once: every domain's manifest, releases, configuration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mesh_tools.artifacts import read_json
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.governance.rule import Finding
from mesh_tools.store.exchange import Exchange


@dataclass(frozen=True)
class CrossRef:
    """A node of ``consumer`` that reads ``upstream_node`` of another project."""

    consumer: str
    node: dict[str, Any]  # the consumer's node
    project: str
    upstream_node: str  # unique_id, e.g. model.sales.fct_orders.v2


@dataclass
class CheckContext:
    mesh: Mesh
    manifests: dict[str, dict[str, Any]]
    baseline_contracts: dict[str, dict[str, Any]] = field(default_factory=dict)  # product -> contract
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule code -> options

    @classmethod
    def load(cls, mesh: Mesh, domains: list[str] | None = None) -> CheckContext:
        names = domains or list(mesh.domains)
        manifests = {
            name: read_json(
                mesh.domains[name].manifest_path,
                "manifest",
                f"Parse or build the domain first: `mesh stitch {name}` or `mesh build {name}`.",
            )
            for name in names
        }
        return cls(mesh, manifests)

    # -- nodes
    def domain(self, name: str) -> Domain:
        return self.mesh.domains[name]

    def nodes(self, domain: str, resource_type: str = "model") -> Iterator[dict[str, Any]]:
        """The domain's own nodes of a type (upstream stubs excluded)."""
        for node in self.manifests[domain].get("nodes", {}).values():
            if node.get("resource_type") == resource_type and node.get("package_name") == domain:
                yield node

    def public_models(self, domain: str) -> Iterator[dict[str, Any]]:
        return (n for n in self.nodes(domain) if n.get("access") == "public")

    def sources(self, domain: str) -> Iterator[dict[str, Any]]:
        for source in self.manifests[domain].get("sources", {}).values():
            if source.get("package_name") == domain:
                yield source

    @cached_property
    def _tests_by_parent(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for manifest in self.manifests.values():
            for node in manifest.get("nodes", {}).values():
                if node.get("resource_type") == "test":
                    for parent in node.get("depends_on", {}).get("nodes", []):
                        out.setdefault(parent, []).append(node)
        return out

    def tests_on(self, unique_id: str) -> list[dict[str, Any]]:
        return self._tests_by_parent.get(unique_id, [])

    def owner(self, domain: str, node: dict[str, Any]) -> dict[str, Any]:
        group = node.get("group")
        for g in self.manifests[domain].get("groups", {}).values():
            if g.get("name") == group and g.get("package_name") == domain:
                return g.get("owner") or {}
        return {}

    def finding(self, domain: str, node: dict[str, Any], message: str) -> Finding:
        """A finding on ``node`` of ``domain``, located at the node's file."""
        return Finding(domain, message, node=node["unique_id"], file=self.relpath(domain, node))

    def relpath(self, domain: str, node: dict[str, Any]) -> str:
        path = self.domain(domain).path / node.get("original_file_path", "")
        try:
            return str(path.relative_to(self.mesh.root))
        except ValueError:
            return str(path)

    # -- across projects
    @cached_property
    def cross_refs(self) -> list[CrossRef]:
        """Every read of another project's node by a domain's own nodes, from the consumers' manifests."""
        refs = []
        for consumer, manifest in self.manifests.items():
            for node in list(manifest.get("nodes", {}).values()) + list(manifest.get("unit_tests", {}).values()):
                if node.get("package_name") != consumer:
                    continue
                for parent in node.get("depends_on", {}).get("nodes", []):
                    parts = parent.split(".")
                    if parts[0] == "model" and len(parts) >= 3 and parts[1] != consumer:
                        refs.append(CrossRef(consumer, node, parts[1], parent))
        return refs

    def producer_node(self, unique_id: str) -> dict[str, Any] | None:
        """A node as its own project's manifest describes it (None when that project is not loaded)."""
        project = unique_id.split(".")[1]
        manifest = self.manifests.get(project)
        return manifest.get("nodes", {}).get(unique_id) if manifest else None

    def consumers_of(self, unique_id: str) -> list[CrossRef]:
        return [ref for ref in self.cross_refs if ref.upstream_node == unique_id]

    @cached_property
    def exchange(self) -> Exchange:
        return Exchange(self.mesh.exchange_path)

    def option(self, code: str, key: str, default: Any) -> Any:
        return self.options.get(code, {}).get(key, default)

    def root_relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.mesh.root))
        except ValueError:
            return str(path)
