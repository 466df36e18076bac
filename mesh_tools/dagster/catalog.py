"""What Dagster is shown of a mesh, read from the mesh model alone (no Dagster here): one asset per data product
version, each domain's builds as one step, the products' cross-domain reads as dependencies, their data tests as
checks and their freshness SLOs.

Every text comes from a domain's manifest, which that domain's team wrote: it is data, and stays data. Names
become asset keys as they are (Dagster keeps any string), op and check names are reduced to what Dagster accepts
(``safe_name``), descriptions and metadata are bounded (``bounded``), and none of it is ever rendered as a template.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node, NodeId, ProductKey
from mesh_tools.workflows.stages import own_built, product_of

TEXT_LIMIT = 4000  # characters of a description shown in Dagster (the docs site has the whole text)
NAME_LIMIT = 60  # characters of an op or check name
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")

Key = tuple[str, ...]


def bounded(text: Any, limit: int = TEXT_LIMIT) -> str:
    """A text another team wrote, cut to ``limit`` characters (said so when cut), control characters dropped."""
    value = "".join(ch for ch in str(text or "") if ch in "\n\t" or ch.isprintable())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def markdown_text(text: Any, limit: int = TEXT_LIMIT) -> str:
    """A description another team wrote, for Dagster's UI, which renders descriptions as Markdown: bounded, its
    HTML shown as text (``&lt;``), a link or an image shown as its text (``\\[``: nothing to click, no request
    to where it points)."""
    value = bounded(text, limit)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("[", "\\[")


def safe_name(text: str) -> str:
    """A name Dagster accepts for an op or a check (``^[A-Za-z0-9_]+$``): ``text`` when it is one, else its
    letters, digits and underscores with a short digest of the whole, so two names never meet."""
    if not _UNSAFE.search(text) and text and len(text) <= NAME_LIMIT:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{_UNSAFE.sub('_', text)[: NAME_LIMIT - 9]}_{digest}"


def product_asset_key(domain: str, model: str, version: str | None) -> Key:
    """``sales/fct_orders_v2`` (``customers/dim_customers`` unversioned): the domain, then the product's name as
    dbt names its relation. Not ``sales/fct_orders/v2``: Dagster's graph labels an asset by the last part of its
    key alone, and a graph of nodes called ``v1`` and ``v2`` says nothing."""
    return (domain, f"{model}_v{version}") if version is not None else (domain, model)


def domain_asset_key(domain: str, taken: Iterable[Key]) -> Key:
    """The asset that stands for a domain with no data product (a pure consumer): ``<domain>/<domain>_build``, or
    with a suffix when a model of that name is already an asset."""
    name = f"{domain}_build"
    existing = set(taken)
    while (domain, name) in existing:
        name += "_"
    return (domain, name)


@dataclass(frozen=True)
class Check:
    """One data test of an asset's model, as a Dagster asset check."""

    name: str  # safe_name of the test's name
    unique_id: str
    description: str
    blocking: bool  # severity error: a failure keeps the product from being published (the publish gate)


@dataclass
class Asset:
    """One asset: a data product version, a private model (with ``models=True``), or a product-less domain."""

    key: Key
    domain: str
    kind: str  # "product", "model" or "domain"
    unique_id: str | None = None
    product: str | None = None  # the product key as the exchange writes it (sales.fct_orders.v2)
    description: str = ""
    owners: list[str] = field(default_factory=list)
    deps: list[Key] = field(default_factory=list)
    columns: list[dict[str, Any]] = field(default_factory=list)
    contract: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    slo_hours: float | None = None
    relation: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class DomainAssets:
    """A domain's assets, all built by one step (its state-aware `mesh build` and publish)."""

    name: str
    op_name: str
    assets: list[Asset] = field(default_factory=list)
    engine: str | None = None
    problem: str | None = None  # why its products are not known (no manifest yet): it is shown as one asset

    @property
    def keys(self) -> list[Key]:
        return [a.key for a in self.assets]


@dataclass
class Catalog:
    """The whole mesh as assets, in dependency order of its domains."""

    root: str
    mesh_name: str
    domains: list[DomainAssets] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def by_product(self) -> dict[str, Asset]:
        return {a.product: a for d in self.domains for a in d.assets if a.product is not None}

    def domain(self, name: str) -> DomainAssets:
        return next(d for d in self.domains if d.name == name)


def dagster_owners(domain: Domain, manifest_owner: dict[str, Any] | None) -> list[str]:
    """Who answers for an asset, best first: the product's group owner, then the domain's (mesh.yml), each as an
    e-mail address and as ``team:<name>``. Dagster accepts only some addresses (definitions.py keeps the first it
    accepts): one team's unusual address must never keep the whole mesh from loading."""
    owners: list[str] = []
    candidates: list[tuple[Any, Any]] = []
    if manifest_owner:
        candidates.append((manifest_owner.get("name"), manifest_owner.get("email")))
    if domain.owner is not None:
        candidates.append((domain.owner.name, domain.owner.email))
    for name, email in candidates:
        if isinstance(email, str) and email.strip():
            owners.append(bounded(email.strip(), 200))
        if isinstance(name, str) and name.strip():
            owners.append("team:" + re.sub(r"\s+", "_", bounded(name.strip(), 80)))
    return list(dict.fromkeys(owners))


def _columns(node: Node) -> list[dict[str, Any]]:
    out = []
    for name, column in node.columns.items():
        kinds = {str(c.get("type")) for c in column.constraints}
        out.append(
            {
                "name": bounded(name, 200),
                "type": bounded(column.data_type or "", 200),
                "description": markdown_text(column.description, 1000),
                "not_null": "not_null" in kinds or "primary_key" in kinds,
                "unique": "unique" in kinds or "primary_key" in kinds,
                "pii": column.is_pii,
            }
        )
    return out


RESERVED_CHECKS = frozenset({"freshness_check"})  # the names Dagster's own checks take on an asset


def _check_name(test: Node) -> str:
    """The test's name as a check's: safe for Dagster, never one of Dagster's own checks' names."""
    name = safe_name(test.name)
    if name in RESERVED_CHECKS:
        digest = hashlib.sha256(test.unique_id.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        name = f"{name}_{digest}"
    return name


def _checks(manifest: Manifest, node: Node) -> list[Check]:
    checks = []
    for test in sorted(manifest.tests_of(node.unique_id, data_only=True), key=lambda t: t.unique_id):
        severity = str(test.config.get("severity") or "error").lower()
        checks.append(
            Check(
                name=_check_name(test),
                unique_id=test.unique_id,
                description=markdown_text(test.description or f"dbt data test {test.name}", 1000),
                blocking=severity == "error",
            )
        )
    return checks


def _parents(manifest: Manifest) -> dict[str, list[str]]:
    return {n.unique_id: list(n.depends_on) for n in manifest.nodes.values()}


def _reads(
    manifest: Manifest, node: Node, manifests: dict[str, Manifest], parents: dict[str, list[str]]
) -> tuple[set[str], set[str]]:
    """What ``node`` reads, walking its own domain's models: (own models and products it reads directly or
    through private models, upstream product keys it reads)."""
    own: set[str] = set()
    upstream: set[str] = set()
    seen: set[str] = set()
    todo = list(parents.get(node.unique_id, []))
    while todo:
        uid = todo.pop()
        if uid in seen:
            continue
        seen.add(uid)
        read = NodeId.read(uid)
        if read is not None and read.package != manifest.project and read.is_shareable:
            producer = manifests.get(read.package)
            found = product_of(producer, uid) if producer is not None else None
            upstream.add(found.key if found is not None else str(read.product))
            continue
        if uid in manifest.nodes and manifest.nodes[uid].package == manifest.project:
            own.add(uid)
            if not manifest.nodes[uid].is_public:  # a private model: look through it
                todo.extend(parents.get(uid, []))
    return own, upstream


def build_catalog(
    mesh: Mesh, manifests: dict[str, Manifest], *, models: bool = False, problems: dict[str, str] | None = None
) -> Catalog:
    """The mesh as assets. ``manifests``: each domain's (a domain without one is shown as one asset whose
    dependencies are its upstream domains' assets, described by its entry in ``problems`` when there is one);
    ``models``: also each domain's private models."""
    catalog = Catalog(root=str(mesh.root), mesh_name=mesh.name)
    product_keys: dict[str, Key] = {}
    for name in mesh.order:
        manifest = manifests.get(name)
        if manifest is None:
            continue
        for node in manifest.products():
            product_keys[node.key] = product_asset_key(name, node.name, node.version)
    for name in mesh.order:
        domain = mesh.domains[name]
        entry = DomainAssets(name=name, op_name=safe_name(f"mesh_build_{name}"))
        manifest = manifests.get(name)
        if manifest is None:
            entry.problem = (problems or {}).get(name) or (
                f"{name} has no manifest yet: `mesh stitch {name}` parses it (its products then show)")  # fmt: skip
        else:
            entry.engine = manifest.adapter
            _domain_assets(entry, domain, manifest, manifests, product_keys, models)
        if not entry.assets:
            upstream = [a.key for up in domain.upstream_names for d in catalog.domains if d.name == up
                        for a in d.assets if a.kind != "model"]  # fmt: skip
            entry.assets.append(
                Asset(
                    key=domain_asset_key(name, product_keys.values()),
                    domain=name,
                    kind="domain",
                    description=markdown_text(
                        entry.problem
                        or domain.description
                        or f"The {name} domain's build (it publishes no data product)"
                    ),  # fmt: skip
                    owners=dagster_owners(domain, None),
                    deps=upstream,
                )
            )
        catalog.domains.append(entry)
    return catalog


def _domain_assets(
    entry: DomainAssets, domain: Domain, manifest: Manifest, manifests: dict[str, Manifest],
    product_keys: dict[str, Key], models: bool,
) -> None:  # fmt: skip
    name = entry.name
    nodes = sorted(own_built(manifest), key=lambda n: n.unique_id)
    keys: dict[str, Key] = {}
    for node in nodes:
        if node.is_public:
            keys[node.unique_id] = product_keys[node.key]
        elif models:
            keys[node.unique_id] = product_asset_key(name, node.name, node.version)
    parents = _parents(manifest)
    for node in nodes:
        if node.unique_id not in keys:
            continue
        own, upstream = _reads(manifest, node, manifests, parents)
        deps = [keys[u] for u in sorted(own) if u in keys]
        deps += [product_keys.get(p) or _foreign_key(p) for p in sorted(upstream)]
        public = node.is_public
        entry.assets.append(
            Asset(
                key=keys[node.unique_id],
                domain=name,
                kind="product" if public else "model",
                unique_id=node.unique_id,
                product=node.key if public else None,
                description=markdown_text(node.description),
                owners=dagster_owners(domain, manifest.owner(node)),
                deps=list(dict.fromkeys(deps)),
                columns=_columns(node),
                contract={
                    "enforced": node.contract_enforced,
                    "access": node.access,
                    **({"version": node.version} if node.version is not None else {}),
                    **({"deprecation_date": node.deprecation_date} if node.deprecation_date else {}),
                },  # fmt: skip
                checks=_checks(manifest, node),
                slo_hours=node.slo_hours if public else None,
                relation=bounded(node.relation, 500),
                tags={"mesh/domain": safe_name(name), "mesh/access": safe_name(node.access or "protected")},
            )
        )


def _foreign_key(product: str) -> Key:
    """The asset key of a product of a domain outside the mesh (or whose manifest is missing)."""
    key = ProductKey.parse(product)
    return product_asset_key(key.domain, key.model, key.version)
