"""OpenLineage run events for builds and releases, so lineage backends (Marquez, DataHub, OpenMetadata)
draw the edges between projects that only the exchange knows.

Three kinds of job, in one namespace (``OPENLINEAGE_NAMESPACE``, default ``mesh-<mesh name>``):
- ``<domain>.build``: one run per domain build (START, then COMPLETE or FAIL), inputs the releases it
  read, outputs the releases it published;
- ``<domain>.<model>[.vN]``: one run per model dbt ran (START and COMPLETE/FAIL at dbt's own times), a
  child of the domain's run, inputs what the model reads, output its relation with its schema;
- ``<domain>.publish``: the releases it wrote, each read from the product's relation, with column lineage
  (every column is the relation's column; a PII column is masked).

A release is one dataset: namespace the exchange (``file:///…`` or ``s3://bucket/prefix``), name the
product (``sales.fct_orders.v2``), its version facet the release id. The producer's publish writes it and
the consumer's models read it: the cross-project edge.

Off unless OpenLineage is configured the standard way (``OPENLINEAGE_CONFIG``, ``openlineage.yml``,
``OPENLINEAGE__TRANSPORT__*`` or ``OPENLINEAGE_URL``). Emitting never fails a build: the first
failure is one warning and the rest of the run's events are dropped.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh_tools import __version__
from mesh_tools.core.config import env_seconds
from mesh_tools.core.credentials import redact_urls
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import Node
from mesh_tools.model.release import ReleaseDescriptor

PRODUCER = f"https://pypi.org/project/mesh-tools/{__version__}"
DEADLINE_SECONDS = 15.0  # what sending a command's events may cost in all (MESH_LINEAGE_TIMEOUT)


_RAN = ("model", "seed", "snapshot")


def _config_files(cwd: Path | None = None) -> tuple[Path, Path]:
    """Where the client looks for openlineage.yml when OPENLINEAGE_CONFIG names none."""
    return (cwd or Path.cwd()) / "openlineage.yml", Path.home() / ".openlineage" / "openlineage.yml"


def configuration(cwd: Path | None = None) -> str | None:
    """Where the OpenLineage configuration of this run comes from, or None: not configured (no events)."""
    env = os.environ
    if env.get("OPENLINEAGE_DISABLED", "").lower() in ("1", "true", "yes"):
        return None
    if env.get("OPENLINEAGE_CONFIG"):
        return f"OPENLINEAGE_CONFIG={env['OPENLINEAGE_CONFIG']}"
    for path in _config_files(cwd):
        if path.is_file():
            return str(path)
    if any(k.startswith("OPENLINEAGE__TRANSPORT") for k in env) or env.get("OPENLINEAGE_URL"):
        return "OPENLINEAGE_* environment variables"
    return None


_SECRET_VARIABLE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|AUTH", re.I)


def redact(text: str) -> str:
    """``text`` without credentials: user:password@ in URLs, query values, OpenLineage variables' secrets."""
    text = redact_urls(text)
    for name, value in os.environ.items():
        if name.startswith("OPENLINEAGE") and _SECRET_VARIABLE.search(name) and len(value) >= 4:
            text = text.replace(value, "***")
    return text


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """The client's and urllib3's own log lines (retries, fallbacks, tracebacks) off: the mesh says what
    happened in one warning."""
    loggers = [logging.getLogger(name) for name in ("openlineage", "urllib3")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _config_problem() -> str | None:
    """Why the configuration named by OPENLINEAGE_CONFIG cannot be used (the client would fall back to the
    console silently)."""
    named = os.environ.get("OPENLINEAGE_CONFIG")
    if not named:
        return None
    path = Path(named).expanduser()
    try:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return f"OPENLINEAGE_CONFIG={named}: cannot be read ({exc.strerror or exc})"
    except yaml.YAMLError as exc:
        return f"OPENLINEAGE_CONFIG={named}: not YAML ({' '.join(str(exc).split())[:200]})"
    if not isinstance(data, dict) or not isinstance(data.get("transport"), dict):
        return f"OPENLINEAGE_CONFIG={named}: no `transport:` mapping in it"
    return None


def _asked_for_console() -> bool:
    if os.environ.get("OPENLINEAGE__TRANSPORT__TYPE", "").lower() == "console":
        return True
    named = os.environ.get("OPENLINEAGE_CONFIG")
    for path in (Path(named).expanduser(),) if named else _config_files():
        try:
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - unreadable or not YAML: not this one
            continue
        if isinstance(data, dict) and isinstance(data.get("transport"), dict):
            return str(data["transport"].get("type", "")).lower() == "console"
    return False


@dataclass
class RunFacts:
    """What a domain's run did, as the lineage events tell it."""

    domain: str
    ok: bool
    started_at: str  # ISO 8601, UTC
    ended_at: str
    run_id: str  # a UUID: the domain run's
    problems: list[str] = field(default_factory=list)
    consumed: Mapping[str, str] = field(default_factory=dict)  # product -> release id read
    released: list[ReleaseDescriptor] = field(default_factory=list)
    invocation_id: str | None = None  # the dbt invocation this run wrote (its run_results)


class Emitter:
    """The OpenLineage client of one mesh command: never raises, stops at the first failure."""

    def __init__(self, mesh: Mesh, client: Any, exchange_namespace: str):
        self.mesh = mesh
        self.client = client
        self.namespace = os.environ.get("OPENLINEAGE_NAMESPACE") or f"mesh-{mesh.name}"
        self.exchange_namespace = exchange_namespace
        self.sent = 0
        self.failure: str | None = None
        self.budget = env_seconds("MESH_LINEAGE_TIMEOUT", DEADLINE_SECONDS)
        self.deadline = time.monotonic() + self.budget

    @classmethod
    def open(cls, mesh: Mesh, exchange_namespace: str, warnings: list[str]) -> Emitter | None:
        where = configuration(Path.cwd())
        if where is None:
            return None
        where = redact(where)
        try:
            from openlineage.client import OpenLineageClient, set_producer
        except ImportError:
            warnings.append(f"OpenLineage is configured ({where}) but openlineage-python is not installed: no "
                            "lineage events sent. Install it: pip install 'mesh-tools[lineage]'.")  # fmt: skip
            return None
        problem = _config_problem()
        if problem:
            warnings.append(f"{redact(problem)}; no lineage events sent.")
            return None
        try:
            with _quiet_libraries():
                set_producer(PRODUCER)
                client = OpenLineageClient()
                kind = getattr(getattr(client, "transport", None), "kind", None)
        except Exception as exc:  # noqa: BLE001 - a bad configuration is a warning: the build goes on
            text = redact(" ".join(f"{type(exc).__name__}: {exc}".split())[:300])
            warnings.append(f"OpenLineage configuration ({where}) unusable: {text}; no lineage events sent.")
            return None
        if kind in (None, "console", "noop") and not _asked_for_console():
            shown = "no transport" if kind is None else f"the {kind} transport"
            warnings.append(f"OpenLineage configuration ({where}) gave {shown}, not the one configured (an unknown "
                            "transport type or a missing setting?); no lineage events sent.")  # fmt: skip
            return None
        return cls(mesh, client, exchange_namespace)

    def emit(self, events: Iterable[Any]) -> None:
        """Send ``events`` in order, within what is left of the command's budget (``MESH_LINEAGE_TIMEOUT``): a
        backend that hangs costs the build that long once, never a timeout per event."""
        import threading

        pending = list(events)
        left = self.deadline - time.monotonic()
        if self.failure or not pending:
            return
        if left <= 0:
            self.failure = f"the lineage backend took more than {self.budget:g} s in all"
            return

        def send() -> None:
            for event in pending:
                if self.failure:
                    return
                try:
                    self.client.emit(event)
                    self.sent += 1
                except Exception as exc:  # noqa: BLE001 - lineage never fails a build
                    self.failure = redact(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")

        worker = threading.Thread(target=send, name="openlineage", daemon=True)  # left behind if it hangs
        with _quiet_libraries():
            worker.start()
            worker.join(left)
        if worker.is_alive():
            self.failure = f"the lineage backend took more than {self.budget:g} s in all (MESH_LINEAGE_TIMEOUT)"

    def close(self, warnings: list[str]) -> None:
        if not self.failure:
            try:
                self.client.close(timeout=max(1.0, min(10.0, self.deadline - time.monotonic())))
            except Exception:  # noqa: BLE001, S110 - a transport without close, or one that failed already
                pass
        if self.failure:
            warnings.append(f"OpenLineage events not delivered ({self.failure}); {self.sent} sent before, the rest "
                            "dropped. The build itself is not affected.")  # fmt: skip

    # -- datasets
    def release_dataset(
        self, product: str, release_id: str | None, output: bool = False,
        descriptor: ReleaseDescriptor | None = None, source: tuple[str, str] | None = None,
    ) -> Any:  # fmt: skip
        from openlineage.client.event_v2 import InputDataset, OutputDataset
        from openlineage.client.facet_v2 import dataset_version_dataset

        facets: dict[str, Any] = {}
        if release_id:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=release_id)
        if descriptor is not None:
            facets.update(_release_facets(descriptor, source))
        kind = OutputDataset if output else InputDataset
        return kind(namespace=self.exchange_namespace, name=product, facets=facets)


def _release_facets(d: ReleaseDescriptor, source: tuple[str, str] | None) -> dict[str, Any]:
    """Schema, documentation, ownership, and (``source``: the relation it was read from) column lineage."""
    from openlineage.client.facet_v2 import (
        column_lineage_dataset as cl,
    )
    from openlineage.client.facet_v2 import (
        documentation_dataset,
        ownership_dataset,
        schema_dataset,
    )

    described = {c.name.lower(): c.description for c in d.contract.columns}
    fields = [schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.type,
                                                      description=described.get(c.name.lower()) or None)
              for c in d.columns]  # fmt: skip
    facets: dict[str, Any] = {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)}
    if d.description:
        facets["documentation"] = documentation_dataset.DocumentationDatasetFacet(description=d.description)
    owner = d.owner.email or d.owner.name or d.owner.group
    if owner:
        facets["ownership"] = ownership_dataset.OwnershipDatasetFacet(
            owners=[ownership_dataset.Owner(name=owner, type="team")]
        )
    if source is not None:
        masked = {c.lower() for c in d.pii_columns}
        namespace, name = source
        lineage = {
            c.name: cl.Fields(inputFields=[cl.InputField(namespace=namespace, name=name, field=c.name, transformations=[
                cl.Transformation(type="DIRECT", subtype="TRANSFORMATION" if c.name.lower() in masked else "IDENTITY",
                                  description="masked (NULL) for consumers not allowed PII"
                                  if c.name.lower() in masked else "", masking=c.name.lower() in masked)])])
            for c in d.columns
        }  # fmt: skip
        facets["columnLineage"] = cl.ColumnLineageDatasetFacet(fields=lineage)
    return facets


def _job(namespace: str, name: str, job_type: str, sql: str | None = None, description: str | None = None) -> Any:
    from openlineage.client.event_v2 import Job
    from openlineage.client.facet_v2 import documentation_job, job_type_job, sql_job

    facets: dict[str, Any] = {
        "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DBT", jobType=job_type),
    }
    if sql:
        facets["sql"] = sql_job.SQLJobFacet(query=sql)
    if description:
        facets["documentation"] = documentation_job.DocumentationJobFacet(description=description)
    return Job(namespace=namespace, name=name, facets=facets)


def _event(state: str, when: str, run_id: str, job: Any, inputs: list[Any], outputs: list[Any],
           run_facets: dict[str, Any] | None = None) -> Any:  # fmt: skip
    from openlineage.client.event_v2 import Run, RunEvent, RunState

    return RunEvent(eventType=getattr(RunState, state), eventTime=when, run=Run(runId=run_id, facets=run_facets or {}),
                    job=job, producer=PRODUCER, inputs=inputs, outputs=outputs)  # fmt: skip


def _error(problems: list[str]) -> dict[str, Any]:
    from openlineage.client.facet_v2 import error_message_run

    if not problems:
        return {}
    text = redact("\n".join(problems)[:4000])  # a domain's problems may quote a URL with its credentials
    return {"errorMessage": error_message_run.ErrorMessageRunFacet(message=text, programmingLanguage="SQL")}


def _parent(emitter: Emitter, job: str, run_id: str) -> dict[str, Any]:
    from openlineage.client.facet_v2 import parent_run

    return {"parent": parent_run.ParentRunFacet(run=parent_run.Run(runId=run_id),
                                                job=parent_run.Job(namespace=emitter.namespace, name=job))}  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _iso(value: str | None, default: str) -> str:
    """dbt's timing timestamps (``2026-12-03T00:15:35.341955Z``) as ISO 8601 with an offset."""
    if not value:
        return default
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).isoformat()
    except ValueError:
        return default


def relation_namespace(domain: Domain, adapter: str | None, profile: Any) -> str:
    """A domain's engine as an OpenLineage namespace (the naming convention's where it can be followed)."""
    from mesh_tools.dbt import engines

    stored = engines.Storage(
        files=tuple(getattr(profile, "files", ()) or ()), warehouse=getattr(profile, "warehouse", None),
        connection=dict(getattr(profile, "connection", None) or {}),
    )  # fmt: skip
    engine = engines.find_engine(adapter, stored.connection) if adapter else None
    namespace = engine.lineage_namespace(stored) if engine is not None else None
    return namespace or f"{adapter or 'dbt'}://{domain.path.resolve()}"


def _relation_name(node: Node) -> str:
    parts = [node.get("database"), node.get("schema"), node.get("alias") or node.get("identifier") or node.name]
    return ".".join(str(p) for p in parts if p)


def domain_events(emitter: Emitter, mesh: Mesh, facts: RunFacts, relations_ns: str) -> list[Any]:
    """The events of one domain's build: its run, its models' runs, and its publish."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import DatasetFacet, schema_dataset
    from openlineage.client.uuid import generate_new_uuid

    domain = mesh.domains[facts.domain]
    job_name = f"{facts.domain}.build"
    consumed = [emitter.release_dataset(p, r) for p, r in sorted(facts.consumed.items())]
    released = [emitter.release_dataset(d.product, d.release_id, output=True) for d in facts.released]
    build_job = _job(emitter.namespace, job_name, "JOB", description=f"mesh build of domain {facts.domain}")
    events = [_event("START", facts.started_at, facts.run_id, build_job, consumed, [])]
    manifest = results = None
    if facts.invocation_id:
        try:
            manifest = Manifest.load(domain.manifest_path, domain.name)
            results = RunResults.read(domain.run_results_path, missing_ok=True)
        except Exception:  # noqa: BLE001 - no artifacts, no model events: the domain's own events still go
            manifest = results = None
    if manifest is not None and results is not None and results.invocation_id == facts.invocation_id:
        for result in results.results:
            node = manifest.node(result.unique_id)
            if node is None or node.resource_type not in _RAN:
                continue
            stub = node.package != domain.name  # another domain's product, as the stitch stub reading its release
            inputs = [emitter.release_dataset(node.key, facts.consumed.get(node.key))] if stub else []
            for parent_id in [] if stub else node.depends_on:
                parent = manifest.node(parent_id) or manifest.sources.get(parent_id)
                if parent is not None:
                    inputs.append(InputDataset(namespace=relations_ns, name=_relation_name(parent)))
            fields = [schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.data_type,
                                                              description=c.description or None)
                      for c in node.columns.values()]  # fmt: skip
            out_facets: dict[str, DatasetFacet] = (
                {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)} if fields else {}
            )
            output = OutputDataset(namespace=relations_ns, name=_relation_name(node), facets=out_facets)
            timing = result.raw.get("timing") or []
            started = next((t.get("started_at") for t in timing if isinstance(t, dict) and t.get("started_at")), None)
            run_id = str(generate_new_uuid())
            if stub:
                job = _job(emitter.namespace, f"{domain.name}.consume.{node.key}", "CONSUME",
                           description=f"{domain.name} reads the release of {node.key} (the mesh's stub)")  # fmt: skip
            else:
                job = _job(emitter.namespace, f"{domain.name}.{node.product.local}", node.resource_type.upper(),
                           sql=node.raw.get("compiled_code") or None, description=node.description or None)  # fmt: skip
            build = _parent(emitter, job_name, facts.run_id)  # the domain's build run, parent of the model's
            events.append(_event("START", _iso(started, facts.started_at), run_id, job, inputs, [output], build))
            state = {"success": "COMPLETE", "pass": "COMPLETE", "skipped": "ABORT"}.get(result.status, "FAIL")
            extra = _error([result.message or result.status]) if state == "FAIL" else {}
            events.append(_event(state, _iso(result.completed_at, facts.ended_at), run_id, job, inputs, [output],
                                 {**build, **extra}))  # fmt: skip
    if facts.released:
        built = [e.eventTime for e in events[1:]] or [facts.started_at]
        events += publish_events(emitter, mesh, facts.domain, facts.released, relations_ns, manifest,
                                 parent=(job_name, facts.run_id), started=max(built))  # fmt: skip
    end = "COMPLETE" if facts.ok else "FAIL"
    events.append(_event(end, facts.ended_at, facts.run_id, build_job, consumed, released, _error(facts.problems)))
    return events


def publish_events(emitter: Emitter, mesh: Mesh, domain_name: str, releases: list[ReleaseDescriptor],
                   relations_ns: str, manifest: Manifest | None = None,
                   parent: tuple[str, str] | None = None, started: str | None = None) -> list[Any]:  # fmt: skip
    """One publish run: each release written from its product's relation."""
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.uuid import generate_new_uuid

    domain = mesh.domains[domain_name]
    if manifest is None:
        try:
            manifest = Manifest.load(domain.manifest_path, domain.name)
        except Exception:  # noqa: BLE001 - the releases' own facts are enough
            manifest = None
    inputs, outputs = [], []
    for d in releases:
        node = manifest.node(d.node) if manifest else None
        source = (relations_ns, _relation_name(node)) if node is not None else None
        if source:
            inputs.append(InputDataset(namespace=source[0], name=source[1]))
        outputs.append(emitter.release_dataset(d.product, d.release_id, output=True, descriptor=d, source=source))
    run_id = str(generate_new_uuid())
    job = _job(emitter.namespace, f"{domain_name}.publish", "JOB",
               description=f"mesh publish of {domain_name}'s data products as releases")  # fmt: skip
    facets = _parent(emitter, *parent) if parent else {}
    # in a build, the releases were written when their descriptors say (after the last model, before the end
    # of the domain's run); a `mesh publish` ends now
    written = max((_iso(d.produced_at, "") for d in releases), default="") if parent else ""
    end = written or _now()
    start = min(started or end, end)
    return [_event("START", start, run_id, job, inputs, [], facets),
            _event("COMPLETE", end, run_id, job, inputs, outputs, facets)]  # fmt: skip
