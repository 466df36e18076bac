"""The public interface a domain publishes to the exchange (``interfaces/<project>/<channel>.json``), as a model type.

A producer's publish writes it (``PublishedInterface.of_manifest``): its public models', seeds' and snapshots' manifest
nodes without their SQL, and its groups. Consumers on machines without the producer's project stitch from it, and a
promotion merges one channel's into another's (``promoted``, reading each as an ``InterfaceShape``: the envelope
checked, its nodes copied as they are). It is another checkout's file, so it is read bounded
(``INTERFACE_LIMIT``) and validated (``read``, ``parse``): a malformed one is one error naming the file, the place in
it and what to do, never a KeyError inside stitching. Its JSON schema: ``interface_schema()``
(docs/interface.schema.json). What it holds stays data: stitching escapes every text of it before dbt sees
it (stitch/stub.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh_tools.core.errors import ArtifactError, display_path
from mesh_tools.core.jsonfile import TooDeep, loads
from mesh_tools.model.nodes import Node, NodeId
from mesh_tools.model.release import without_code

INTERFACE_LIMIT = 64 * 1024 * 1024  # bytes of a published interface: another checkout's file, read before trusted

# what a publish keeps of the manifest's metadata (the rest says where and how the producer ran)
KEPT_METADATA = ("project_name", "dbt_version", "adapter_type", "invocation_id", "generated_at", "dbt_schema_version")


class InterfaceMetadata(BaseModel):
    """The producer's dbt run the interface comes from (a manifest's ``metadata``, the parts kept)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    project_name: str | None = Field(default=None, description="The producing project (domain).")
    dbt_version: str | None = None
    adapter_type: str | None = None
    invocation_id: str | None = None
    generated_at: str | None = None
    dbt_schema_version: str | None = None


class InterfaceNode(BaseModel):
    """One public product's manifest node as dbt wrote it, without its SQL; the fields the mesh reads are checked,
    every other field dbt writes is kept as it is."""

    model_config = ConfigDict(frozen=True, extra="allow")

    unique_id: str = Field(description="dbt's unique_id: ``model.<project>.<name>[.v<version>]`` (or seed, snapshot).")
    resource_type: Literal["model", "seed", "snapshot"]
    package_name: str = Field(description="The producing project.")
    name: str
    version: str | int | float | None = Field(default=None, description="The model version (``v: 2``, ``v: 1.5``).")
    latest_version: str | int | float | None = None
    access: str | None = None
    group: str | None = None
    description: str | None = None
    columns: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Column name -> its properties.")
    constraints: list[dict[str, Any]] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    contract: dict[str, Any] = Field(default_factory=dict)


class _Interface(BaseModel):
    """What every reading of an interface shares: its envelope, how it is read, written and merged."""

    model_config = ConfigDict(frozen=True, extra="allow")

    metadata: InterfaceMetadata = Field(default_factory=InterfaceMetadata)
    nodes: Any = Field(default_factory=dict)  # typed by each reading
    groups: dict[str, dict[str, Any]] = Field(default_factory=dict, description="unique_id -> the dbt group (owner).")
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Always empty: sources stay home.")
    macros: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Always empty: macros stay home.")

    def as_json(self) -> dict[str, Any]:
        """The interface as its file holds it: every field as dbt wrote it, none added."""
        return self.model_dump(mode="json", exclude_unset=True)

    def to_bytes(self) -> bytes:
        return json.dumps(self.as_json()).encode("utf-8")

    # -- merging
    def promoted(self, into: Self | None, unique_ids: Iterable[str]) -> Self:
        """The target channel's interface after a promotion of ``unique_ids`` from this one: it takes this one's
        nodes of the promoted products and keeps its own for every other product (a version the source dropped
        stays readable where its pointer still is); groups are merged, this one's winning."""
        base = into.as_json() if into is not None else {**self.as_json(), "nodes": {}}
        ours = self.as_json()
        nodes = dict(base.get("nodes") or {})
        nodes.update({uid: ours["nodes"][uid] for uid in unique_ids if uid in (ours.get("nodes") or {})})
        groups = {**(base.get("groups") or {}), **(ours.get("groups") or {})}
        return self.model_validate({**base, "nodes": nodes, "groups": groups})

    # -- reading
    @classmethod
    def parse(cls, raw: bytes | str, project: str, where: str, fix: str) -> Self:
        """The interface ``project`` published, from its bytes (``where`` names them in errors); ArtifactError when
        it is over ``INTERFACE_LIMIT``, no JSON, not of the interface's shape, or another project's."""
        if len(raw) > INTERFACE_LIMIT:
            raise ArtifactError(
                f"{where}: the interface {project} published is {len(raw):,} bytes, over the limit of "
                f"{INTERFACE_LIMIT:,}. {fix}"
            )
        try:
            data = loads(raw)
        except (ValueError, TooDeep) as exc:
            raise ArtifactError(f"{where}: the interface {project} published is no JSON ({exc}). {fix}") from None
        try:
            interface = cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            at = ".".join(str(p) for p in error["loc"]) or "the top"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise ArtifactError(
                f"{where}: the interface {project} published is not one the mesh wrote: at {at}: {error['msg']}{more}. "
                f"{fix}"
            ) from None
        problem = interface._identity_problem(project)
        if problem:
            raise ArtifactError(
                f"{where}: the interface {project} published is not one the mesh wrote: {problem}. {fix}"
            )
        return interface

    @classmethod
    def read(cls, path: Path, project: str, fix: str) -> Self:
        """The interface in the file at ``path`` (a fetched copy, or the folder exchange's own), as ``parse``."""
        where = display_path(path)
        try:
            size = path.stat().st_size
            if size > INTERFACE_LIMIT:  # refused before it is read
                raise ArtifactError(
                    f"{where}: the interface {project} published is {size:,} bytes, over the limit of "
                    f"{INTERFACE_LIMIT:,}. {fix}"
                )
            raw = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{where}: cannot read the interface {project} published ({exc}). {fix}") from None
        return cls.parse(raw, project, where, fix)

    def _identity_problem(self, project: str) -> str | None:
        """Why the interface is not ``project``'s own."""
        named = self.metadata.project_name
        if named is not None and named != project:
            return f"metadata.project_name is {named!r}, not {project!r}"
        return None


class InterfaceShape(_Interface):
    """An interface as a promotion reads it: the envelope checked, each node a mapping copied as it is (whoever
    stitches from it reads it as a ``PublishedInterface``)."""

    nodes: dict[str, dict[str, Any]] = Field(default_factory=dict, description="unique_id -> the public node.")


class PublishedInterface(_Interface):
    """A domain's public interface in one channel of the exchange."""

    model_config = ConfigDict(frozen=True, extra="allow", title="Published interface")

    nodes: dict[str, InterfaceNode] = Field(default_factory=dict, description="unique_id -> the public node.")

    @classmethod
    def of_manifest(cls, data: Mapping[str, Any], project: str) -> PublishedInterface:
        """The interface of ``project``'s manifest (its JSON): its public models, seeds and snapshots (as dbt-loom
        reads them) without their SQL, and its groups."""
        nodes = {
            uid: without_code(node)
            for uid, node in (data.get("nodes") or {}).items()
            if Node(uid, node).is_shareable and Node(uid, node).is_public and node.get("package_name") == project
        }
        groups = {k: g for k, g in (data.get("groups") or {}).items() if g.get("package_name") == project}
        meta = {k: (data.get("metadata") or {}).get(k) for k in KEPT_METADATA}
        return cls.model_validate({"metadata": meta, "nodes": nodes, "groups": groups, "sources": {}, "macros": {}})

    def _identity_problem(self, project: str) -> str | None:
        """Why the interface is not ``project``'s own: another project's, a node filed under another id, or one of
        another project."""
        problem = super()._identity_problem(project)
        if problem:
            return problem
        for uid, node in self.nodes.items():
            if node.unique_id != uid:
                return f"nodes.{uid[:120]} holds the node {node.unique_id[:120]}"
            read = NodeId.read(uid)
            if node.package_name != project:
                return f"nodes.{uid[:120]} is a node of {node.package_name[:80]!r}, not of {project!r}"
            if read is None or read.resource_type != node.resource_type or read.package != project:
                return f"nodes.{uid[:120]} is no {node.resource_type} id of {project}"
        return None


def interface_schema() -> dict[str, Any]:
    """The JSON schema of a published interface (for docs and for other tools that read the exchange)."""
    return PublishedInterface.model_json_schema()


def schema_text() -> str:
    """The schema as ``docs/interface.schema.json`` holds it."""
    return json.dumps(interface_schema(), indent=2, sort_keys=True) + "\n"
