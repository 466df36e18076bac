"""The one door to dbt: every dbt invocation of mesh_tools goes through this module.

dbt is run in-process through its programmatic runner (``dbtRunner``), which is faster than a
subprocess per call. dbt is not thread-safe and resolves relative paths (profiles, sources)
against the working directory, so callers run it in a worker process whose working directory
is the project's folder (see ``mesh_tools.worker``).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbt.cli.main import dbtRunner

# dbt events worth surfacing in the mesh's own output.
_WARNING_PREFIX = re.compile(r"^\s*\[(?:\x1b\[\d+m)?WARNING(?:\x1b\[0m)?\]:\s*")
DEPRECATION_EVENTS = {"DeprecatedReference", "UpcomingReferenceDeprecation", "DeprecatedModel"}


@dataclass
class Invocation:
    """The outcome of one dbt command."""

    command: str
    success: bool
    seconds: float
    exception: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # (event name, model name, message) of dbt's model deprecation events
    deprecations: list[tuple[str, str, str]] = field(default_factory=list)


def dbt_version() -> str:
    from dbt.version import __version__

    return str(__version__)


def invoke(project_dir: Path, command: list[str], *, target: str | None = None, verbose: bool = False) -> Invocation:
    """Run ``dbt <command>`` for the project in ``project_dir`` and collect what it reported."""
    args = [*command, "--project-dir", str(project_dir)]
    if (project_dir / "profiles.yml").is_file():
        args += ["--profiles-dir", str(project_dir)]
    if target and command[0] not in ("deps", "clean"):
        args += ["--target", target]
    if not verbose:
        args += ["--log-level", "none"]
    outcome = Invocation(command=" ".join(command), success=False, seconds=0.0)

    def collect(event: Any) -> None:
        info = event.info
        message = _WARNING_PREFIX.sub("", str(info.msg))
        if info.name in DEPRECATION_EVENTS:
            model = str(getattr(event.data, "model_name", "") or getattr(event.data, "ref_model_name", ""))
            outcome.deprecations.append((info.name, model, message))
        elif info.level == "warn":
            outcome.warnings.append(message)
        elif info.level == "error":
            outcome.errors.append(message)

    start = time.perf_counter()
    try:
        result = dbtRunner(callbacks=[collect]).invoke(args)
    finally:
        release_storage()
    outcome.seconds = time.perf_counter() - start
    outcome.success = bool(result.success)
    if result.exception is not None:
        outcome.exception = str(result.exception).strip()
    return outcome


def release_storage() -> None:
    """Close the database dbt-duckdb keeps open for the life of the process.

    dbt-duckdb holds one DuckDB instance per process across invocations. A worker that built a
    producer would keep the producer's file locked for writing, and a consumer in another
    process could not attach it. Its own ``close_all_connections`` (what it runs at exit) drops
    the instance; closing it first releases the file lock at once rather than at garbage collection.
    """
    module = sys.modules.get("dbt.adapters.duckdb.connections")
    manager = getattr(module, "DuckDBConnectionManager", None) if module else None
    if manager is None:
        return
    environment = getattr(manager, "_ENV", None)
    manager.close_all_connections()
    close = getattr(environment, "close", None)
    if callable(close):
        close()
