"""Stitch one domain: check its cross-project refs, then install a stub per declared upstream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError, MeshError, display_path
from mesh_tools.core.mesh import Domain, Mesh, Upstream
from mesh_tools.dbt.packages import install_stub, remove_stale_stubs
from mesh_tools.dbt.runtime import install_runtime
from mesh_tools.model.datatypes import contract_problems
from mesh_tools.model.interface import PublishedInterface
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node, NodeId, ProductKey, product_key, resource_type_of
from mesh_tools.model.release import Contract, without_code
from mesh_tools.stitch.refs import CrossProjectRef, check_ref, scan_refs
from mesh_tools.stitch.revoke import (
    Ledger,
    claim,
    drop_retired,
    product_relations,
    record,
    remove_revoked_stubs,
    retire,
)
from mesh_tools.stitch.stub import (
    contract_refusals,
    read_parquet_sql,
    relation_sql,
    stub_files,
    unpublished_sql,
    warehouse_sql,
)
from mesh_tools.store.exchange import Exchange, Release, channels_for, interface_channels, open_exchange, pin_for
from mesh_tools.store.receipts import write_lease


@dataclass(frozen=True)
class StitchOutcome:
    """What stitching one domain did, or why it refused."""

    domain: str
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    consumed: dict[str, str] = field(default_factory=dict)  # product key -> release id read
    warnings: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()  # stub views dropped from the domain's own storage (revocation)
    notes: tuple[str, ...] = ()  # products read from a producer's working copy (no release yet), drafts ahead

    @property
    def ok(self) -> bool:
        return not self.problems


class NothingToRead(ArtifactError):
    """An upstream of the checkout that was never built here and has no release in the exchange."""


class ReleaseManifest(Manifest):
    """An upstream as a consumer reads it: each public node from the release the consumer reads of it (its pin,
    else the first of its channels with a current release), never from the producer's working copy; only a product
    with no release yet in those channels is taken from the producer's working manifest, and ``notes`` says so."""

    def __init__(
        self, data: dict[str, Any], path: Path, project: str, releases: dict[str, Release],
        working: Manifest | None, notes: list[str], hidden: frozenset[str] = frozenset(),
    ) -> None:  # fmt: skip
        super().__init__(data, path, project, hidden)
        self.releases = releases  # unique_id -> the release its node and its stub view come from
        self.working = working  # the producer's working manifest in this checkout, when it has one
        self.notes = notes  # products read from the working copy, and where the working copy is ahead


# Producers' working manifests already read, by (path, dbt-loom's package filters): a caller that judges many
# consumers in one pass (`mesh doctor`) reads each producer's manifest once, not once per consumer.
WorkingCopies = dict[tuple[Path, tuple[str, ...], tuple[str, ...]], "Manifest | None"]


def upstream_manifests(
    mesh: Mesh, domain: Domain, only: set[str] | None = None, exchange: Exchange | None = None,
    working: WorkingCopies | None = None,
) -> dict[str, Manifest]:  # fmt: skip
    """What the domain reads of every upstream it declares (ArtifactError when one is unusable): a domain of the
    mesh, or one known only by the exchange, as a ``ReleaseManifest``; an upstream outside the mesh known by a
    dbt-loom manifest file, as that manifest. ``working``: producers' working manifests read in this pass."""
    manifests: dict[str, Manifest] = {}
    for up in domain.upstreams:
        if only is not None and up.name not in only:
            continue
        if up.name in mesh.domains or up.remote:
            exchange = exchange or open_exchange(mesh)
            manifests[up.name] = release_manifest(mesh, domain, up, exchange, working)
            continue
        assert up.manifest_path is not None
        fix = f"Fix the manifest path declared at {up.declared_in}."
        manifests[up.name] = Manifest.load(
            up.manifest_path, up.name, fix, excluded=up.excluded_packages, included=up.included_packages
        )
    return manifests


def release_manifest(
    mesh: Mesh, domain: Domain, up: Upstream, exchange: Exchange, working_copies: WorkingCopies | None = None
) -> ReleaseManifest:
    """The products of ``up`` that ``domain`` reads, each with the node published with its release.

    Which products: those the producer's last publish offered in the channel read (its interface; a product
    left out of it was withdrawn), and the public models of its working copy in this checkout (a new product).
    Without a published interface (an exchange from before interfaces were kept in a folder), the working copy's
    public models, else every product the exchange holds. Each is read from its release when it has one; only a
    product with no release is taken from the working copy (with a note), or from the interface (a stub view
    that says it was never published). A release published before nodes were stored with releases takes its node
    from the interface or the working copy, else from its own descriptor (columns and contract).
    """
    project = up.name
    working = _working_copy(mesh, up, working_copies)
    interface = _published_interface(exchange, domain, up)
    if interface is None and working is None and project not in mesh.domains:
        raise _never_published(exchange, domain, project)
    read = _UpstreamRead(domain, project, interface, working)
    for (model, version), seen in _offered(project, interface, working, exchange):
        read.read_product(exchange, model, version, seen)
    if not read.nodes and working is None:  # an upstream of the checkout never built here nor published
        raise _nothing_to_read(mesh, exchange, domain, project)
    read.add_private_nodes()
    _latest_from_newest(read.nodes, read.releases)
    return ReleaseManifest(
        read.manifest_data(), exchange.root / "products" / project, project, read.releases, working, read.notes,
        read.hidden(up),
    )  # fmt: skip


def _working_copy(mesh: Mesh, up: Upstream, read: WorkingCopies | None = None) -> Manifest | None:
    """The producer's working manifest in this checkout (None: not a domain here, or not parsed yet); ``read``:
    the ones already read in this pass (a manifest is only read from, never changed, by its consumers)."""
    if up.name not in mesh.domains:
        return None
    path = mesh.domains[up.name].manifest_path
    key = (path, up.excluded_packages, up.included_packages)
    if read is not None and key in read:
        return read[key]
    fix = f"Build (or rebuild) the upstream: `mesh build {up.name}`, or `mesh stitch` to parse it only."
    manifest = Manifest.read(
        path, up.name, fix, missing_ok=True, excluded=up.excluded_packages, included=up.included_packages
    )
    if read is not None:
        read[key] = manifest
    return manifest


def _published_interface(exchange: Exchange, domain: Domain, up: Upstream) -> Manifest | None:
    """The interface the producer last published in the first channel ``domain`` reads that has one, or None."""
    project = up.name
    interface_path = exchange.fetch_interface(project, interface_channels(domain, project, exchange.env))
    if interface_path is None:
        return None
    fix = f"The interface {project} published in the exchange is unusable: publish {project} again."
    published = PublishedInterface.read(interface_path, project, fix)
    return Manifest.filtered(
        published.as_json(), interface_path, project, fix, excluded=up.excluded_packages,
        included=up.included_packages,
    )  # fmt: skip


def _offered(
    project: str, interface: Manifest | None, working: Manifest | None, exchange: Exchange
) -> list[tuple[tuple[str, str | None], Node]]:
    """The products an upstream offers, by model and version: the public models of its interface (first) and of
    its working copy, else (neither exists) every product the exchange holds of it, with a placeholder node."""
    offered: dict[tuple[str, str | None], Node] = {}
    for source in (interface, working):
        for node in source.public() if source is not None else []:
            offered.setdefault((node.name, node.version), node)
    if interface is None and working is None:
        offered = {product: Node(str(NodeId.model(project, "?")), {}) for product in exchange.products_of(project)}
    return sorted(offered.items(), key=lambda item: (item[0][0], item[0][1] or ""))


def _nothing_to_read(mesh: Mesh, exchange: Exchange, domain: Domain, project: str) -> NothingToRead:
    """The error for an upstream of the checkout that was never built here and has no release in the exchange."""
    path = mesh.domains[project].manifest_path
    return NothingToRead(
        f"{display_path(path)}: manifest not found. {project} has no release in the exchange ({exchange.url}) "
        f"either, so {domain.name} has nothing to read. Build (or rebuild) the upstream: `mesh build {project}` "
        f"(or `mesh build +{domain.name}`), or `mesh stitch` to parse it only."
    )


def _trusted_node(raw: dict[str, Any], release: Release, project: str) -> Node:
    """The node published with a release, checked to be that release's own (ArtifactError otherwise)."""
    try:
        return _checked(raw, release)
    except ValueError as exc:
        raise ArtifactError(
            f"{release.where}/release.json: {exc}. The release is not trustworthy (changed since {project} "
            f"published it): publish {project} again (`mesh build {project}` where it is built)."
        ) from None


@dataclass
class _UpstreamRead:
    """What a consumer reads of one upstream so far, product by product: the nodes and groups of the manifest it
    stitches against, the release each node comes from, the nodes the working copy restricts, and notes."""

    domain: Domain
    project: str
    interface: Manifest | None
    working: Manifest | None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    releases: dict[str, Release] = field(default_factory=dict)  # unique_id -> the release its node comes from
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)

    @property
    def shown(self) -> str:
        """The working manifest's path as messages show it."""
        return display_path(self.working.path) if self.working is not None else ""

    def read_product(self, exchange: Exchange, model: str, version: str | None, seen: Node) -> None:
        """Read one offered product from the release the consumer reads of it, else from the working copy or the
        interface (when neither offers it, it is left out)."""
        ours = self.working.named(model) if self.working is not None else []
        draft = next((n for n in ours if n.version == version), None)
        where = display_path(self.domain.path / "mesh_domain.yml")
        pin = pin_for(self.domain, self.project, model, version, seen.latest_version, exchange.env)
        read_from = channels_for(self.domain, self.project, model, version, exchange.env)
        release = exchange.resolve(self.project, model, version, pin, where, read_from)
        if release is not None:
            self.read_release(release, draft)
        elif draft is not None or self.interface is not None:
            self.read_unreleased(seen, draft, read_from)

    def read_unreleased(self, seen: Node, draft: Node | None, read_from: list[str]) -> None:
        """A product with no release yet: the working copy's node (with a note saying so), else the interface's."""
        node = draft if draft is not None else seen
        self.nodes[node.unique_id] = dict(node.raw)
        source = self.working if draft is not None else self.interface
        if source is not None and node.group and node.group in source.groups:
            self.groups[f"group.{self.project}.{node.group}"] = dict(source.groups[node.group])
        if draft is not None:
            self.notes.append(
                f"{self.domain.name} reads {node.key} from {self.project}'s working copy ({self.shown}): it has no "
                f"release in {' / '.join(read_from)} yet (publish it: `mesh build {self.project}`)"
            )

    def read_release(self, release: Release, draft: Node | None) -> None:
        """A product read from its release: the node (checked) and group published with it; the working copy's
        restriction of it takes effect at once (a release never widens access)."""
        raw, group = _released_node(release, self.project, self.interface, self.working)
        node = _trusted_node(raw, release, self.project)
        self.nodes[node.unique_id] = dict(node.raw)
        self.releases[node.unique_id] = release
        if group is not None and node.group:
            self.groups[f"group.{self.project}.{node.group}"] = group
        if draft is not None and not draft.readable_by(self.domain.name):
            self.revoked.add(node.unique_id)
        self.notes.extend(self.working_copy_notes(release, node, draft))

    def working_copy_notes(self, release: Release, node: Node, draft: Node | None) -> list[str]:
        """How the working copy differs from a release the consumer reads: it dropped or restricted the product,
        or changed its shape (the consumer reads the release until the producer publishes)."""
        if self.working is None:
            return []
        release_id = release.descriptor.release_id
        if draft is None or not draft.is_public:
            gone = "no longer has it" if draft is None else f"makes it {draft.access}"
            return [
                f"{self.project}'s working copy ({self.shown}) {gone}: {self.domain.name} reads release "
                f"{release_id} of {node.key} until {self.project} publishes, then loses it"
            ]
        ahead = _ahead(draft, node)
        if not ahead:
            return []
        return [
            f"{self.project}'s working copy ({self.shown}) differs from release {release_id} of "
            f"{node.key} ({ahead}): {self.domain.name} reads the release until {self.project} publishes"
        ]

    def add_private_nodes(self) -> None:
        """The working copy's shareable nodes that are not public, without their code: never stitched, there only
        to explain a ref to one."""
        for node in self.working.shareable if self.working is not None else ():
            if not node.is_public and node.unique_id not in self.nodes:
                self.nodes[node.unique_id] = without_code(node.raw)

    def manifest_data(self) -> dict[str, Any]:
        """The manifest's JSON: the nodes and groups read, dated and typed by the newest release read (else dated
        by the working copy)."""
        newest = max(self.releases.values(), key=lambda r: r.descriptor.release_id, default=None)
        working = self.working
        metadata = {
            "project_name": self.project,
            "generated_at": newest.descriptor.produced_at if newest else (working.generated_at if working else ""),
            "adapter_type": newest.descriptor.engine if newest else None,
        }
        return {"metadata": metadata, "nodes": self.nodes, "groups": self.groups, "sources": {}, "macros": {}}

    def hidden(self, up: Upstream) -> frozenset[str]:
        """What the consumer may not read: all of it when the upstream's package filters leave the project out,
        else what the working copy restricts."""
        project = self.project
        left_out = project in up.excluded_packages or bool(up.included_packages and project not in up.included_packages)
        return frozenset(self.nodes) if left_out else frozenset(self.revoked)


def _never_published(exchange: Exchange, domain: Domain, project: str) -> MeshError:
    from mesh_tools.core.errors import ConfigError

    published = sorted({e.key.split("/")[1] for e in exchange.backend.listing("interfaces")})
    return ConfigError(
        f"{domain.dependencies_file.name} of {domain.name}: project '{project}' is not a domain of this checkout "
        f"and has published nothing in the exchange {exchange.url}. Projects published there: "
        f"{', '.join(published) or 'none'}. Publish it first (`mesh build {project}` where it is built), or "
        "fix the name."
    )


def _released_node(
    release: Release, project: str, interface: Manifest | None, working: Manifest | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The node (and group) published with a release; for a release published before nodes were stored with
    it, the interface's or the working copy's node of the same product when its contract is the release's, else
    one made of its descriptor (its columns, contract, description and owner)."""
    d = release.descriptor
    if d.interface is not None:
        return dict(d.interface.node), d.interface.group
    for source in (interface, working):
        node = source.nodes.get(d.node) if source is not None else None
        # only a node whose contract is the release's own (the interface may be a later publish's)
        if node is not None and node.is_public and Contract.of(node.raw).fingerprint() == d.contract_hash:
            group = source.groups.get(node.group or "") if source is not None else None
            return dict(node.raw), group
    columns = {c.name: {"name": c.name, "data_type": c.data_type, "description": c.description,
                        "constraints": c.constraints, "meta": c.meta} for c in d.contract.columns}  # fmt: skip
    raw = {"unique_id": d.node, "resource_type": resource_type_of(d.node), "package_name": project, "name": d.model,
           "version": d.version, "latest_version": d.latest_version, "access": "public", "description": d.description,
           "group": d.owner.group, "deprecation_date": d.deprecation_date, "columns": columns,
           "constraints": d.contract.constraints, "contract": {"enforced": d.contract.enforced},
           "config": {"access": "public", "group": d.owner.group,
                      "contract": {"enforced": d.contract.enforced}}}  # fmt: skip
    group = None
    if d.owner.group:
        group = {"name": d.owner.group, "package_name": project, "unique_id": f"group.{project}.{d.owner.group}",
                 "owner": {k: v for k, v in (("name", d.owner.name), ("email", d.owner.email)) if v}}  # fmt: skip
    return raw, group


def _checked(raw: dict[str, Any], release: Release) -> Node:
    """The node published with a release, if it is the node of that very product (ValueError otherwise): another
    domain's metadata is data, and a node that names another product, another project or no public access would
    let one release speak for something else."""
    d = release.descriptor
    node = Node(str(raw.get("unique_id") or ""), without_code(raw))
    said = (node.unique_id, node.package, node.name, node.version)
    if said != (d.node, d.project, d.model, d.version):
        raise ValueError(f"the node stored with release {d.release_id} is {node.unique_id or 'unnamed'}, not {d.node}")
    if not node.is_public:
        raise ValueError(f"the node stored with release {d.release_id} is not public")
    # the node must be the release's own contract: an edited one would stitch a stub that dbt refuses at build
    # time (a column the data file lacks), or run what its types say in the consumer's database
    if d.contract_hash and d.contract.fingerprint() != d.contract_hash:
        raise ValueError(f"its contract does not match its contract_hash ({d.contract_hash})")
    try:
        stored = Contract.of(node.raw)
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ValueError(f"the node stored with release {d.release_id} has malformed columns or contract") from None
    differences = d.contract.differences(stored)
    if differences:
        raise ValueError(
            f"the node stored with release {d.release_id} is not the release's contract ({'; '.join(differences)})"
        )
    problems = contract_problems(node.raw.get("columns"), node.contract_enforced)
    if problems:
        raise ValueError(f"the node stored with release {d.release_id}: {'; '.join(problems[:3])}")
    return node


def _ahead(draft: Node, released: Node) -> str:
    """How the producer's working copy of a product differs from the release a consumer reads (column names,
    types, the contract), or ''."""

    def shape(node: Node) -> dict[str, str]:
        return {c.name: str(c.raw.get("data_type") or "").lower() for c in node.columns.values()}

    mine, theirs = shape(draft), shape(released)
    said = []
    if set(mine) - set(theirs):
        said.append(f"columns not released: {', '.join(sorted(set(mine) - set(theirs)))}")
    if set(theirs) - set(mine):
        said.append(f"released columns it no longer has: {', '.join(sorted(set(theirs) - set(mine)))}")
    changed = sorted(c for c in set(mine) & set(theirs) if mine[c] != theirs[c])
    if changed:
        said.append(f"types changed: {', '.join(changed)}")
    if draft.contract_enforced != released.contract_enforced:
        said.append("contract enforcement changed")
    return "; ".join(said)


def _latest_from_newest(nodes: dict[str, dict[str, Any]], releases: dict[str, Release]) -> None:
    """One ``latest_version`` per model, the one its newest release says: versions released at different times
    each carry the latest of their day."""
    newest: dict[str, tuple[str, Any]] = {}
    for uid, raw in nodes.items():
        release = releases.get(uid)
        stamp = release.descriptor.release_id if release is not None else ""
        name = str(raw.get("name"))
        if name not in newest or stamp > newest[name][0]:
            newest[name] = (stamp, raw.get("latest_version"))
    for raw in nodes.values():
        if raw.get("version") is not None:
            raw["latest_version"] = newest[str(raw.get("name"))][1]


def installed_packages(domain: Domain) -> set[str]:
    folder = domain.packages_dir
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return names | {p.name for p in domain.local_packages}


def check_domain_refs(mesh: Mesh, domain: Domain, manifests: dict[str, Manifest]) -> list[str]:
    """One message per cross-project ref of the domain that cannot resolve."""
    packages = installed_packages(domain)
    problems = []
    for ref in scan_refs(domain):
        problem = check_ref(ref, domain, mesh, manifests, packages)
        read = manifests.get(ref.project)
        if problem and isinstance(read, ReleaseManifest):
            problem = _judged_by_release(ref, domain, mesh, read, packages, problem)
        if problem and problem not in problems:
            problems.append(problem)
    return problems


def _judged_by_release(
    ref: CrossProjectRef, domain: Domain, mesh: Mesh, read: ReleaseManifest, packages: set[str], problem: str
) -> str:
    """A ref is judged against what the consumer reads (the releases, and the working copy only for products
    with none); when it fails there, the producer's working copy may say more (the model is protected there)."""
    if read.working is not None:
        return check_ref(ref, domain, mesh, {ref.project: read.working}, packages) or problem
    return problem


_HOOK_KEYS = ("on-run-start", "on-run-end", "pre-hook", "post-hook", "+pre-hook", "+post-hook")


def _hooks(value: object) -> list[str]:
    """Every hook's SQL under a dbt_project.yml mapping (on-run-start/end, +pre-hook, +post-hook, nested)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _HOOK_KEYS:
                items = item if isinstance(item, list) else [item]
                found += [str(x.get("sql") if isinstance(x, dict) else x) for x in items if x]
            else:
                found += _hooks(item)
    elif isinstance(value, list):
        for item in value:
            found += _hooks(item)
    return found


def check_domain_storage(mesh: Mesh, domain: Domain) -> list[str]:
    """One message per place the domain's own files attach or write another domain's storage, or
    read the exchange directly: refused before dbt runs (governance rule GOV205 checks the built SQL)."""
    from mesh_tools.core.yamlfile import load_yaml
    from mesh_tools.dbt.engines.sqlscan import Scanner, Territory

    scanner = Scanner(Territory.of(mesh, domain.name))
    pieces: list[tuple[Path, str]] = []
    project = domain.path / "dbt_project.yml"
    document = load_yaml(project, required=False)
    for hook in _hooks(document.data if document else None):
        pieces.append((project, hook))
    domains = {d.path.resolve() for d in mesh.domains.values()}
    folders = [*domain.code_dirs, *(p for p in domain.local_packages if p.resolve() not in domains)]
    for folder in folders:
        if folder.is_dir():
            pieces += [(f, f.read_text(encoding="utf-8", errors="replace")) for f in sorted(folder.rglob("*.sql"))
                       if f.is_file() and domain.packages_dir not in f.parents]  # fmt: skip
    for _, text in pieces:  # attachments first, wherever they are
        scanner.scan(text)
    scanner.current = None
    problems = []
    contents = {project: project.read_text(encoding="utf-8", errors="replace")} if project.is_file() else {}
    for file, text in pieces:
        for reach in scanner.scan(text):
            quoted = reach.what.strip("'")
            whole = contents.get(file, text)
            at = whole.find(quoted)
            where = f"{display_path(file)}:{whole.count(chr(10), 0, at) + 1}" if at >= 0 else display_path(file)
            problems.append(
                f"{where}: {domain.name} {reach.describe()}. A domain reads other domains only through ref() "
                "and writes only its own storage (governance rule GOV205)."
            )
    return list(dict.fromkeys(problems))


def check_domain_contracts(mesh: Mesh, domain: Domain, manifests: dict[str, Manifest]) -> list[str]:
    """One message per upstream product the domain would read whose contract is not data: a column type that is
    not a type, a column name that cannot be quoted (dbt would run them in the domain's database)."""
    problems = []
    for _, manifest in sorted(manifests.items()):
        products = manifest.for_consumer(domain.name).public()
        problems += contract_refusals(manifest, products, _declared_in(mesh, manifest))
    return problems


def _declared_in(mesh: Mesh, manifest: Manifest) -> Callable[[Node], str]:
    """Where a product's properties are declared, as the consumer's people find it: the producer's YAML
    file in this checkout, else the manifest (or published interface) and the file it names."""
    if manifest.project in mesh.domains:
        folder = mesh.domains[manifest.project].path
        return lambda node: display_path(folder / (node.properties_file or node.file))
    label = display_path(manifest.path)
    return lambda node: f"{label} ({node.properties_file or node.file or node.unique_id})"


def release_bodies(
    mesh: Mesh, domain: Domain, manifest: Manifest, *, require: bool = False, channels: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """For each public model of an upstream, the SQL its stub view runs, and the releases it reads.

    A mesh domain's products are read from the exchange (the consumer's pin, else the current
    release of the first channel of ``channels_for`` that has one; the channel each came through
    is added to ``channels``), never from the producer's database. An upstream known only by a manifest is read
    from the relation that manifest names. ``require`` turns a product without a release into an
    ArtifactError instead of a view that fails when it runs.
    """
    from mesh_tools.core.errors import ArtifactError

    bodies: dict[str, str] = {}
    consumed: dict[str, str] = {}
    exchange = open_exchange(mesh)
    where = display_path(domain.path / "mesh_domain.yml")
    remote = {up.name for up in domain.upstreams if up.remote}
    for node in manifest.for_consumer(domain.name).public():
        if manifest.project not in mesh.domains and manifest.project not in remote:
            try:
                bodies[node.unique_id] = relation_sql(node)
            except ValueError as exc:
                raise ArtifactError(
                    f"{display_path(manifest.path)}: {exc}. The manifest of an upstream outside the mesh names "
                    "relations only; fix or regenerate it."
                ) from None
            continue
        key = node.key
        if isinstance(manifest, ReleaseManifest):  # the very release its node was published with
            release = manifest.releases.get(node.unique_id)
        else:
            pin = pin_for(domain, manifest.project, node.name, node.version, node.latest_version, exchange.env)
            read_from = channels_for(domain, manifest.project, node.name, node.version, exchange.env)
            release = exchange.resolve(manifest.project, node.name, node.version, pin, where, read_from)
        if release is None:
            if require:
                raise ArtifactError(
                    f"{key} has never been published, so {domain.name} has nothing to read. "
                    f"Build and publish it first: `mesh build {manifest.project}` (or select '+{domain.name}')."
                )
            bodies[node.unique_id] = unpublished_sql(key, manifest.project)
            continue
        descriptor = release.descriptor
        columns = [(c.name, c.type) for c in descriptor.columns]
        try:
            if descriptor.warehouse is not None:
                bodies[node.unique_id] = warehouse_sql(descriptor, domain.name)
            else:
                path = release.data_path_for(domain.name)  # fetched (from an object store) only here
                bodies[node.unique_id] = read_parquet_sql(path, columns, descriptor.engine)
        except ValueError as exc:
            raise ArtifactError(f"{release.where}: release cannot be read safely ({exc}).") from None
        consumed[key] = descriptor.release_id
        if channels is not None and release.channel is not None:
            channels[key] = release.channel
    return bodies, consumed


def check_pins(mesh: Mesh, domain: Domain, manifests: dict[str, Manifest]) -> None:
    """Every pin names a product of a declared upstream (ConfigError with a close match otherwise)."""
    from mesh_tools.core.errors import ConfigError
    from mesh_tools.core.suggestions import did_you_mean

    known = set()
    for manifest in manifests.values():
        for node in manifest.public():
            known.add(node.key)
            known.add(product_key(manifest.project, node.name, None))
    for key in domain.pins:
        project = ProductKey.parse(key).domain
        if project in domain.upstream_names and project not in manifests:
            continue  # its upstream is built in this run; stitching checks the pin then
        if key not in known:
            raise ConfigError(
                f"{display_path(domain.path / 'mesh_domain.yml')}: pin '{key}' names no public product of "
                f"{domain.name}'s upstreams.{did_you_mean(key, known)} Products: {', '.join(sorted(known)) or 'none'}."
            )


def stitch_domain(mesh: Mesh, domain: Domain, target: str | None = None) -> StitchOutcome:
    """Check refs, then write or refresh the domain's stub packages (on a problem, no stub is written).

    Whatever else happens, what the domain may no longer read is revoked (stitch/revoke.py): its stubs go
    (even on a problem: a hand `dbt build` must not make their views again) and so do their views.
    """
    manifests = upstream_manifests(mesh, domain)
    relations = product_relations(domain, manifests)
    allowed = set(relations)
    ledger = retire(domain, allowed)  # recorded before any stub changes
    try:
        check_pins(mesh, domain, manifests)
        problems = (
            check_domain_contracts(mesh, domain, manifests)
            + check_domain_refs(mesh, domain, manifests)
            + check_domain_storage(mesh, domain)
        )
    except MeshError:
        _revoke(mesh, domain, manifests, ledger, target, stubs=True)
        raise
    if problems:
        removed, dropped, failed, views = _revoke(mesh, domain, manifests, ledger, target, stubs=True)
        return StitchOutcome(domain.name, removed=tuple(removed), problems=tuple(problems + failed),
                             warnings=tuple(dropped), dropped=tuple(views))  # fmt: skip
    changed: list[str] = []
    unchanged: list[str] = []
    consumed: dict[str, str] = {}  # product key -> release id
    channels: dict[str, str] = {}  # product key -> the channel it was read from
    resolved = {up.name: release_bodies(mesh, domain, manifests[up.name], channels=channels) for up in domain.upstreams}
    for _bodies, reads in resolved.values():
        consumed.update(reads)
    install_runtime(domain)
    # a relation the mesh did not make is never replaced by a stub view (nor recorded, so never dropped)
    clashes = claim(domain, ledger, relations, target, mesh.profiles_dir)
    if clashes:
        removed, dropped, failed, views = _revoke(mesh, domain, manifests, ledger, target, stubs=True)
        return StitchOutcome(domain.name, removed=tuple(removed), problems=tuple(clashes + failed),
                             warnings=tuple(dropped), dropped=tuple(views))  # fmt: skip
    exchange, warnings = open_exchange(mesh), []
    # lease first: retention must not delete what the views are about to read (an empty lease
    # replaces one that protected releases the domain no longer reads)
    if consumed or exchange.backend.read(exchange.lease_key(domain.name)) is not None:
        if exchange.writable():
            write_lease(exchange, domain.name, consumed, channels)
        else:
            warnings.append(
                f"the exchange ({exchange.url}) is read-only here: no lease recorded, so its "
                "publishers' retention does not know this domain reads those releases"
            )
    record(domain, ledger, allowed)
    for up in domain.upstreams:
        bodies, reads = resolved[up.name]
        files = stub_files(manifests[up.name].for_consumer(domain.name), bodies, consumed=reads)
        if install_stub(domain, up.name, files):
            changed.append(up.name)
        else:
            unchanged.append(up.name)
    removed, dropped, failed, views = _revoke(mesh, domain, manifests, ledger, target, stubs=False)
    return StitchOutcome(
        domain.name,
        changed=tuple(changed),
        unchanged=tuple(unchanged),
        removed=tuple(removed),
        problems=tuple(failed),
        consumed=consumed,
        warnings=tuple(warnings + dropped),
        dropped=tuple(views),
        notes=tuple(stitch_notes(manifests)),
    )


def stitch_notes(manifests: dict[str, Manifest]) -> list[str]:
    """What a stitch says about where it read its upstreams from: a product with no release yet, taken from
    the producer's working copy, and a working copy ahead of the release read (`mesh build --explain`, doctor)."""
    return [note for m in manifests.values() if isinstance(m, ReleaseManifest) for note in m.notes]


_WHY = " (its producer restricts them, the upstream is no longer declared, or they are gone)"


def _revoke(
    mesh: Mesh, domain: Domain, manifests: dict[str, Manifest], ledger: Ledger, target: str | None, *, stubs: bool
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Remove the stubs of upstreams no longer declared (``stubs``: and those offering a product the domain
    may no longer read), drop the retired views; (stubs removed, warnings, problems, views dropped)."""
    removed = remove_stale_stubs(domain) + (remove_revoked_stubs(domain, manifests) if stubs else [])
    try:
        dropped = drop_retired(domain, ledger, target, mesh.profiles_dir)
    except MeshError as exc:
        return removed, [], [str(exc)], []
    said = [f"dropped the stub views {', '.join(dropped)}: it may no longer read them" + _WHY] if dropped else []
    return removed, said, [], list(dropped)
