"""Stitch one domain: check its cross-project refs, then install a stub per declared upstream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mesh_tools.core.errors import MeshError, display_path
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.dbt.packages import install_stub, remove_stale_stubs
from mesh_tools.dbt.runtime import install_runtime
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node
from mesh_tools.stitch.refs import check_ref, scan_refs
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
from mesh_tools.store.exchange import channels_for, open_exchange, pin_for
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

    @property
    def ok(self) -> bool:
        return not self.problems


def upstream_manifests(mesh: Mesh, domain: Domain, only: set[str] | None = None) -> dict[str, Manifest]:
    """The manifest of every upstream the domain declares (ArtifactError when one is unusable)."""
    manifests = {}
    for up in domain.upstreams:
        if only is not None and up.name not in only:
            continue
        if up.name in mesh.domains:
            path = mesh.domains[up.name].manifest_path
            fix = f"Build (or rebuild) the upstream: `mesh build {up.name}`, or `mesh stitch` to parse it only."
        elif up.remote:
            path = _remote_interface(mesh, domain, up.name)
            fix = f"The interface {up.name} published in the exchange is unusable: publish {up.name} again."
        else:
            assert up.manifest_path is not None
            path, fix = up.manifest_path, f"Fix the manifest path declared at {up.declared_in}."
        manifests[up.name] = Manifest.load(
            path, up.name, fix, excluded=up.excluded_packages, included=up.included_packages
        )
    return manifests


def _remote_interface(mesh: Mesh, domain: Domain, project: str) -> Path:
    """The public interface a project built elsewhere published in the exchange (this run's channel, else
    prod), fetched into the cache; ConfigError when it never published one."""
    from mesh_tools.core.errors import ConfigError
    from mesh_tools.store.exchange import interface_channels

    exchange = open_exchange(mesh)
    # the interface of the channel the project's releases are read from (its `environments:` setting)
    path = exchange.fetch_interface(project, interface_channels(domain, project, exchange.env))
    if path is None:
        published = sorted({e.key.split("/")[1] for e in exchange.backend.listing("interfaces")})
        raise ConfigError(
            f"{domain.dependencies_file.name} of {domain.name}: project '{project}' is not a domain of this checkout "
            f"and has published nothing in the exchange {exchange.url}. Projects published there: "
            f"{', '.join(published) or 'none'}. Publish it first (`mesh build {project}` where it is built), or "
            "fix the name."
        )
    return path


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
        if problem and problem not in problems:
            problems.append(problem)
    return problems


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
        columns = [(c.name, c.type) for c in descriptor.columns] if descriptor.engine == "duckdb" else None
        try:
            if descriptor.warehouse is not None:
                bodies[node.unique_id] = warehouse_sql(descriptor, domain.name)
            else:
                bodies[node.unique_id] = read_parquet_sql(release.data_path_for(domain.name), columns)
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
            known.add(f"{manifest.project}.{node.name}")
    for key in domain.pins:
        project = key.split(".", 1)[0]
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
    changed, unchanged, consumed, channels = [], [], {}, {}
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
    )


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
