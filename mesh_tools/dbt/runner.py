"""The one door to dbt: every dbt invocation of mesh_tools goes through this module.

dbt is run in-process through its programmatic runner (``dbtRunner``), which is faster than a
subprocess per call. dbt is not thread-safe and resolves relative paths (profiles, sources)
against the working directory, so callers run it in a worker process whose working directory
is the project's folder (see ``mesh_tools.workflows.domain_run``).
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbt.cli.main import dbtRunner

from mesh_tools.core.errors import DbtError
from mesh_tools.core.files import write_atomic
from mesh_tools.dbt.warm import fresh_invocation
from mesh_tools.dbt.yamlinputs import check_dbt_yaml

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
    # the SQL statements the project's on-run-start hooks ran (what a hook writes is an input of the build)
    hook_statements: list[str] = field(default_factory=list)
    # dbt's own result object when the command ran (a FreshnessResult for `source freshness`): what a caller
    # that asked dbt not to write its artifacts (--no-write-json) writes itself
    result: Any = None


def dbt_version() -> str:
    from dbt.version import __version__

    return str(__version__)


def invoke(
    project_dir: Path,
    command: list[str],
    *,
    target: str | None = None,
    verbose: bool = False,
    profiles_dir: Path | None = None,
    on_message: Any = None,
) -> Invocation:
    """Run ``dbt <command>`` for the project in ``project_dir`` and collect what it reported.

    The caller's working directory is the project's folder (see ``mesh_tools.workflows.domain_run``), so dbt
    finds profiles.yml as it does for ``cd <project> && dbt build``: ``--profiles-dir`` when the
    mesh was given one, else ``DBT_PROFILES_DIR``, else the project's folder, else ``~/.dbt``.
    ``on_message`` receives the text of every event (the runtime macros report through it).
    """
    check_dbt_yaml(project_dir, profiles_dir)  # a YAML file that would hang dbt is one located ConfigError
    args = [*command, "--project-dir", str(project_dir)]
    if profiles_dir is not None:
        args += ["--profiles-dir", str(profiles_dir)]
    if target and command[0] not in ("deps", "clean"):
        args += ["--target", target]
    if not verbose:
        args += ["--log-level", "none"]
    outcome = Invocation(command=" ".join(command), success=False, seconds=0.0)

    def collect(event: Any) -> None:
        info = event.info
        if info.name == "SQLQuery":  # every statement dbt runs; only the hooks' matter
            node = getattr(event.data, "node_info", None)
            if node is not None and "-on-run-start-" in str(getattr(node, "unique_id", "")):
                outcome.hook_statements.append(str(event.data.sql))
            return
        message = _WARNING_PREFIX.sub("", str(info.msg))
        if on_message is not None:
            on_message(message)
        if info.name in DEPRECATION_EVENTS:
            model = str(getattr(event.data, "model_name", "") or getattr(event.data, "ref_model_name", ""))
            outcome.deprecations.append((info.name, model, message))
        elif info.level == "warn":
            outcome.warnings.append(message)
        elif info.level == "error":
            outcome.errors.append(message)

    start = time.perf_counter()
    fresh_invocation()  # parses are shared between invocations (dbt/warm.py), plugin discovery is not
    try:
        result = dbtRunner(callbacks=[collect]).invoke(args)
    finally:
        release_storage()
    outcome.seconds = time.perf_counter() - start
    outcome.success = bool(result.success)
    outcome.result = result.result
    if result.exception is not None:
        outcome.exception = str(result.exception).strip()
    return outcome


def _artifacts_written_whole() -> None:
    """Make dbt write its JSON artifacts (manifest.json, run_results.json, catalog.json, sources.json) whole.

    dbt truncates an artifact and writes it in place, so a reader in another process can read half a manifest:
    a consumer stitching, or judging its release, while its producer's next dbt invocation runs (a pipelined
    build's second stage, a producer built in another terminal) saw "manifest is corrupt". Every dbt run of the
    mesh writes them as ``core.files.write_atomic`` does: a reader sees the old file or the new one. The same
    bytes as dbt's own ``write_json``; ``tests/dbt/test_artifacts_whole.py`` fails if a dbt release moves it.
    """
    from dbt.artifacts.schemas import base
    from dbt.artifacts.schemas.run.v5 import run
    from dbt_common.clients.system import make_directory
    from dbt_common.utils.encoding import JSONEncoder

    def write_json(path: str, data: dict[str, Any]) -> bool:
        make_directory(str(Path(path).parent))
        write_atomic(Path(path), json.dumps(data, cls=JSONEncoder), durable=False)  # dbt does not fsync either
        return True

    for module in (base, run):
        module.write_json = write_json  # type: ignore[attr-defined]


_artifacts_written_whole()


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


# -- profiles: read through dbt's own renderer (env_var(), targets, profile lookup), never re-implemented


# -- the runtime package: statements run through the domain's own dbt connection


def run_statements(
    project_dir: Path,
    statements: list[str],
    *,
    target: str | None = None,
    profiles_dir: Path | None = None,
    verbose: bool = False,
) -> list[list[list[str | None]]]:
    """Run SQL through the project's own dbt connection; the rows of each statement, as text."""
    found = run_macro(
        project_dir, "run_statements", {"statements": statements}, target=target, profiles_dir=profiles_dir,
        verbose=verbose,
    )  # fmt: skip
    return list(found)


def run_macro(
    project_dir: Path,
    macro: str,
    args: dict[str, Any],
    *,
    target: str | None = None,
    profiles_dir: Path | None = None,
    verbose: bool = False,
) -> Any:
    """Run one macro of the runtime package on the project's own dbt connection; what it reported (JSON).

    The connection is dbt's (``dbt run-operation``): its profile, attachments, extensions and
    settings, so the mesh sees the domain's database exactly as dbt does. Nothing is written to
    the project's artifacts (``--no-write-json``). Needs the runtime package (``mesh_tools.dbt.runtime``).
    """
    from mesh_tools.dbt.runtime import RESULT_PREFIX, RUNTIME_PACKAGE

    found: list[str] = []

    def capture(message: str) -> None:
        if message.startswith(RESULT_PREFIX):
            found.append(message[len(RESULT_PREFIX) :])

    command = ["run-operation", f"{RUNTIME_PACKAGE}.{macro}", "--args", json.dumps(args), "--no-write-json"]
    outcome = invoke(
        project_dir, command, target=target, verbose=verbose, profiles_dir=profiles_dir, on_message=capture
    )
    if not outcome.success or not found:
        detail = outcome.exception or "; ".join(outcome.errors[-3:]) or "no result"
        raise DbtError(" ".join(detail.split()))
    return json.loads(found[-1])
