"""Emit a mesh command's OpenLineage events (lineage/openlineage.py), never failing the command."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mesh_tools.core.credentials import url_place
from mesh_tools.core.mesh import Mesh
from mesh_tools.store.exchange import Exchange, open_exchange
from mesh_tools.workflows.domain_run import SUCCESS, DomainRun


def exchange_namespace(exchange: Exchange) -> str:
    """The exchange as an OpenLineage namespace: producers and consumers name a release the same way."""
    return f"file://{exchange.root.resolve()}" if exchange.local else url_place(exchange.url)


def _relations_namespace(mesh: Mesh, name: str, target: str | None) -> str:
    from mesh_tools.dbt import profiles
    from mesh_tools.lineage.openlineage import relation_namespace

    domain = mesh.domains[name]
    try:
        profile = profiles.load_profile(domain.path, target, mesh.profiles_dir, require_env=False)
    except Exception:  # noqa: BLE001 - a profile that does not render: name the engine by its folder
        return relation_namespace(domain, None, None)
    return relation_namespace(domain, profile.adapter, profile)


def _emit(mesh: Mesh, what: str, send: Callable[[Any], None]) -> list[str]:
    """Open the configured client, let ``send(emitter)`` emit, close it: warnings, never an exception
    (``what``: the command lineage must not fail)."""
    from mesh_tools.lineage.openlineage import Emitter, configuration

    warnings: list[str] = []
    if configuration() is None:
        return warnings
    try:
        emitter = Emitter.open(mesh, exchange_namespace(open_exchange(mesh)), warnings)
        if emitter is not None:
            send(emitter)
            emitter.close(warnings)
    except Exception as exc:  # noqa: BLE001 - lineage never fails the command
        warnings.append(f"OpenLineage events not built ({exc!r}): the {what} itself is not affected.")
    return warnings


def emit_runs(mesh: Mesh, runs: list[DomainRun], target: str | None) -> list[str]:
    """The events of each domain run that started; warnings (never an exception) when they cannot go."""

    def send(emitter: Any) -> None:
        from mesh_tools.lineage.openlineage import RunFacts, domain_events

        for run in runs:
            if run.started_at is None:  # skipped: it never ran
                continue
            facts = RunFacts(
                domain=run.domain, ok=run.status == SUCCESS, started_at=run.started_at,
                ended_at=run.ended_at or datetime.now(UTC).isoformat(), run_id=str(uuid.uuid4()),
                problems=list(run.problems), consumed=run.consumed, released=list(run.released),
                invocation_id=run.invocation_id,
            )  # fmt: skip
            emitter.emit(domain_events(emitter, mesh, facts, _relations_namespace(mesh, run.domain, target)))

    return _emit(mesh, "build", send)


def emit_publish(mesh: Mesh, domain: str, releases: list[Any], target: str | None) -> list[str]:
    """The events of a `mesh publish` of ``domain``."""
    from mesh_tools.lineage.openlineage import publish_events

    if not releases:
        return []
    return _emit(mesh, "publish", lambda emitter: emitter.emit(
        publish_events(emitter, mesh, domain, releases, _relations_namespace(mesh, domain, target))))  # fmt: skip
