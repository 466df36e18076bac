"""The environment variables mesh-tools reads (``MESH_*``): one list, which the reference documents.

The readers live with their features (``os.environ.get`` where the value is used); this table is the one
place that names them all, for docs/reference/configuration.md. tests/docs/test_reference.py fails when
the code reads a ``MESH_`` variable this table does not list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnvironmentVariable:
    """A variable, its default, and what it changes (``read_by``: the profiles.yml of the domain template when
    dbt reads it, not the mesh)."""

    name: str
    default: str
    description: str
    read_by: str = "mesh"


VARIABLES: tuple[EnvironmentVariable, ...] = (
    EnvironmentVariable(
        "MESH_ENV", "prod",
        "The environment (channel) upstream releases are read from and published to; the same as `--env`.",
    ),
    EnvironmentVariable(
        "MESH_WAIT", "0",
        "Seconds a writing command waits when another run writes one of the same domains or files; the same as "
        "`--wait`. 0: exit 2 at once, naming that run.",
    ),
    EnvironmentVariable(
        "MESH_EXCHANGE_URL", "(unset)",
        "`s3://bucket/prefix`: the exchange is in an object store; overrides mesh.yml's `exchange.url` and "
        "`exchange.path` for this machine.",
    ),
    EnvironmentVariable(
        "MESH_S3_ADDRESSING", "auto",
        "The S3 addressing style of an object-store exchange (`auto`, `path` or `virtual`), for stores that "
        "need one.",
    ),
    EnvironmentVariable(
        "MESH_VERIFY_MB", "256",
        "MB a command may download from an object-store exchange to verify current releases' bytes (`mesh "
        "status`, `mesh health`, `mesh docs`); 0 downloads nothing. A file left unchecked is reported unverified.",
    ),
    EnvironmentVariable(
        "MESH_NEW_RELEASE", "(unset)",
        "`1`: publish a new release even when a product's rows did not change (no early cutoff); the same as "
        "`--new-release`.",
    ),
    EnvironmentVariable(
        "MESH_PIPELINE_MIN_TAIL_SECONDS", "3",
        "How long a domain's tail (the models its products do not need) must have taken in its last build for a "
        "pipelined build to split it into a second dbt invocation.",
    ),
    EnvironmentVariable(
        "MESH_MAX_ARTIFACT_MB", "512",
        "The size cap of a JSON artifact the mesh did not write (a manifest, a dbt-loom `.json.gz`), decompressed.",
    ),
    EnvironmentVariable(
        "MESH_DATACONTRACT", "`datacontract` on the PATH",
        "The datacontract-cli command `mesh check --datacontract` runs (GOV107); it needs an environment of its "
        "own.",
    ),
    EnvironmentVariable(
        "MESH_DATACONTRACT_TIMEOUT", "120",
        "Seconds one `datacontract test` may take; after one times out, the rest are not run.",
    ),
    EnvironmentVariable(
        "MESH_LINEAGE_TIMEOUT", "15",
        "Seconds sending a command's OpenLineage events may take in all, a backend that hangs included.",
    ),
    EnvironmentVariable(
        "MESH_SPARK_SHARED_DIR", "(unset)",
        "The folder a Spark cluster on another machine shares with the mesh (same files, same paths); an "
        "object-store exchange's cache lives below it.",
    ),
    EnvironmentVariable(
        "MESH_SPARK_THRIFT_HOST", "127.0.0.1",
        "Host of the Spark Thrift Server (the template's `spark_thrift` target); `mesh spark-cluster` prints it.",
        read_by="profiles.yml",
    ),
    EnvironmentVariable(
        "MESH_SPARK_THRIFT_PORT", "10000",
        "Port of the Spark Thrift Server (the template's `spark_thrift` target).",
        read_by="profiles.yml",
    ),
    EnvironmentVariable(
        "MESH_SPARK_CONNECT_URL", "sc://127.0.0.1:15002",
        "URL of the Spark Connect server (the template's `spark_connect` target); `mesh spark-cluster` prints it.",
        read_by="profiles.yml",
    ),
    EnvironmentVariable(
        "MESH_STORAGE_DIR", ".",
        "Folder of each domain's DuckDB file (the template's `dev` target).",
        read_by="profiles.yml",
    ),
    EnvironmentVariable(
        "MESH_PG_HOST", "127.0.0.1", "PostgreSQL host (the template's `postgres` target).", read_by="profiles.yml"
    ),
    EnvironmentVariable(
        "MESH_PG_PORT", "5432", "PostgreSQL port (the template's `postgres` target).", read_by="profiles.yml"
    ),
    EnvironmentVariable(
        "MESH_PG_DATABASE", "mesh", "PostgreSQL database (the template's `postgres` target).", read_by="profiles.yml"
    ),
    EnvironmentVariable(
        "MESH_PG_USER_<DOMAIN>", "the domain's name",
        "The domain's PostgreSQL login role (`<DOMAIN>` in upper case).",
        read_by="profiles.yml",
    ),
    EnvironmentVariable(
        "MESH_PG_PASSWORD_<DOMAIN>", "(none)",
        "The domain's PostgreSQL password, from your secret store; never written to a file.",
        read_by="profiles.yml",
    ),
    EnvironmentVariable(
        "MESH_ROOT", ".",
        "The mesh the ready Dagster code location (`mesh_tools.dagster.location`) loads.",
    ),
    EnvironmentVariable(
        "MESH_DAGSTER_TARGET", "(each profile's)",
        "The dbt target of the ready Dagster code location.",
    ),
)  # fmt: skip

# Names spelled MESH_ in the code that are not environment variables.
NOT_VARIABLES = frozenset({"MESH_FILE", "MESH_RESULT"})
