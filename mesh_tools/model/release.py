"""The release descriptor (``release.json``): what a release is, written once beside its data.

Its JSON schema is part of the public interface (docs/reference/release-descriptor.md);
``schema_version`` changes when a field changes meaning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContractColumn(_Frozen):
    """A column of the model's contract, as its YAML declares it."""

    name: str = Field(description="The column's name.")
    data_type: str | None = Field(default=None, description="Its `data_type` in the contract.")
    description: str = Field(default="", description="Its description.")
    constraints: list[dict[str, Any]] = Field(
        default_factory=list, description="Its constraints (`not_null`, `unique`, ...), without empty fields."
    )
    meta: dict[str, Any] = Field(default_factory=dict, description="Its `meta` (e.g. `pii: true`).")


def _clean(items: Any) -> list[dict[str, Any]]:
    """Constraints without their empty fields (what dbt writes as null or [])."""
    return [{k: v for k, v in x.items() if v not in (None, [], "")} for x in items or [] if isinstance(x, Mapping)]


class Contract(_Frozen):
    """The model's contract: what consumers rely on."""

    enforced: bool = Field(description="Whether dbt enforces the contract (`contract: {enforced: true}`).")
    columns: list[ContractColumn] = Field(description="The contract's columns, in their declared order.")
    constraints: list[dict[str, Any]] = Field(
        default_factory=list, description="Model-level constraints (e.g. `primary_key`)."
    )

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> Contract:
        """The contract a model's properties declare (columns in their declared order)."""
        return cls(
            enforced=bool((node.get("contract") or {}).get("enforced")),
            columns=[
                ContractColumn(
                    name=c["name"],
                    data_type=c.get("data_type"),
                    description=c.get("description") or "",
                    constraints=_clean(c.get("constraints")),
                    meta=c.get("meta") or {},
                )
                for c in (node.get("columns") or {}).values()
            ],
            constraints=_clean(node.get("constraints")),
        )

    def fingerprint(self) -> str:
        """A hash of what consumers rely on: column names, types and constraints (not descriptions)."""
        shape = {
            "enforced": self.enforced,
            "columns": [
                [c.name, (c.data_type or "").lower(), sorted(json.dumps(x, sort_keys=True) for x in c.constraints)]
                for c in self.columns
            ],  # fmt: skip
            "constraints": sorted(json.dumps(x, sort_keys=True) for x in self.constraints),
        }
        return "sha256:" + hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()

    def differences(self, other: Contract) -> list[str]:
        """How ``other`` (the node stored with a release) departs from this contract (the release's) in what
        consumers rely on: column names, their order and types, enforcement, constraints. A constraint's name is
        left aside: it is text, never run by a stub view."""

        def unnamed(items: list[dict[str, Any]]) -> list[str]:
            return sorted(json.dumps({k: v for k, v in x.items() if k != "name"}, sort_keys=True) for x in items)

        mine = {c.name: c for c in self.columns}
        theirs = {c.name: c for c in other.columns}
        said = []
        if set(theirs) - set(mine):
            said.append(f"columns the release does not have: {', '.join(sorted(set(theirs) - set(mine)))}")
        if set(mine) - set(theirs):
            said.append(f"released columns it lacks: {', '.join(sorted(set(mine) - set(theirs)))}")
        if set(mine) == set(theirs) and list(mine) != list(theirs):
            said.append("its columns are in another order than the release's")
        common = [n for n in mine if n in theirs]
        typed = [n for n in common if (mine[n].data_type or "").lower() != (theirs[n].data_type or "").lower()]
        if typed:
            said.append(f"column types that are not the release's: {', '.join(typed)}")
        constrained = [n for n in common if unnamed(mine[n].constraints) != unnamed(theirs[n].constraints)]
        if constrained:
            said.append(f"column constraints that are not the release's: {', '.join(constrained)}")
        if unnamed(self.constraints) != unnamed(other.constraints):
            said.append("model constraints that are not the release's")
        if self.enforced != other.enforced:
            said.append(f"contract {'enforced' if other.enforced else 'not enforced'}, the release's is not")
        return said


class Owner(_Frozen):
    """Who answers for the product: its dbt group and the group's owner."""

    group: str | None = Field(default=None, description="The model's dbt group.")
    name: str | None = Field(default=None, description="The group owner's name.")
    email: str | None = Field(default=None, description="The group owner's e-mail address.")


class DataFile(_Frozen):
    """A data file of the release."""

    path: str = Field(description="Relative to the release folder.")
    bytes: int = Field(description="Its size.")
    sha256: str = Field(description="The SHA-256 of its bytes, in hex: what consumers verify before reading it.")
    readers: list[str] | None = Field(
        default=None,
        description="The only consumers whose stubs read this file (PII in clear); null: every consumer.",
    )


class BuildInfo(_Frozen):
    """The dbt build the data came from."""

    invocation_id: str | None = Field(default=None, description="dbt's invocation id of the build.")
    dbt_version: str | None = Field(default=None, description="The dbt-core version that built it.")
    built_at: str | None = Field(default=None, description="When the dbt build that produced the data ended.")


class ReleaseColumn(_Frozen):
    """A column as the producer's engine types it, and as DuckDB reads it back from the release file."""

    name: str = Field(description="The column's name.")
    type: str = Field(description="The column's type in the producer's engine (``engine``), e.g. HUGEINT.")
    parquet_type: str = Field(
        description="The type DuckDB reads the column back as from data.parquet, e.g. DECIMAL(38,0); a DuckDB "
        "consumer casts back to ``type``."
    )


class WarehouseLocation(_Frozen):
    """Where a release lives when it is a table in the producer's warehouse (PostgreSQL), not a file."""

    engine: str = Field(description="The warehouse (postgres).")
    database: str | None = Field(default=None, description="The warehouse's database.")
    releases_schema: str = Field(description="The producer's releases schema.")
    table: str = Field(description="The release table every allowed consumer reads (PII columns NULL).")
    clear_table: str | None = Field(default=None, description="The table with the PII in clear, for its readers.")
    clear_readers: list[str] = Field(default_factory=list, description="The consumers whose stubs read clear_table.")
    products_schema: str = Field(description="The schema of the product's pointer view (its current release).")
    pointer: str = Field(description="The pointer view: always the current release, for people and BI tools.")


class ReleaseInterface(_Frozen):
    """The product as its producer's dbt declared it when the release was made: what consumers stitch from."""

    node: dict[str, Any] = Field(description="The product's manifest node, without its SQL (raw and compiled code).")
    group: dict[str, Any] | None = Field(default=None, description="The node's dbt group (owner), when it has one.")

    @classmethod
    def of(cls, node: Mapping[str, Any], group: Mapping[str, Any] | None) -> ReleaseInterface:
        """The interface of a product's manifest node: its code and where it was compiled are left out."""
        return cls(node=without_code(node), group=dict(group) if group else None)


CODE_KEYS = ("raw_code", "compiled_code", "compiled_path", "compiled", "extra_ctes", "extra_ctes_injected")


def without_code(node: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest node as other domains may see it: everything but its SQL (what it runs is the producer's)."""
    return {k: v for k, v in node.items() if k not in CODE_KEYS}


class TestSummary(_Frozen):
    """The data tests attached to the model in the build the data came from."""

    passed: int = Field(default=0, description="Tests that passed.")
    failed: int = Field(default=0, description="Tests that failed.")
    warned: int = Field(default=0, description="Tests that warned.")


class ReleaseDescriptor(_Frozen):
    """One immutable release of one version of one data product."""

    schema_version: int = Field(
        default=SCHEMA_VERSION, description=f"{SCHEMA_VERSION}; changes when a field changes meaning."
    )
    product: str = Field(description="`project.model.vN` (or `project.model` when unversioned).")
    project: str = Field(description="The producing domain (dbt project).")
    model: str = Field(description="The model's name.")
    version: str | None = Field(default=None, description="The model version released (null: unversioned).")
    latest_version: str | None = Field(default=None, description="The model's latest version when released.")
    node: str = Field(description="The dbt unique_id of the model.")
    release_id: str = Field(description="`r<UTC timestamp, µs>Z-<6 hex>`: sortable, unique.")
    produced_at: str = Field(description="When the release was written (ISO 8601, UTC).")
    description: str = Field(default="", description="The model's description, from its YAML.")
    owner: Owner = Field(default_factory=Owner, description="The model's group and its owner, from its YAML.")
    access: str = Field(default="public", description="The model's dbt access.")
    deprecation_date: str | None = Field(default=None, description="The version's deprecation date, if any.")
    contract: Contract = Field(description="The model's contract: columns and constraints.")
    contract_hash: str = Field(
        description="`sha256:` of column names, types and constraints (not descriptions): what consumers rely on."
    )
    row_count: int = Field(description="Rows in the release.")
    engine: str | None = Field(default=None, description="The producer's dbt adapter (duckdb, spark, ...).")
    columns: list[ReleaseColumn] = Field(
        default_factory=list, description="Every column of the data file, with its type in the producer's engine."
    )
    format: str = Field(default="parquet", description="parquet (files in the release folder) or table (warehouse).")
    files: list[DataFile] = Field(description="The release's data files (none when it is a table in a warehouse).")
    warehouse: WarehouseLocation | None = Field(
        default=None, description="The release's tables when it lives in the producer's warehouse (format table)."
    )
    pii_columns: list[str] = Field(
        default_factory=list,
        description="Columns marked PII: NULL in the file every consumer reads, in clear only in a file "
        "whose readers the product's policy (meta.pii_allowed_consumers) names.",
    )
    build: BuildInfo = Field(default_factory=BuildInfo, description="The dbt build the data came from.")
    tests: TestSummary = Field(default_factory=TestSummary, description="Tests attached to the model in that build.")
    interface: ReleaseInterface | None = Field(
        default=None,
        description="The product's manifest node (no SQL) and group as built for this release: a consumer's stub "
        "is made from the release it reads, never from the producer's working copy. null in releases published "
        "before it was recorded.",
    )
    content_hash: str | None = Field(
        default=None,
        description="An order-free hash of the rows of each data file but the audit columns (``data.parquet``, "
        "then the clear file, joined by ``|``), each ``sum2x64-duckdb-<version>:<rows>:<h1>:<h2>``: a rebuild "
        "whose rows hash the same confirms this release instead "
        "of making a new one. null in warehouse releases and in releases published before it was recorded.",
    )
    audit_columns: list[str] = Field(
        default_factory=list,
        description="Columns the product declares as audit columns (``meta.audit_columns``: run facts such as "
        "when it was built), left out of ``content_hash``.",
    )

    def differences(self, other: ReleaseDescriptor) -> list[str]:
        """What a consumer of ``other`` (the current release) would see change if this one replaced it, run facts
        aside (release id, when produced, the build and its tests, file sizes and checksums): empty when this
        release would add nothing but a new id, and the current one can be confirmed instead."""
        if self.content_hash is None or other.content_hash != self.content_hash:
            return ["its rows"]
        mine, theirs = self._consumer_view(), other._consumer_view()
        return [key for key in mine if mine[key] != theirs.get(key)]

    def _consumer_view(self) -> dict[str, Any]:
        """Everything of this release a consumer reads, stitches or shows, but the facts of the run that made it."""
        view = self.model_dump(mode="json", exclude={"release_id", "produced_at", "build", "tests", "files"})
        view["files"] = [[f.path, f.readers] for f in self.files]  # which files, for whom; not their bytes
        if self.interface is not None:  # when dbt parsed it and its code's checksum: code is the producer's
            node = {k: v for k, v in self.interface.node.items() if k not in VOLATILE_NODE_KEYS}
            view["interface"] = {"node": node, "group": self.interface.group}
        return view


VOLATILE_NODE_KEYS = ("created_at", "checksum")  # change with every parse or code edit, never with what is served


class Confirmation(_Frozen):
    """A rebuild of a product whose release would have equalled the current one: the current release, confirmed
    (``confirmed/<channel>.json`` beside its pointer). Valid only while that release is the channel's current."""

    product: str
    release_id: str = Field(description="The release confirmed: the channel's current when the record was made.")
    confirmed_at: str = Field(description="When the confirming publish ran (ISO 8601, UTC).")
    invocation_id: str | None = Field(default=None, description="The dbt invocation of the confirming build.")
    built_at: str | None = Field(default=None, description="When the confirming dbt build ended.")
    content_hash: str | None = None
