"""`mesh doctor`: how the mesh reads a mesh, for a team adopting theirs, and what would stop a build.

Every project found (path, name, profile, storage), every edge with the file and line that
declared it, what the loader ignored and why, and each problem with its fix. Problems that
would stop `mesh build` are *blocking*; the rest are warnings.
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mesh_tools.core.errors import MeshError, display_path
from mesh_tools.core.mesh import SKIPPED_DIRS, Domain, Mesh
from mesh_tools.core.yamlfile import load_yaml

if TYPE_CHECKING:
    from mesh_tools.dbt.engines import Footprint, Storage
    from mesh_tools.dbt.profiles import ProfileInfo

BLOCKING, WARNING = "blocking", "warning"


@dataclass(frozen=True)
class Problem:
    level: str  # blocking or warning
    where: str
    message: str
    fix: str


@dataclass(frozen=True)
class ProjectView:
    name: str
    path: str
    profile: str
    target: str
    adapter: str
    storage: str
    schema: str
    attached: tuple[str, ...] = ()
    upstreams: tuple[str, ...] = ()
    # on a metastore every domain shares (a Spark cluster): the cluster and its server, and what the domain puts
    # there: every schema it builds into (from its manifest), each landing view its on-run-start hook registers
    server: str = ""
    schemas: tuple[str, ...] = ()
    landing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Edge:
    consumer: str
    producer: str
    declared_in: str
    how: str  # dependencies.yml, dbt_loom (label), dbt_loom manifest file


@dataclass
class Diagnosis:
    root: str
    config: str
    projects: list[ProjectView] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)  # dbt projects without a profile: packages, not domains
    edges: list[Edge] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)  # how each cycle of domains is built (workflows/stages.py)

    @property
    def blocking(self) -> list[Problem]:
        return [p for p in self.problems if p.level == BLOCKING]


def diagnose(mesh: Mesh, target: str | None = None) -> Diagnosis:
    """Read the mesh as `mesh build` would, without building anything."""
    from mesh_tools.dbt import engines, profiles

    config = display_path(mesh.config_path) if mesh.config_path else "no mesh.yml: every dbt project below the root"
    out = Diagnosis(root=str(mesh.root), config=config, ignored=list(mesh.notes))
    out.packages = _packages_found(mesh)
    storage: dict[Path, list[str]] = {}  # file -> domains that open it
    own_files: dict[Path, list[str]] = {}  # file -> domains that build into it
    targets: list[tuple[str, str, str, Storage]] = []  # (domain, adapter, schema, storage): one metastore's schemas
    footprints: dict[str, Footprint] = {}  # domain -> what it builds on a shared metastore
    for name, domain in mesh.domains.items():
        try:
            profile = profiles.load_profile(domain.path, target or mesh.defaults.target, mesh.profiles_dir)
        except MeshError as exc:
            out.problems.append(Problem(BLOCKING, display_path(domain.path / "dbt_project.yml"), str(exc), (
                "Give the project a profile dbt can read: a profiles.yml beside dbt_project.yml, in "
                "DBT_PROFILES_DIR or in ~/.dbt, or pass `mesh --profiles-dir DIR`."
            )))  # fmt: skip
            out.projects.append(ProjectView(name, _rel(mesh, domain.path), str(domain.profile), "?", "?", "?", "?"))
            continue
        server = engines.shared_metastore(profile.adapter, profile.stored)
        schemas: tuple[str, ...] = ()
        if server is not None:
            footprints[name] = footprint = _footprint(domain)
            schemas = tuple(footprint.schemas(str(profile.schema or name)))
        out.projects.append(
            ProjectView(
                name=name,
                path=_rel(mesh, domain.path),
                profile=profile.profile,
                target=profile.target,
                adapter=profile.adapter,
                storage=_rel(mesh, profile.storage) if profile.storage else ", ".join(profile.remote) or "in memory",
                schema=str(profile.schema or ""),
                attached=profile.attached,
                upstreams=domain.upstream_names,
                server=server or "",
                schemas=schemas,
                landing=footprints[name].landing if name in footprints else (),
            )
        )
        _check_profile(out, mesh, domain, profile)
        _check_exchange_reach(out, mesh, domain, profile)
        targets.append((name, profile.adapter, str(profile.schema or name), profile.stored))
        for index, path in enumerate(profile.files):
            storage.setdefault(path, []).append(name)
            if index == 0:
                own_files.setdefault(path, []).append(name)
        for up in domain.upstreams:
            how = "dependencies.yml" if up.label is None else f"dbt_loom manifest '{up.label}'"
            if up.manifest_path is not None:
                how += f" ({display_path(up.manifest_path)})"
            out.edges.append(Edge(name, up.name, up.declared_in, how))
        _check_packages(out, domain)
    _check_shared_schemas(out, targets, footprints)
    for path, users in storage.items():
        owners = own_files.get(path, [])
        readers = [u for u in users if u not in owners]
        if owners and readers:
            owner = " and ".join(owners)
            out.problems.append(Problem(WARNING, display_path(path), (
                f"{', '.join(readers)} attach{'es' if len(readers) == 1 else ''} {owner}'s database directly"
            ), (
                f"Read {owner}'s data products with ref('{owners[0]}', '<model>') and declare it in "
                "dependencies.yml; the mesh builds domains that share a file one at a time."
            )))  # fmt: skip
        if len(owners) > 1:
            message = f"{', '.join(owners)} build into the same database"
            out.problems.append(Problem(WARNING, display_path(path), message, (
                "Nothing to do to build: the mesh builds them one at a time (DuckDB allows one writer). "
                "Give each domain its own file to build them in parallel and keep their data apart."
            )))  # fmt: skip
    _check_refs(out, mesh)
    _check_stale(out, mesh)
    _check_stages(out, mesh)
    return out


def _rel(mesh: Mesh, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(mesh.root)) or "."
    except ValueError:
        return str(path)


def _packages_found(mesh: Mesh) -> list[str]:
    """dbt projects below the root that are not domains: no profile, so dbt packages."""
    domains = {d.path.resolve() for d in mesh.domains.values()}
    found = []
    for path in sorted(mesh.root.rglob("dbt_project.yml")):
        if any(part in SKIPPED_DIRS or part.startswith(".") for part in path.relative_to(mesh.root).parts[:-1]):
            continue
        if path.parent.resolve() in domains:
            continue
        try:
            doc = load_yaml(path)
        except MeshError:
            continue
        data = doc.data if doc and isinstance(doc.data, dict) else {}
        if not data.get("profile"):
            found.append(f"{_rel(mesh, path.parent)} ({data.get('name', '?')}): no profile, so a package, not a domain")
    return found


def _check_profile(out: Diagnosis, mesh: Mesh, domain: Domain, profile: ProfileInfo) -> None:
    """What the domain's engine says would stop its build or publish (an adapter without one: the one error)."""
    from mesh_tools.dbt import engines

    where = display_path(profile.profiles_file)
    try:
        engine = engines.engine_for(profile.adapter, profile.connection)
    except engines.UnsupportedEngine as exc:
        out.problems.append(Problem(BLOCKING, where, f"{domain.name} builds on '{profile.adapter}'", str(exc)))
        return
    schema = str(profile.schema or domain.name)
    for problem in engine.profile_problems(schema, domain.upstream_names, profile.stored, profile.profiles_file,
                                           profile.target, domain=domain.name):  # fmt: skip
        out.problems.append(Problem(BLOCKING, where, f"{domain.name} {problem.message}", problem.fix))
    for warning in engines.profile_warnings(profile.adapter, profile.stored):
        out.problems.append(Problem(WARNING, where, f"{domain.name} {warning.message}", warning.fix))


def _check_shared_schemas(
    out: Diagnosis, targets: list[tuple[str, str, str, Storage]], footprints: dict[str, Footprint]
) -> None:
    """On a shared metastore (a Spark cluster): its server not answering, and a domain that would build into
    another's schema or replace its landing view; blocking, with the fix."""
    from mesh_tools.dbt import engines

    clusters = [(adapter, storage) for domain, adapter, _, storage in targets if domain in footprints]
    for problem in engines.server_problems(clusters):
        out.problems.append(Problem(BLOCKING, "cluster", problem, "`mesh build` refuses to start until it answers."))
    for name, found in engines.shared_schema_problems(targets, footprints):
        out.problems.append(Problem(BLOCKING, name, f"{name} {found.message}", found.fix))


def _footprint(domain: Domain) -> Footprint:
    """What the domain builds on a shared metastore, from the manifest it was last parsed into (none yet, or one
    that cannot be read: its target schema and stubs alone; `_check_stale` says when to parse it again)."""
    from mesh_tools.dbt.engines import Footprint
    from mesh_tools.model.manifest import Manifest

    try:
        manifest = Manifest.read(domain.manifest_path, domain.name, missing_ok=True)
    except MeshError:
        manifest = None
    return Footprint.of(manifest, domain.upstream_names)


def _hub_reachable() -> bool:
    try:
        socket.getaddrinfo("hub.getdbt.com", 443)
        return True
    except OSError:
        return False


def _check_packages(out: Diagnosis, domain: Domain) -> None:
    from mesh_tools.dbt.packages import needs_deps

    if not domain.remote_package_names or not needs_deps(domain):
        return
    declared = "packages.yml" if (domain.path / "packages.yml").is_file() else "dependencies.yml"
    where = display_path(domain.path / declared)
    names = ", ".join(domain.remote_package_names)
    if _hub_reachable():
        out.problems.append(Problem(WARNING, where, f"{domain.name} needs `dbt deps` for {names}", (
            "`mesh build` runs it first."
        )))  # fmt: skip
    else:
        message = f"{domain.name} needs {names}, which this machine cannot download"
        out.problems.append(Problem(BLOCKING, where, message, (
            "Vendor each package into the repository and declare it with '- local: <path>', or copy an "
            "installed dbt_packages folder from a machine with network."
        )))  # fmt: skip


def _check_refs(out: Diagnosis, mesh: Mesh) -> None:
    """Cross-project refs that cannot resolve, judged as the stitch judges them: against the releases each
    consumer reads (and a producer's working copy only for a product with no release yet, which is said)."""
    from mesh_tools.model.manifest import Manifest
    from mesh_tools.stitch.plan import NothingToRead, WorkingCopies, check_domain_refs, stitch_notes, upstream_manifests
    from mesh_tools.store.exchange import open_exchange

    try:  # opened once for every consumer; one that cannot be opened is each consumer's problem, as before
        exchange = open_exchange(mesh) if any(u.name in mesh.domains or u.remote for d in mesh.domains.values()
                                              for u in d.upstreams) else None  # fmt: skip
    except MeshError:
        exchange = None
    working: WorkingCopies = {}  # each producer's working manifest read once, not once per consumer
    readers = Counter(up.name for d in mesh.domains.values() for up in d.upstreams)
    for domain in mesh.domains.values():
        manifests: dict[str, Manifest] = {}
        for up in domain.upstreams:
            if up.name not in mesh.domains and up.manifest_path is not None and not up.manifest_path.is_file():
                out.problems.append(Problem(BLOCKING, up.declared_in, f"manifest of '{up.name}' not found: "
                                            f"{display_path(up.manifest_path)}", "Fix the path, or mark the manifest "
                                            "`optional: true` if it is only for documentation."))  # fmt: skip
                continue
            try:
                manifests.update(upstream_manifests(mesh, domain, only={up.name}, exchange=exchange, working=working))
            except NothingToRead:
                continue  # never built nor published: `mesh build` builds it first
            except MeshError as exc:
                level = WARNING if up.name in mesh.domains else BLOCKING  # built first by `mesh build`
                out.problems.append(Problem(level, up.declared_in, str(exc), (
                    f"`mesh build {up.name}` builds and publishes it."
                    if level == WARNING else "Publish the upstream again, or fix the declaration."
                )))  # fmt: skip
        for name, manifest in manifests.items():
            for note in stitch_notes({name: manifest}):
                out.problems.append(Problem(WARNING, domain.name, note, (
                    f"Nothing to do to build: {domain.name} reads the releases it is given. `mesh build {name}` "
                    f"releases {name}'s working copy."
                )))  # fmt: skip
        for problem in check_domain_refs(mesh, domain, manifests):
            where, _, message = problem.partition(": ")
            out.problems.append(Problem(BLOCKING, where, message, "See the message."))
        for up in domain.upstreams:  # a producer's manifest is kept only until its last reader is judged
            readers[up.name] -= 1
            if not readers[up.name] and up.name in mesh.domains:
                done = mesh.domains[up.name].manifest_path
                for key in [k for k in working if k[0] == done]:
                    del working[key]


def _check_stale(out: Diagnosis, mesh: Mesh) -> None:
    from mesh_tools.dbt.staleness import stale_domains

    for name, why in stale_domains(list(mesh.domains.values())).items():
        out.problems.append(Problem(WARNING, name, why, f"`mesh build {name}` (or `mesh stitch {name}` to parse)."))


def _check_stages(out: Diagnosis, mesh: Mesh) -> None:
    """Each cycle of domains: its stages, read from the domains' manifests as they are (no parse), or a cycle
    between models, which stops the build."""
    from mesh_tools.core.graph import ModelCycle, cycles, stages
    from mesh_tools.model.manifest import Manifest
    from mesh_tools.workflows.stages import model_cycle_message, model_graph, stage_lines

    for group in cycles(mesh.upstream_graph()):
        title = f"{', '.join(group)} form a cycle of projects"
        missing = [n for n in group if not mesh.domains[n].manifest_path.is_file()]
        if missing:
            out.stages.append(f"{title}: stages are planned when `mesh build` parses them ({', '.join(missing)} "
                              "not parsed yet)")  # fmt: skip
            continue
        try:
            manifests = {n: Manifest.load(mesh.domains[n].manifest_path, n) for n in group}
            graph = model_graph(group, manifests)
            plan = stages(graph.owner, graph.parents, group)
        except ModelCycle as cycle:
            message = model_cycle_message(mesh, cycle.path, graph)
            out.problems.append(Problem(BLOCKING, ", ".join(group), message.split(". ", 1)[0], (
                "A model may not depend on itself through another project: remove one of these refs."
            )))  # fmt: skip
            continue
        except MeshError as exc:
            out.stages.append(f"{title}: stages cannot be read now ({exc})")
            continue
        out.stages.append(f"{title}: `mesh build` builds them in {len(plan)} stages")
        out.stages += [f"  {line}" for line in stage_lines(plan)]


def _check_exchange_reach(out: Diagnosis, mesh: Mesh, domain: Domain, profile: ProfileInfo) -> None:
    """A target that cannot reach the exchange's files (a Spark cluster on another machine: the exchange, or an
    object-store exchange's cache, below MESH_SPARK_SHARED_DIR): blocking, as the build refuses it."""
    from mesh_tools.dbt import engines

    object_store = mesh.exchange_url is not None
    for problem in engines.exchange_reach_problems(profile.adapter, profile.stored, mesh.exchange_path, object_store):
        found = Problem(BLOCKING, display_path(profile.profiles_file), f"{domain.name} {problem.message}", problem.fix)
        if found not in out.problems:  # a missing shared folder is the profile's problem too: said once
            out.problems.append(found)
