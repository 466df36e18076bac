"""Everything a rule may look at, loaded once: every domain's manifest, releases, configuration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.dbt.engines.sqlscan import Territory
from mesh_tools.governance.rule import Finding
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node, NodeId, package_of
from mesh_tools.store.exchange import Exchange, open_exchange


@dataclass(frozen=True)
class CrossRef:
    """A node of ``consumer`` that reads ``upstream_node`` of another project."""

    consumer: str
    node: Node  # the consumer's node
    project: str
    upstream_node: str  # unique_id, e.g. model.sales.fct_orders.v2


@dataclass
class CheckContext:
    mesh: Mesh
    manifests: dict[str, Manifest]  # domain -> its manifest
    baseline_contracts: dict[str, dict[str, Any]] = field(default_factory=dict)  # product -> contract
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule code -> options
    # what the warehouse grants beyond (or short of) the policy, per domain, when a check reads it
    warehouse_grants: dict[str, list[str]] = field(default_factory=dict)
    # (product, problem) per domain from `datacontract test` of its current releases, when a check ran it
    contract_tests: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _databases: dict[str, set[str]] = field(default_factory=dict, init=False, repr=False)  # see databases()

    @classmethod
    def load(
        cls, mesh: Mesh, domains: list[str] | None = None, read: dict[str, Manifest] | None = None
    ) -> CheckContext:
        """The context over ``domains`` (default: all); ``read``: manifests the caller has already read from
        those domains' manifest paths (health's collection), used instead of reading them again."""
        names = domains or list(mesh.domains)
        read = read or {}
        manifests = {
            name: read.get(name)
            or Manifest.load(
                mesh.domains[name].manifest_path,
                name,
                f"Parse or build the domain first: `mesh stitch {name}` or `mesh build {name}`.",
            )
            for name in names
        }
        return cls(mesh, manifests)

    # -- nodes
    def domain(self, name: str) -> Domain:
        return self.mesh.domains[name]

    def nodes(self, domain: str, resource_type: str = "model") -> Iterator[Node]:
        """The domain's own nodes of a type (upstream stubs and installed packages excluded)."""
        return self.manifests[domain].own(resource_type, domain)

    def public_models(self, domain: str) -> Iterator[Node]:
        return (n for n in self.nodes(domain) if n.is_public)

    def sources(self, domain: str) -> Iterator[Node]:
        return (s for s in self.manifests[domain].sources.values() if s.package == domain)

    def tests_on(self, unique_id: str) -> list[Node]:
        """The data tests on a node, from every loaded manifest."""
        return [t for manifest in self.manifests.values() for t in manifest.tests_of(unique_id, data_only=True)]

    def owner(self, domain: str, node: Node) -> dict[str, Any]:
        """The owner of the node's group (``{name, email}``), empty when it has none."""
        return self.manifests[domain].owner(node)

    def finding(self, domain: str, node: Node, message: str) -> Finding:
        """A finding on ``node`` of ``domain``, located at the node's file."""
        return Finding(domain, message, node=node.unique_id, file=self.relpath(domain, node))

    def relpath(self, domain: str, node: Node) -> str:
        return self.root_relative(self.domain(domain).path / node.file)

    # -- across projects
    @cached_property
    def cross_refs(self) -> list[CrossRef]:
        """Every read of another project's model by a domain's own nodes, from the consumers' manifests."""
        return [
            CrossRef(consumer, node, NodeId.parse(upstream).package, upstream)
            for consumer, manifest in self.manifests.items()
            for node, upstream in manifest.foreign_reads()
        ]

    def producer_node(self, unique_id: str) -> Node | None:
        """A node as its own project's manifest describes it (None when that project is not loaded); a stub's
        model id names the seed or snapshot it stands for."""
        project = package_of(unique_id)
        manifest = self.manifests.get(project) if project is not None else None
        return manifest.shared_node(unique_id) if manifest else None

    @cached_property
    def _consumers(self) -> dict[str, list[CrossRef]]:
        """The cross-project reads by the node read, each list in ``cross_refs`` order (one pass, not one per
        product: a rule asking for every product's consumers stays linear in the mesh)."""
        out: dict[str, list[CrossRef]] = {}
        for ref in self.cross_refs:
            out.setdefault(ref.upstream_node, []).append(ref)
        return out

    def consumers_of(self, unique_id: str) -> list[CrossRef]:
        return list(self._consumers.get(unique_id, ()))

    # -- storage: what each domain builds into, shared by every domain's view of the others
    def databases(self, domain: str) -> set[str]:
        """The databases the domain's loaded manifest builds into (its catalogs); empty when it is not loaded."""
        found = self._databases.get(domain)
        if found is None:
            manifest = self.manifests.get(domain)
            nodes = manifest.nodes.values() if manifest is not None else ()
            found = self._databases[domain] = {str(n.get("database")) for n in nodes if n.get("database")}
        return found

    @cached_property
    def _folders(self) -> dict[str, Path]:
        return {name: spec.path.resolve() for name, spec in self.mesh.domains.items()}

    def territory(self, domain: str) -> Territory:
        """What belongs to the other domains and the exchange as ``domain`` sees it: ``Territory.of`` with the
        loaded manifests, from folders resolved and databases read once per check rather than once per domain."""
        folders = {o: path for o, path in self._folders.items() if o != domain}
        own = {name.lower() for name in self.databases(domain)}
        catalogs: dict[str, str] = {}
        for other in folders:
            for name in {other} | self.databases(other):
                if name and name.lower() not in own and name.lower() != domain.lower():
                    catalogs[name.lower()] = other
        return Territory(self._folders[domain], self._exchange_path, folders, catalogs)

    @cached_property
    def _exchange_path(self) -> Path:
        return self.mesh.exchange_path.resolve()

    @cached_property
    def exchange(self) -> Exchange:
        return open_exchange(self.mesh)

    def option(self, code: str, key: str, default: Any) -> Any:
        return self.options.get(code, {}).get(key, default)

    def root_relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.mesh.root))
        except ValueError:
            return str(path)
