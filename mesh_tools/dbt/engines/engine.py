"""The Engine protocol: every question the mesh asks of the warehouse engine a domain builds on.

One module per engine answers it (duckdb.py, spark.py, postgres.py); the registry in
``engines/__init__.py`` maps dbt's adapter type to its engine. What no engine needs to know
(the exchange, the policy, the CLI) stays out: an engine is given paths, relations and SQL names,
never a feature's objects.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mesh_tools.model.release import ReleaseColumn


class UnpublishableData(Exception):
    """A product cannot be written to a release as it is (a type no release carries, a value out of range)."""


@dataclass(frozen=True)
class Storage:
    """Where a target keeps its relations, read from its dbt credentials."""

    files: tuple[Path, ...] = ()  # the main database file, then attached ones (DuckDB); the warehouse folder (Spark)
    attached: tuple[str, ...] = ()  # "alias = path (read-only)", for people
    remote: tuple[str, ...] = ()  # locations that are not local files (s3://, md:, ...)
    warehouse: Path | None = None  # a local Spark session's warehouse folder
    # how to open a connection of one's own (PostgreSQL: host, port, dbname, user, password); in memory only
    connection: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ProfileProblem:
    """What stops a domain's target from building or publishing on its engine, and the fix."""

    message: str  # reads after the domain's name: "sales builds into an in-memory DuckDB database"
    fix: str
    publish_only: bool = False  # a build without publishing goes through


# Exported rows and columns of each product, in the order given.
Exported = list[tuple[int, list["ReleaseColumn"]]]


class Engine(Protocol):
    """A warehouse engine, as the mesh uses it. Add one: a module with a class like these, one registry line."""

    name: str  # dbt's adapter type (``target.type``)
    sql_dialect: str  # sqlglot's name for the SQL it runs
    owns_its_process: bool  # lives in the worker process, bound to one domain (a Spark session's JVM)
    console_log: str | None  # the file in the target folder taking its console output, if any
    releases_in_warehouse: bool  # releases are tables in its warehouse (else Parquet files in the exchange)
    shared_storage: bool  # every domain builds into one storage (one metastore): no domain's writes are foreign
    catalog_per_file: bool  # relations carry the name of the database file they live in (DuckDB catalogs)
    loads_landing: bool  # cannot read landing files in place: the mesh loads them into tables before a build
    schema_per_domain: bool  # a stub's schema is its own (a database per domain), not prefixed by the target's
    local_stub_views: bool  # the mesh opens its storage to check and drop stub views (a local file)

    def accepts(self, credentials: Any) -> bool:
        """Whether dbt's ``credentials`` (or a profile's connection facts) are this engine's, among the engines
        of one adapter type (a local Spark session, a Spark cluster)."""
        ...

    def storage(self, project_dir: Path, credentials: Any) -> Storage:
        """Where dbt's ``credentials`` for this engine keep the domain's relations."""
        ...

    def profile_problems(self, schema: str | None, upstreams: Sequence[str], storage: Storage,
                         profiles_file: Path, target: str | None,
                         domain: str | None = None) -> list[ProfileProblem]:  # fmt: skip
        """What in the domain's target would stop a build or a publish on this engine (doctor, and a build)."""
        ...

    def server_problem(self, storage: Storage) -> str | None:
        """Why the server the target builds on does not answer (checked once before a build), or None."""
        ...

    def explain_error(self, message: str, consumer: str, target: str | None) -> str | None:
        """A clearer message for a dbt failure on this engine people meet in a mesh, or None."""
        ...

    def read_release_sql(self, path: str, producer: str | None, columns: list[tuple[str, str]] | None) -> str | None:
        """A stub view's body reading a Parquet release built on ``producer`` (None: the default reader's)."""
        ...

    def read_table_release_sql(self, descriptor: Any, consumer: str) -> str | None:
        """A stub view's body reading a release that is a table in this engine's warehouse, as ``consumer``
        (its PII in clear when the release names it); None when its releases are files. ValueError when the
        descriptor names tables the mesh would not make."""
        ...

    def stub_mark_sql(self, mark: str) -> str | None:
        """A post-hook marking a stub view as the mesh's (``mark``), or None when the engine keeps no comment."""
        ...

    def measure_sql(self, relation: str, keys: Sequence[str]) -> list[str] | None:
        """``describe`` and ``count(*)`` with a null count per key; None when health does not measure it."""
        ...

    def lineage_namespace(self, storage: Storage) -> str | None:
        """The OpenLineage namespace of the storage, or None to fall back to the domain's folder."""
        ...

    def load_landing(self, profile: Any, sources: list[tuple[str, str, list[Path], str]]) -> list[str]:
        """Load each source's landing files (schema, table, files, fingerprint) into its table when they
        changed (``loads_landing`` engines); the tables loaded."""
        ...

    def export(self, domain: Any, products: list[Any], paths: list[Path], profile: Any) -> Exported:
        """Write each product to its Parquet file through the domain's ``profile`` (its target, profiles.yml,
        storage); (rows, columns) of each. UnpublishableData with the column and the fix."""
        ...


class FileEngine:
    """What every engine whose releases are Parquet files, and which reads landing files in place, shares."""

    releases_in_warehouse = False
    loads_landing = False

    def accepts(self, credentials: Any) -> bool:
        return True  # the only engine of its adapter

    def server_problem(self, storage: Storage) -> str | None:
        return None  # no server of its own, or none checked before a build

    def read_table_release_sql(self, descriptor: Any, consumer: str) -> str | None:
        return None  # its releases are files

    def load_landing(self, profile: Any, sources: list[tuple[str, str, list[Path], str]]) -> list[str]:
        return []  # it reads landing files in place


_STORAGE = {
    "No space left on device": "no space left on the device: free some space and publish again",
    "Disk quota exceeded": "disk quota exceeded: free some space and publish again",
    "Read-only file system": "the file system is read-only: publishing needs write access to the exchange",
    "Permission denied": "permission denied: run as a user who may write the exchange",
}


def storage_problem(message: str) -> str | None:
    """The file-system fault behind an engine's failed write (full, read-only, permission), in one phrase."""
    return next((what for needle, what in _STORAGE.items() if needle in message), None)


_LOCAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|:memory:)", re.I)


def local_file(project_dir: Path, raw: Any) -> Path | None:
    """A path in a profile as the file it names (relative to the project, as dbt run there reads it), or None."""
    text = str(raw or "")
    if not text or _LOCAL.match(text) and not text.lower().startswith("file:"):
        return None
    text = text.removeprefix("file://").removeprefix("file:")
    path = Path(text).expanduser()
    return (path if path.is_absolute() else project_dir / path).resolve()
