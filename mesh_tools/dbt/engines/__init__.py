"""Engines: the registry of the warehouse engines the mesh runs on, chosen by dbt's adapter type and credentials.

``duckdb`` (the embedded default), ``spark`` (dbt-spark: a local session, spark.py, or a cluster
through Thrift or Spark Connect, spark_cluster.py) and ``postgres`` (a shared warehouse, releases as
tables), one module each, each a class answering the ``Engine`` protocol (engines/engine.py). The
domain's engine is dbt's own answer: the ``adapter_type`` of its manifest, or of its profile's target;
among the engines of one adapter type, the first whose ``accepts`` takes the target's credentials
(without credentials, a manifest alone: the adapter's first engine, for what they share: dialect,
stub SQL). Adding an engine is one module and one line in ``_REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ConfigError
from mesh_tools.dbt.engines.duckdb import (
    DatabaseBusy,
    DatabaseUnreadable,
    DuckDB,
    connect_local,
    content_hash,
    local_database,
    local_profile,
    mask_columns,
    write_file,
)
from mesh_tools.dbt.engines.engine import (
    Engine,
    Exported,
    ProfileProblem,
    Storage,
    UnpublishableData,
    storage_problem,
)
from mesh_tools.dbt.engines.postgres import Postgres
from mesh_tools.dbt.engines.spark import Spark
from mesh_tools.dbt.engines.spark_cluster import Footprint, SparkCluster
from mesh_tools.dbt.engines.spark_cluster import setting_warnings as _setting_warnings
from mesh_tools.dbt.engines.spark_cluster import shared_schema_problems as _shared_on_clusters

__all__ = [
    "DEFAULT", "SUPPORTED", "DatabaseBusy", "DatabaseUnreadable", "Engine", "Exported", "Footprint", "ProfileProblem",
    "Storage", "UnpublishableData", "UnsupportedEngine", "by_target", "connect_local", "console_log", "content_hash",
    "engine_for", "exchange_reach_problems", "explain_error", "export", "find_engine", "local_database",
    "local_profile", "mask_columns", "owns_its_process", "profile_warnings", "read_release_jinja", "server_problems",
    "shared_metastore", "shared_schema_problems", "sql_dialect",
    "storage_problem", "stub_mark_jinja", "stub_schema_test", "write_file",
]  # fmt: skip

# The one registry, in order: the first is the default (a manifest without an adapter type); among the
# engines of one adapter type (``name``), the first is the one chosen without credentials.
_REGISTRY: tuple[Engine, ...] = (DuckDB(), Spark(), SparkCluster(), SparkCluster(connect=True), Postgres())
_ENGINES: dict[str, Engine] = {}
for _engine in _REGISTRY:
    _ENGINES.setdefault(_engine.name, _engine)  # each adapter's first engine
DEFAULT: Engine = _REGISTRY[0]
SUPPORTED = tuple(_ENGINES)


class UnsupportedEngine(ConfigError):
    """A domain builds on an adapter the mesh has no engine for."""

    def __init__(self, adapter: str):
        super().__init__(
            f"the dbt adapter '{adapter}' is not an engine the mesh supports ({', '.join(SUPPORTED)}). A domain on it "
            "that reads no other domain can still build without publishing (`mesh build --no-publish`, or `dbt "
            "build` in its folder) and be checked (`mesh check`); publishing releases, reading other domains' "
            "releases and measuring its products need one of those engines: choose a target on one (`--target NAME`)."
        )


def find_engine(adapter: str | None, credentials: Any = None) -> Engine | None:
    """The engine of dbt adapter ``adapter`` (None: the default, DuckDB), or None when the mesh has none for it.

    ``credentials``: dbt's credentials of the target, or the connection facts its profile keeps
    (``ProfileInfo.connection``): among the adapter's engines, the first that accepts them; without
    them, the adapter's first engine. For the steps a build without an engine skips; what cannot go
    without one calls ``engine_for``."""
    if adapter is None:
        return DEFAULT
    if credentials is None:
        return _ENGINES.get(adapter)
    return next((e for e in _REGISTRY if e.name == adapter and e.accepts(credentials)), _ENGINES.get(adapter))


def engine_for(adapter: str | None, credentials: Any = None) -> Engine:
    """The engine of dbt adapter ``adapter`` (None: the default); UnsupportedEngine, the one error, otherwise."""
    engine = find_engine(adapter, credentials)
    if engine is None:
        raise UnsupportedEngine(str(adapter))
    return engine


def owns_its_process(adapter: str | None, credentials: Any = None) -> bool:
    """Whether the engine lives in the worker process and is bound to one domain (a Spark session's JVM,
    its warehouse and metastore; a Spark Connect session): each domain then needs a process of its own."""
    engine = find_engine(adapter, credentials)
    return engine is not None and engine.owns_its_process


def server_problems(targets: list[tuple[str, Storage]]) -> list[str]:
    """Why the servers of the targets (adapter, storage) do not answer, once per server (before a build)."""
    seen: set[str] = set()
    out = []
    for adapter, storage in targets:
        engine = find_engine(adapter, storage.connection)
        key = repr(sorted((k, str(v)) for k, v in storage.connection.items() if k != "password"))
        if engine is None or key in seen:
            continue
        seen.add(key)
        problem = engine.server_problem(storage)
        if problem:
            out.append(problem)
    return out


def shared_schema_problems(
    targets: list[tuple[str, str, str, Storage]], footprints: Mapping[str, Footprint] | None = None
) -> list[tuple[str, ProfileProblem]]:
    """Domains (domain, adapter, target schema, storage) of one shared metastore that would write into another's
    schemas or landing views (``footprints``: what each domain's manifest builds besides its target schema), each
    as (the domain to change, the problem naming both, with the fix) (doctor)."""
    clusters = [
        (domain, schema, str(storage.connection.get("endpoint")))
        for domain, adapter, schema, storage in targets
        if isinstance(find_engine(adapter, storage.connection), SparkCluster)
    ]
    return _shared_on_clusters(clusters, footprints)


def profile_warnings(adapter: str | None, storage: Storage) -> list[ProfileProblem]:
    """What in a target will not do what it says, without stopping a build (doctor's warnings)."""
    engine = find_engine(adapter, storage.connection)
    return _setting_warnings(storage) if isinstance(engine, SparkCluster) else []


def shared_metastore(adapter: str | None, storage: Storage) -> str | None:
    """What a target builds on when its metastore is every domain's (a Spark cluster: its kind and server), or
    None (storage of the domain's own)."""
    engine = find_engine(adapter, storage.connection)
    return engine.server_label(storage) if isinstance(engine, SparkCluster) else None


def exchange_reach_problems(adapter: str | None, storage: Storage, exchange: Path,
                            object_store: bool) -> list[ProfileProblem]:  # fmt: skip
    """What stops a target's engine from reaching the files of the ``exchange`` folder (with an ``object_store``:
    its verified cache), where it reads releases and writes new ones: a Spark cluster on another machine needs
    them below its shared folder (``MESH_SPARK_SHARED_DIR``); an engine in this process reaches them."""
    engine = find_engine(adapter, storage.connection)
    return engine.reach_problems(storage, exchange, object_store) if isinstance(engine, SparkCluster) else []


def console_log(adapter: str | None, credentials: Any = None) -> str | None:
    """The file in the domain's target folder that takes an in-process engine's console output, if any."""
    engine = find_engine(adapter, credentials)
    return engine.console_log if engine is not None else None


def sql_dialect(adapter: str | None) -> str:
    """sqlglot's name for the SQL an adapter runs: its engine's; an adapter of its own, sqlglot's dialect of
    that name when there is one (databricks, snowflake ...), else DuckDB's."""
    engine = find_engine(adapter)
    if engine is not None:
        return engine.sql_dialect
    from sqlglot.dialects.dialect import Dialect

    return str(adapter) if str(adapter) in Dialect.classes else DEFAULT.sql_dialect


def explain_error(message: str, consumer: str, target: str | None) -> str | None:
    """The first engine's clearer message for a dbt failure (each knows only its own errors), or None."""
    return next((e for e in (x.explain_error(message, consumer, target) for x in _REGISTRY) if e), None)


def export(domain: Any, adapter: str | None, products: list[Any], paths: list[Path], profile: Any) -> Exported:
    """Write each product to its Parquet file; (rows, columns) of each. UnpublishableData with the column and fix."""
    engine = find_engine(adapter, getattr(profile, "connection", None))
    if engine is None:
        raise UnpublishableData(f"{domain.name}: {UnsupportedEngine(str(adapter))}")
    return engine.export(domain, products, paths, profile)


# -- what a stub package says per engine: decided when dbt compiles (``target.type``), so one stitched
#    package serves every target


def by_target(choices: dict[str, str], default: str) -> str:
    """Jinja choosing among ``choices`` (engine name -> text) by ``target.type``, else ``default``.

    Engines giving the same text share one test; with no choices, the default alone. Engine names are the
    registry's own (plain identifiers), never a domain's data."""
    grouped: dict[str, list[str]] = {}
    for name, text in choices.items():
        grouped.setdefault(text, []).append(name)
    out, keyword = "", "if"
    for text, names in grouped.items():
        test = f"== '{names[0]}'" if len(names) == 1 else "in (" + ", ".join(f"'{n}'" for n in names) + ")"
        out += f"{{% {keyword} target.type {test} %}}{text}"
        keyword = "elif"
    if not out:
        return default
    return f"{out}{{% else %}}{default}{{% endif %}}" if default else f"{out}{{% endif %}}"


def read_release_jinja(path: str, producer: str | None, columns: list[tuple[str, str]] | None) -> str:
    """A stub view's body reading one Parquet release, in the SQL of the engine the consumer builds on.

    On the producer's own engine the columns are cast back to its types (``columns``): types Parquet cannot
    hold as such arrive exactly as published. Paths and column names are data, never Jinja."""
    from mesh_tools.dbt.literal import jinja_text

    default = jinja_text(str(DEFAULT.read_release_sql(path, producer, columns)))
    choices = {}
    for engine in _ENGINES.values():
        sql = engine.read_release_sql(path, producer, columns) if engine is not DEFAULT else None
        if sql is not None:  # an engine that reads no files gets the default's SQL (and its error)
            choices[engine.name] = jinja_text(sql)
    return by_target(choices, default)


def stub_mark_jinja(mark: str) -> str:
    """The post-hook marking a stub view as the mesh's, on the engines that keep a comment on it."""
    choices = {e.name: sql for e in _ENGINES.values() if (sql := e.stub_mark_sql(mark)) is not None}
    return by_target(choices, "")


def stub_schema_test() -> str:
    """A Jinja test true on engines where a stub's schema is its own (a database per domain)."""
    names = [e.name for e in _ENGINES.values() if e.schema_per_domain]
    # a tuple of one would be a string in Jinja (``in ('duckdb')`` tests a substring): compare with ==
    return (
        f"target.type == '{names[0]}'"
        if len(names) == 1
        else "target.type in (" + ", ".join(f"'{n}'" for n in names) + ")"
    )
