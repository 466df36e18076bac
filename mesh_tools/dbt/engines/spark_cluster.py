"""Spark on a cluster (dbt-spark through a Thrift server, or Spark Connect): building, publishing and reading there.

A dbt-spark target is a cluster when it talks to a server: ``method: thrift``, ``http`` or ``odbc``,
or ``method: session`` with ``server_side_parameters["spark.remote"]`` (pyspark then opens a Spark
Connect session; ``spark.master`` must not be set beside it). Both are adapter ``spark``, like a
local session (spark.py): the registry chooses among the engines of one adapter by ``accepts``.

What the cluster changes against a local session:

- *No local storage.* The relations live in the cluster's metastore and warehouse; the mesh
  never opens their files. Its storage is the server (``thrift://host:port``, ``sc://host:port``),
  recorded like a warehouse's identity, so the state-aware build looks relations up through dbt.
- *One metastore for every domain.* Domains become schemas of one catalog: each domain's target
  schema must be its own name or start with it (``sales``, ``sales_staging``); a schema belongs to
  the domain with the longest name it carries (``sales_eu_marts`` is domain sales_eu's, not sales's),
  and no domain builds into another's schema or registers a landing view another registers
  (``profile_problems``, ``shared_schema_problems``: doctor). The landing hook (macros/engines.sql,
  ``register_landing``) marks each view with its domain (``mesh.domain`` in TBLPROPERTIES) and never
  replaces another domain's, nor a relation the mesh did not make.
- *Publishing through the engine.* The cluster writes each product into the release's scratch
  folder itself (``insert overwrite directory ... using parquet select /*+ REPARTITION(1) */ *``,
  on the domain's own dbt connection, so the credentials are dbt's); the one part file becomes
  the release's ``data.parquet``; the columns are described with the cluster's types (Hive type
  ids such as ``BIGINT_TYPE`` normalised to ``bigint``). The exchange must be a folder the cluster
  writes and reads at the same path: on loopback it is; on another host it is a shared file system
  named by ``MESH_SPARK_SHARED_DIR``. The exchange, and with an object-store exchange its verified
  cache (where stubs read and exports are staged before the upload; by default
  ``<shared>/mesh-cache/<mesh>`` then), must lie below it, links resolved, else the target is refused
  before any dbt runs (``shared_folder_problems``); the cluster is handed real paths, never links.
- *Who owns the process.* A Thrift connection is opened per dbt invocation and holds nothing of the
  domain in the worker: domains may share worker processes. A Connect session is process-bound in
  pyspark (``getOrCreate`` keeps the first session, and its settings, for the life of the process):
  each domain on Connect gets a process of its own, as a local session does (a fork, no JVM).

Adding an engine stays one module (a class satisfying ``Engine``, with ``accepts`` when it shares
its adapter with another engine) and one line in the registry (``engines/__init__.py``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh_tools.core.errors import ArtifactError, MeshError, StorageError, display_path
from mesh_tools.core.mesh import SHARED_CACHE_DIR
from mesh_tools.core.mesh import SHARED_DIR_ENV as CORE_SHARED_DIR_ENV
from mesh_tools.dbt.engines.engine import (
    Exported,
    ProfileProblem,
    Storage,
    UnpublishableData,
    storage_problem,
)
from mesh_tools.dbt.engines.spark import Spark, credential, is_cluster, remote_url

if TYPE_CHECKING:
    from mesh_tools.model.manifest import Manifest

# the shared folder's variable; core's, since the object-store cache defaults below it (core/mesh.py)
SHARED_DIR_ENV = CORE_SHARED_DIR_ENV
_HIVE_TYPE = re.compile(r"\b([A-Z]+(?:_[A-Z]+)*?)_TYPE\b")


def endpoint(credentials: Any) -> str | None:
    """The server a cluster target talks to: ``thrift://host:port`` (Thrift/HTTP/ODBC) or the Connect URL."""
    if not is_cluster(credentials):
        return None
    url = remote_url(credentials)
    if url is not None and str(credential(credentials, "method")) == "session":
        return url
    method = str(credential(credentials, "method"))
    scheme = "thrift" if method == "thrift" else method
    return f"{scheme}://{credential(credentials, 'host')}:{credential(credentials, 'port')}"


def host_port(url: str) -> tuple[str, int] | None:
    """(host, port) of an endpoint (``thrift://h:p``, ``sc://h:p/;params``), or None."""
    found = re.match(r"^[a-z]+://\[?([^\]/:;]+)\]?:(\d+)", url)
    return (found[1], int(found[2])) if found else None


def loopback(host: str) -> bool:
    """Whether ``host`` names this machine (a cluster there reads the exchange at the same paths)."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shared_folder_problems(host: str, where: str, shared: str | None, exchange: Path | None = None,
                           object_store: bool = False) -> list[ProfileProblem]:  # fmt: skip
    """What stops a cluster at ``host`` (its server ``where``) from reaching the mesh's files: the shared folder
    ``shared`` (``MESH_SPARK_SHARED_DIR``'s value) missing for another machine, or not a folder; and, given the
    ``exchange`` folder (with an ``object_store``: its verified cache, where stubs read and publishing stages),
    that folder not below it, both compared with symbolic links resolved (the cluster sees the files, not the
    mesh's links to them). On loopback without the variable the cluster shares this machine's paths: none."""
    cache = "the object-store exchange's verified cache" if object_store else "the exchange"
    if not shared:
        if loopback(host):
            return []
        return [ProfileProblem(
            f"builds on {where}, another machine, and no shared folder is set",
            f"The cluster reads releases and writes new ones at the exchange's paths: mount one shared file "
            f"system on both, keep the exchange (and an object-store exchange's cache) below it, and export "
            f"{SHARED_DIR_ENV}=<that folder>.",
        )]  # fmt: skip
    if not os.path.isabs(shared) or not os.path.isdir(shared):
        why = "is not an absolute path" if not os.path.isabs(shared) else "is not a folder here"
        return [ProfileProblem(
            f"builds on {where}, and the shared folder {SHARED_DIR_ENV}={shared} {why}",
            f"Mount the file system the cluster shares with this machine and export {SHARED_DIR_ENV}=<its absolute "
            "path> (unset it for a cluster on this machine).",
        )]  # fmt: skip
    if exchange is None:
        return []
    folder, root = Path(os.path.abspath(exchange)), Path(os.path.abspath(shared))
    real_folder, real_root = folder.resolve(), root.resolve()
    if real_folder.is_relative_to(real_root):
        return []
    shown = str(folder) + (f" (resolves to {real_folder})" if real_folder != folder else "")
    root_shown = str(root) + (f" (resolves to {real_root})" if real_root != root else "")
    if object_store:
        fix = (f"Remove `exchange.cache` from mesh.yml (with {SHARED_DIR_ENV} set, the cache is "
               f"{root / SHARED_CACHE_DIR}/<mesh name>) or set it to a folder below {root}.")  # fmt: skip
    else:
        fix = (f"Keep the exchange on the shared file system: set `exchange.path` in mesh.yml to a folder below "
               f"{root}, or export {SHARED_DIR_ENV} as the shared folder that holds {real_folder}.")  # fmt: skip
    return [ProfileProblem(
        f"builds on {where}, which reads and writes releases at the paths of {cache} {shown}, but that is not "
        f"below the shared folder {SHARED_DIR_ENV}={root_shown}, so the cluster cannot reach it",
        fix,
    )]  # fmt: skip


def spark_type(type_: str) -> str:
    """A column type as Spark SQL spells it: Hive type ids (``BIGINT_TYPE``, what Thrift reports) lowered
    without their suffix (``bigint``); ``decimal(10,2)``, ``timestamp``, ``array<string>`` kept as given."""
    text = _HIVE_TYPE.sub(lambda m: m[1].lower(), type_.strip())
    return text.lower() if text.isupper() else text


def spark_literal(text: str) -> str:
    """A Spark SQL string literal (backslash escapes are on by default, so both quote and backslash are escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def export_statements(relation: str, folder: Path) -> list[str]:
    """The cluster writes ``relation`` into ``folder`` as one Parquet file, then describes its columns."""
    return [
        f"insert overwrite directory {spark_literal(str(folder))} using parquet "
        f"select /*+ REPARTITION(1) */ * from {relation}",
        f"describe {relation}",
    ]


def described_columns(rows: Sequence[Sequence[Any]]) -> list[tuple[str, str]]:
    """(name, Spark type) of ``describe``'s rows, up to its first blank or ``#`` row (partitioning, ...)."""
    out = []
    for row in rows:
        name = str(row[0] or "").strip()
        if not name or name.startswith("#"):
            break
        out.append((name, spark_type(str(row[1]))))
    return out


def part_file(folder: Path) -> Path:
    """The one Parquet part file the cluster wrote into ``folder`` (REPARTITION(1): exactly one)."""
    parts = sorted(p for p in folder.glob("part-*") if p.suffix == ".parquet" or ".parquet" in p.name)
    if len(parts) != 1:
        raise ArtifactError(
            f"{display_path(folder)}: the cluster wrote {len(parts)} Parquet part files, not one. The exchange "
            "folder must be one the cluster writes at the same path (a shared file system): see "
            f"{SHARED_DIR_ENV} in mesh-tools' docs/how-to/spark.md."
        )
    return parts[0]


def export(domain: Any, products: list[Any], paths: list[Path], profile: Any) -> Exported:
    """Each product written by the cluster itself into its release's scratch folder, through dbt's connection."""
    from mesh_tools.dbt import runner as dbt_runner
    from mesh_tools.dbt.engines.duckdb import literal, local_database
    from mesh_tools.dbt.runtime import install_runtime
    from mesh_tools.model.release import ReleaseColumn

    install_runtime(domain)
    statements: list[str] = []
    folders = []
    for node, path in zip(products, paths, strict=True):
        folder = path.parent.resolve() / "cluster-export"  # the cluster follows no link of this machine
        folders.append(folder)
        statements += export_statements(node.relation, folder)
    try:
        results = dbt_runner.run_statements(
            domain.path, statements, target=profile.requested_target, profiles_dir=profile.requested_profiles_dir
        )
    except MeshError as exc:
        storage = storage_problem(str(exc))
        if storage:
            where = display_path(paths[0].parent.parent)
            raise StorageError(f"{where}: cannot write the release data: {storage}") from None
        where = endpoint(profile.connection) or "the cluster"
        detail = " ".join(str(exc).split())[:600]
        raise UnpublishableData(f"{where} could not write the release data: {detail}") from None
    out: Exported = []
    with local_database() as con:
        for index, (folder, path) in enumerate(zip(folders, paths, strict=True)):
            os.replace(part_file(folder), path)
            shutil.rmtree(folder, ignore_errors=True)
            back = dict(con.execute(f"select column_name, column_type from (describe select * from "
                                    f"read_parquet({literal(str(path))}))").fetchall())  # fmt: skip
            counted = con.execute(f"select count(*) from read_parquet({literal(str(path))})").fetchone()
            columns = [
                ReleaseColumn(name=name, type=type_, parquet_type=str(back.get(name, type_)))
                for name, type_ in described_columns(results[2 * index + 1])
            ]
            out.append((int(counted[0]) if counted else 0, columns))
    return out


# dbt-spark adds this one to every target (and Spark's Thrift server ignores it too): not the profile's doing
_DBT_SPARK_OWN = ("spark.sql.ansi.enabled",)


def ignored_thrift_settings(parameters: Any) -> tuple[str, ...]:
    """The profile's session settings (``server_side_parameters``) Spark's Thrift server ignores: it applies
    only those named ``set:hiveconf:<key>`` (checked through PyHive: a plain ``spark.sql.timestampType`` left the
    session at TIMESTAMP_LTZ)."""
    keys = [str(k) for k in (parameters or {}) if isinstance(parameters, Mapping)]
    return tuple(sorted(k for k in keys if not k.startswith("set:") and k not in _DBT_SPARK_OWN))


def setting_warnings(storage: Storage) -> list[ProfileProblem]:
    """What a cluster target's profile asks that its server will not do (doctor's warnings)."""
    ignored = storage.connection.get("ignored_settings") or ()
    if not ignored:
        return []
    return [ProfileProblem(
        f"sends session settings Spark's Thrift server ignores: {', '.join(ignored)}",
        "The Thrift server applies only settings named `set:hiveconf:<key>`: write "
        f"`\"set:hiveconf:{ignored[0]}\": ...` under `server_side_parameters` (the demo's spark_thrift targets do).",
    )]  # fmt: skip


def unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why the server at ``url`` does not answer (a TCP connect), or None when it does."""
    place = host_port(url)
    if place is None:
        return None
    try:
        with socket.create_connection(place, timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


_LANDING_FILE = re.compile(r"""['"]([^'"]+\.parquet)['"]""")


@dataclass(frozen=True)
class Footprint:
    """What a domain creates in a shared metastore besides its target schema, read from its manifest: its models',
    seeds' and snapshots' custom schemas (each with the nodes that ask for it), the upstreams it keeps stubs of,
    and the landing views its ``register_landing`` hook creates (``schema.identifier``)."""

    custom: dict[str, tuple[str, ...]] = field(default_factory=dict)  # custom schema -> node names (first few)
    upstreams: tuple[str, ...] = ()
    landing: tuple[str, ...] = ()

    @classmethod
    def of(cls, manifest: Manifest | None, upstreams: Sequence[str] = ()) -> Footprint:
        """From the domain's manifest (None: nothing parsed yet, so its target schema and stubs alone)."""
        custom: dict[str, list[str]] = {}
        landing: list[str] = []
        if manifest is not None:
            for kind in ("model", "seed", "snapshot"):
                for node in manifest.own(kind):
                    config = node.get("config") or {}
                    # a snapshot's legacy `target_schema` is used as written: not a custom schema
                    name = config.get("target_schema") if kind == "snapshot" else None
                    wanted = str(name or config.get("schema") or "").strip()
                    if wanted:
                        custom.setdefault(("=" if name else "") + wanted, []).append(node.name)
            for source in manifest.own_sources():
                meta = {**(source.get("source_meta") or {}), **(source.get("meta") or {})}
                location = str(meta.get("external_location") or "")
                location = location.replace("{name}", str(source.get("name"))).replace(
                    "{identifier}", str(source.get("identifier"))
                )
                if _LANDING_FILE.search(location):  # what the hook registers (engines.sql, register_landing)
                    landing.append(f"{source.get('schema')}.{source.get('identifier')}".lower())
        return cls(
            {k: tuple(dict.fromkeys(v))[:3] for k, v in sorted(custom.items())},
            tuple(upstreams),
            tuple(sorted(set(landing))),
        )

    def schemas(self, target_schema: str) -> dict[str, str]:
        """Every schema the domain builds into (lower case) -> what puts it there, as the mesh names schemas on a
        shared metastore (macros/schema_naming.sql: ``<target schema>_<custom>``; stubs: stitch/stub.py)."""
        target = target_schema.lower()
        out = {target: "its target schema"}
        for wanted, nodes in self.custom.items():
            if wanted.startswith("="):
                out.setdefault(wanted[1:].lower(), f"snapshot {nodes[0]}'s `target_schema: {wanted[1:]}`")
            else:
                out.setdefault(f"{target}_{wanted.lower()}", f"{', '.join(nodes)} with `schema: {wanted}`")
        for up in self.upstreams:
            out.setdefault(f"{target}_upstream_{up.lower()}", f"its stubs of {up}'s products")
        return out


def schema_owner(schema: str, domains: Sequence[str]) -> str | None:
    """The domain a schema on a shared metastore is named for: the longest name it equals or starts with
    (``name_``), so ``sales_eu_marts`` is domain sales_eu's, not sales's; None when it carries no domain's name."""
    s = schema.lower()
    named = [d for d in domains if s == d.lower() or s.startswith(d.lower() + "_")]
    return max(named, key=len) if named else None


def shared_schema_problems(
    targets: Sequence[tuple[str, str, str | None]], built: Mapping[str, Footprint] | None = None
) -> list[tuple[str, ProfileProblem]]:
    """Domains (domain, target schema, endpoint) of one cluster's metastore that would write into another's schemas
    or relations: a schema two domains build, or named for another domain; a landing view another domain registers,
    or in another domain's schema. Each as (the domain to change, the problem naming both)."""
    built = built or {}
    clusters: dict[str, list[tuple[str, dict[str, str], tuple[str, ...]]]] = {}
    for domain, schema, where in targets:
        if where is not None:
            found = built.get(domain, Footprint())
            clusters.setdefault(where, []).append((domain, found.schemas(schema), found.landing))
    out: list[tuple[str, ProfileProblem]] = []
    for where, domains in clusters.items():
        builders: dict[str, list[tuple[str, str]]] = {}  # schema -> (domain, why), in the order given
        for domain, schemas, _ in domains:
            for schema, why in schemas.items():
                builders.setdefault(schema, []).append((domain, why))
        names = [d for d, _, _ in domains]
        out += _schema_clashes(where, names, builders)
        out += _landing_clashes(where, [(d, landing) for d, _, landing in domains], names, builders)
    return out


def _schema_clashes(
    where: str, names: list[str], builders: dict[str, list[tuple[str, str]]]
) -> list[tuple[str, ProfileProblem]]:
    out = []
    for schema, who in builders.items():
        owner = schema_owner(schema, names)
        for domain, why in who:
            if owner is not None and owner != domain:
                also = next((w for d, w in who if d == owner), None)
                out.append((domain, ProfileProblem(
                    f"builds into schema {schema} on {where} ({why}): a schema named for domain {owner}"
                    + (f", which builds it too ({also})" if also else ""),
                    f"A schema on a cluster belongs to the domain whose name it carries (the longest one): "
                    f"{schema} is {owner}'s. {_rename(domain, owner, why)}",
                )))  # fmt: skip
        first, first_why = who[0]
        for domain, why in who[1:]:
            if owner is None or owner not in (first, domain):  # else said above, naming both
                out.append((domain, ProfileProblem(
                    f"builds into schema {schema} on {where} ({why}), as {first} does ({first_why})",
                    f"Domains on one cluster share its metastore: give {domain}'s target `schema: {domain}` "
                    "(its own name), so neither overwrites the other's tables.",
                )))  # fmt: skip
    return out


def _landing_clashes(
    where: str, landings: list[tuple[str, tuple[str, ...]]], names: list[str],
    builders: dict[str, list[tuple[str, str]]],
) -> list[tuple[str, ProfileProblem]]:  # fmt: skip
    out = []
    landed: dict[str, str] = {}  # relation -> the first domain registering it
    for domain, landing in landings:
        for relation in landing:
            schema = relation.split(".", 1)[0]
            first = landed.setdefault(relation, domain)
            owner = schema_owner(schema, names)
            builder = next((d for d, _ in builders.get(schema, []) if d != domain), None)
            if first != domain:
                why = f"as {first} does"
            elif owner is not None and owner != domain:
                why = f"in schema {schema}: domain {owner}'s"
            elif builder is not None:
                why = f"in schema {schema}, which {builder} builds"
            else:
                continue
            out.append((domain, ProfileProblem(
                f"registers the landing view {relation} on {where}, {why}",
                f"Give {domain}'s source a schema of its own (`schema: {domain}_{schema}` on the source in its "
                "sources .yml): the hook never replaces another domain's relations, so its build would stop.",
            )))  # fmt: skip
    return out


def _rename(domain: str, owner: str, why: str) -> str:
    if why == "its target schema":
        return f"Give {domain}'s target `schema: {domain}` (its own name)."
    if "`schema: " in why:
        return (f"Give {why.split(' with ')[0]} another custom schema, one that makes neither `{owner}` nor "
                f"`{owner}_...`, or rename one of the two domains.")  # fmt: skip
    return f"Rename one of the two domains: {domain}'s schemas then no longer start with {owner}'s name."


# Spark's clients' own words (thrift's TSocket, grpc's): a PostgreSQL or DuckDB error never matches them
_GONE = re.compile(
    r"Could not connect to any of \[\('(?P<host>[^']+)', (?P<port>\d+)\)\]|TSocket read 0 bytes|"
    r"failed to connect to all addresses|StatusCode\.UNAVAILABLE",
)
_LOST = re.compile(r"(?:Lost executor|ExecutorLostFailure|SparkContext was shut down|Job aborted|"
                   r"worker lost|Master removed our application)", re.I)  # fmt: skip


def explain_error(message: str, consumer: str, target: str | None) -> str | None:
    """A cluster failure people meet (server gone, executors lost, Hive type ids in a contract error), or None."""
    flag = f" --target {target}" if target else ""
    gone = _GONE.search(message)
    if gone:
        server = f" {gone['host']}:{gone['port']}" if gone["host"] else ""
        return (
            f"{consumer}: the Spark cluster's server{server} does not answer ({gone[0]}). Start it (`mesh "
            f"spark-cluster start` for the local one) or point the target at a running one, then `mesh build{flag}` "
            "again; the domain's previous release stays current."
        )
    lost = _LOST.search(message)
    if lost:
        return (
            f"{consumer}: the Spark cluster lost the executors running this build ({lost[0]}): a "
            f"worker stopped. Nothing was published (the previous release stays current); when the cluster has "
            f"workers again, run `mesh build{flag}` again. ({' '.join(message.split())[:300]})"
        )
    if _HIVE_TYPE.search(message) and "contract" in message.lower():
        return _HIVE_TYPE.sub(lambda m: m[1].lower(), " ".join(message.split()))
    return None


class SparkCluster(Spark):
    """Spark on a cluster through dbt-spark (``connect``: Spark Connect; else a Thrift/HTTP/ODBC server)."""

    # target.type is `spark`: name, dialect, stub SQL and measuring are the local session's
    shared_storage = True
    catalog_per_file = False
    schema_per_domain = False  # one metastore (a cluster's) for every domain: schemas carry its prefix
    local_stub_views = False

    def __init__(self, connect: bool = False) -> None:
        self.connect = connect
        # a Connect session is process-bound (pyspark keeps the first one); a Thrift connection is not
        self.owns_its_process = connect
        # pyspark's Connect client warns on stderr (settings a server keeps): to target/spark.log, as a session's JVM
        self.console_log: str | None = "spark.log" if connect else None

    def accepts(self, credentials: Any) -> bool:
        connect = str(credential(credentials, "method")) == "session" and remote_url(credentials) is not None
        return is_cluster(credentials) and connect == self.connect

    def storage(self, project_dir: Path, credentials: Any) -> Storage:
        where = endpoint(credentials)
        place = host_port(where or "")
        connection: dict[str, Any] = {
            "method": str(credential(credentials, "method")),
            "host": place[0] if place else credential(credentials, "host"),
            "port": place[1] if place else credential(credentials, "port"),
            "endpoint": where,
        }
        if self.connect:
            connection["server_side_parameters"] = {"spark.remote": remote_url(credentials)}
        elif connection["method"] == "thrift":
            connection["ignored_settings"] = ignored_thrift_settings(credential(credentials, "server_side_parameters"))
        return Storage(remote=(where,) if where else (), connection=connection)

    def profile_problems(self, schema: str | None, upstreams: Sequence[str], storage: Storage,
                         profiles_file: Path, target: str | None,
                         domain: str | None = None) -> list[ProfileProblem]:  # fmt: skip
        out = []
        where = str(storage.connection.get("endpoint") or "the cluster")
        if domain is not None and schema is not None and not _own_schema(schema, domain):
            out.append(ProfileProblem(
                f"builds into schema {schema} on {where}, which does not start with its name",
                f"Every domain on a cluster shares its metastore: give the target `schema: {domain}` (or "
                f"`{domain}_...`) in {display_path(profiles_file)}, so no two domains share a schema.",
            ))  # fmt: skip
        out += self.reach_problems(storage)
        return out

    def reach_problems(self, storage: Storage, exchange: Path | None = None,
                       object_store: bool = False) -> list[ProfileProblem]:  # fmt: skip
        """What stops the cluster from reaching the mesh's files (``shared_folder_problems``), now."""
        host = str(storage.connection.get("host") or "")
        where = str(storage.connection.get("endpoint") or "the cluster")
        return shared_folder_problems(host, where, os.environ.get(SHARED_DIR_ENV), exchange, object_store)

    def explain_error(self, message: str, consumer: str, target: str | None) -> str | None:
        return explain_error(message, consumer, target)

    def server_label(self, storage: Storage) -> str:
        """The cluster and its server, as doctor shows them: ``Spark cluster, Thrift server thrift://h:p``."""
        kind = "Spark Connect server" if self.connect else "Thrift server"
        return f"Spark cluster, {kind} {storage.connection.get('endpoint') or '?'} (one metastore for every domain)"

    def lineage_namespace(self, storage: Storage) -> str | None:
        host, port = storage.connection.get("host"), storage.connection.get("port")
        return f"spark://{host}:{port}" if host and port else None

    def server_problem(self, storage: Storage) -> str | None:
        where = storage.connection.get("endpoint")
        if not where:
            return None
        why = unreachable(str(where))
        if why is None:
            return None
        kind = "Spark Connect server" if self.connect else "Spark Thrift server"
        return (
            f"the {kind} {where} does not answer ({why}). Start the cluster (`mesh spark-cluster start` for the "
            "local one) or point the target at a running server (MESH_SPARK_THRIFT_HOST/PORT, "
            "MESH_SPARK_CONNECT_URL), then run again."
        )

    def export(self, domain: Any, products: list[Any], paths: list[Path], profile: Any) -> Exported:
        return export(domain, products, paths, profile)


def _own_schema(schema: str, domain: str) -> bool:
    s, d = schema.lower(), domain.lower()
    return s == d or s.startswith(d + "_")
