"""A node of a dbt manifest (model, test, source, seed, snapshot, operation, unit test), typed, and its names.

The names are read and written here only: ``NodeId`` (a dbt ``unique_id``) and ``ProductKey`` (``sales.fct_orders.v2``,
the key of pointers, pins, receipts and leases); no other module splits or joins them by hand.

A ``Node`` answers the questions features ask (its meta, its columns, its product key, who may
read it) in one place, and still reads as the mapping dbt wrote (``node["name"]``,
``node.get("config")``), so governance plugins written against raw manifest nodes keep working.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


def merged_meta(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` as dbt applies it: the properties' ``meta``, overridden by ``config.meta``."""
    config = _mapping(raw.get("config"))
    return {**_mapping(raw.get("meta")), **_mapping(config.get("meta"))}


def _mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one: a hand-written manifest may hold ``meta: null``."""
    return value if isinstance(value, Mapping) else {}


_NOT_PII = {"false", "no", "off", "n", "0", ""}


def is_pii(meta: dict[str, Any] | None) -> bool:
    """Whether a column's meta marks it PII. Fails closed: any value but false (or "false", "no",
    "off", "0", none) counts, so `pii: "true"` or `pii: 1` is masked like `pii: true`."""
    value = (meta or {}).get("pii")
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in _NOT_PII
    if isinstance(value, int | float):
        return value != 0
    return True


# The nodes another project can ref and the mesh shares as products, as dbt-loom injects them: models, seeds and
# snapshots (dbt-core 1.11 gives only a model an ``access`` of its own; a seed's or snapshot's lives in its config).
SHAREABLE = ("model", "seed", "snapshot")

_VERSION_TAIL = re.compile(r"v[\w.-]+")  # what dbt keeps as a version: 2, 1.5, beta, 2.0-rc1
# resource types whose unique_id holds a scope between package and name: a source's source (``source.p.raw.orders``),
# a unit test's model (``unit_test.p.fct_orders.test_totals``)
_SCOPED = ("source", "unit_test")


@dataclass(frozen=True)
class NodeId:
    """A dbt ``unique_id``, read once: ``model.sales.fct_orders.v2`` is (model, sales, fct_orders, version "2").

    dbt writes ``<resource_type>.<package>.<rest>``, and ``rest`` by type: a model's name and ``.v<version>`` (the
    version may hold dots: ``v: 1.5``), a source's or unit test's scope then name, a data test's name then its hash,
    anything else (seed, snapshot, function, macro, operation, exposure ...) its name. A project or model name
    holds no dot (dbt refuses one), which is what makes the reading unambiguous."""

    resource_type: str
    package: str
    name: str
    version: str | None = None  # a model's version
    scope: str | None = None  # a source's source name, a unit test's model
    suffix: str | None = None  # a generic data test's hash

    @classmethod
    def parse(cls, unique_id: str) -> NodeId:
        """The parts of ``unique_id``; ValueError when it has no ``type.package.name`` shape."""
        return _parse_node_id(unique_id)

    @classmethod
    def read(cls, unique_id: str) -> NodeId | None:
        """``parse``, or None for a string that is no unique_id (a stub's placeholder, a hand-written waiver)."""
        try:
            return _parse_node_id(unique_id)
        except ValueError:
            return None

    @classmethod
    def model(cls, package: str, name: str, version: str | None = None) -> NodeId:
        return cls("model", package, name, version)

    @property
    def local(self) -> str:
        """What follows the package (``fct_orders.v2``, ``raw.orders``): the node's name within its project."""
        return str(self).split(".", 2)[2]

    @property
    def label(self) -> str:
        """How a page names it: ``fct_orders v2``, ``raw.orders`` (a source), ``fct_orders`` (unversioned)."""
        name = f"{self.scope}.{self.name}" if self.scope is not None and self.resource_type == "source" else self.name
        return f"{name} v{self.version}" if self.version is not None else name

    @property
    def is_shareable(self) -> bool:
        return self.resource_type in SHAREABLE

    @property
    def product(self) -> ProductKey:
        """The product key of a model, seed or snapshot (``sales.fct_orders.v2``)."""
        return ProductKey(self.package, self.name, self.version)

    def as_model(self) -> NodeId:
        """The id it has in its consumers' manifests, where its stub is a model (a seed or snapshot becomes one)."""
        return NodeId("model", self.package, self.name, self.version) if self.is_shareable else self

    def __str__(self) -> str:
        parts = [self.resource_type, self.package]
        if self.scope is not None:
            parts.append(self.scope)
        parts.append(self.name)
        if self.version is not None:
            parts.append(f"v{self.version}")
        if self.suffix is not None:
            parts.append(self.suffix)
        return ".".join(parts)


@lru_cache(maxsize=65536)  # the same ids are read by every feature of a run; a NodeId is immutable
def _parse_node_id(unique_id: str) -> NodeId:
    kind, _, rest = unique_id.partition(".")
    package, dot, local = rest.partition(".")
    if not (kind and package and dot and local):
        raise ValueError(f"{unique_id!r} is no dbt unique_id (<resource_type>.<package>.<name>)")
    if kind == "model":
        name, dot, version = local.partition(".")
        if dot and _VERSION_TAIL.fullmatch(version):
            return NodeId(kind, package, name, version=version[1:])
        return NodeId(kind, package, local)
    if kind in _SCOPED:
        scope, dot, name = local.partition(".")
        return NodeId(kind, package, name, scope=scope) if dot else NodeId(kind, package, local)
    if kind == "test":
        name, dot, suffix = local.rpartition(".")
        return NodeId(kind, package, name, suffix=suffix) if dot else NodeId(kind, package, local)
    return NodeId(kind, package, local)


def resource_type_of(unique_id: str) -> str:
    """The resource type a unique_id starts with (``model``, ``test`` ...), without reading the rest."""
    return unique_id.partition(".")[0]


def package_of(unique_id: str) -> str | None:
    """The package (project) of a unique_id, or None for a string that is no unique_id."""
    node = NodeId.read(unique_id)
    return node.package if node is not None else None


def name_of(unique_id: str) -> str:
    """The name in a unique_id (``fct_orders`` of ``model.sales.fct_orders.v2``), or the text as it is."""
    node = NodeId.read(unique_id)
    return node.name if node is not None else unique_id


def local_name(unique_id: str) -> str:
    """What follows the package in a unique_id (``fct_orders.v2``, ``raw.orders``); of a shorter text (a
    hand-made ``project.name``), its last part."""
    node = NodeId.read(unique_id)
    return node.local if node is not None else unique_id.rpartition(".")[2]


def stub_id(unique_id: str) -> str:
    """The unique_id a product has in its consumers' manifests, where its stub is a model: a model keeps its own,
    a seed's or snapshot's (``seed.revenue.integers``) becomes a model's (``model.revenue.integers``)."""
    node = NodeId.read(unique_id)
    return str(node.as_model()) if node is not None else unique_id


@dataclass(frozen=True)
class ProductKey:
    """A data product's key, ``sales.fct_orders.v2`` (``customers.dim_customers`` unversioned): the key of
    pointers, pins, receipts and leases, written by ``__str__`` and read by ``parse``, nowhere else."""

    domain: str
    model: str
    version: str | None = None

    @classmethod
    def parse(cls, key: str) -> ProductKey:
        """``sales.fct_orders.v1.5`` -> (sales, fct_orders, "1.5").

        Everything after the second dot is the version, which may hold dots itself (dbt accepts ``v: 1.5``); a key
        with no second dot, or whose tail is no version (a line break, a space), is an unversioned product of that
        name, which no manifest has."""
        domain, _, rest = key.partition(".")
        model, dot, version = rest.partition(".")
        if dot and _VERSION_TAIL.fullmatch(version):
            return cls(domain, model, version[1:])
        return cls(domain, rest, None)

    @property
    def node_id(self) -> NodeId:
        """The unique_id of its model (a seed's or snapshot's stub is a model too)."""
        return NodeId.model(self.domain, self.model, self.version)

    @property
    def local(self) -> str:
        """The key without its domain (``fct_orders.v2``): the product's name within its project."""
        return str(self).split(".", 1)[1]

    @property
    def unversioned(self) -> str:
        """``sales.fct_orders``: the key a pin of every version of the model is written under."""
        return f"{self.domain}.{self.model}"

    def __str__(self) -> str:
        return f"{self.unversioned}.v{self.version}" if self.version is not None else self.unversioned

    def as_tuple(self) -> tuple[str, str, str | None]:
        return self.domain, self.model, self.version


def product_key(project: str, model: str, version: str | None) -> str:
    """``sales.fct_orders.v2`` (or ``customers.dim_customers`` for an unversioned model)."""
    return str(ProductKey(project, model, version))


def split_product_key(key: str) -> tuple[str, str, str | None]:
    """``product_key`` read back: ``sales.fct_orders.v1.5`` -> (sales, fct_orders, "1.5") (see ``ProductKey.parse``)."""
    return ProductKey.parse(key).as_tuple()


def slo_hours(value: Any) -> float | None:
    """A freshness SLO in hours (``meta.freshness_slo_hours``): a positive number; anything else
    (a boolean, text, zero) is no SLO."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def names(value: Any) -> list[str] | None:
    """A policy list of domain names: None when absent; anything but a list names no one."""
    if value is None:
        return None
    return [str(v) for v in value if isinstance(v, str)] if isinstance(value, list) else []


def relation_of(node: Mapping[str, Any]) -> str:
    """A node's relation exactly as dbt quotes it."""
    if node.get("relation_name"):
        return str(node["relation_name"])
    parts = [node.get("database"), node.get("schema"), node.get("alias") or node.get("name")]
    return ".".join('"' + str(p).replace('"', '""') + '"' for p in parts if p)


def _version(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Column:
    """A column as a model's properties declare it."""

    name: str
    raw: Mapping[str, Any]

    @property
    def meta(self) -> dict[str, Any]:
        return merged_meta(self.raw)

    @property
    def description(self) -> str:
        return str(self.raw.get("description") or "")

    @property
    def data_type(self) -> str | None:
        value = self.raw.get("data_type")
        return None if value in (None, "") else str(value)

    @property
    def constraints(self) -> list[dict[str, Any]]:
        return [c for c in self.raw.get("constraints") or [] if isinstance(c, dict)]

    @property
    def is_pii(self) -> bool:
        return is_pii(self.meta)


class Node(Mapping[str, Any]):
    """One manifest node; typed answers, and the raw mapping underneath."""

    __slots__ = ("raw", "unique_id")

    def __init__(self, unique_id: str, raw: Mapping[str, Any]):
        self.unique_id = unique_id
        self.raw = raw

    # -- the raw mapping (what plugins and templates read)
    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Node({self.unique_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and other.unique_id == self.unique_id and other.raw is self.raw

    def __hash__(self) -> int:
        return hash(self.unique_id)

    # -- identity
    @property
    def id(self) -> NodeId | None:
        """Its unique_id, parsed (None for a placeholder that is no unique_id)."""
        return NodeId.read(self.unique_id)

    @property
    def name(self) -> str:
        node_id = self.id
        return str(self.raw.get("name") or (node_id.name if node_id is not None else self.unique_id))

    @property
    def resource_type(self) -> str:
        return str(self.raw.get("resource_type") or self.unique_id.partition(".")[0])

    @property
    def package(self) -> str:
        return str(self.raw.get("package_name") or "")

    @property
    def version(self) -> str | None:
        return _version(self.raw.get("version"))

    @property
    def latest_version(self) -> str | None:
        return _version(self.raw.get("latest_version"))

    @property
    def is_latest(self) -> bool:
        return self.version is None or self.version == self.latest_version

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.version is not None else self.name

    @property
    def product(self) -> ProductKey:
        """Its product key, structured, for a model, a seed or a snapshot."""
        return ProductKey(self.package, self.name, self.version)

    @property
    def key(self) -> str:
        """Its product key (``project.name[.vN]``), for a model, a seed or a snapshot."""
        return str(self.product)

    # -- properties
    @property
    def config(self) -> Mapping[str, Any]:
        config = self.raw.get("config")
        return config if isinstance(config, Mapping) else {}

    @property
    def meta(self) -> dict[str, Any]:
        return merged_meta(self.raw)

    @property
    def access(self) -> str:
        """Its access as dbt-loom reads it: the node's own ``access`` (a model's), else ``config.access`` (where
        dbt 1.11 keeps a seed's or snapshot's, a top-level ``access:`` in its YAML moved there), else protected."""
        value = self.raw.get("access") or self.config.get("access")
        return str(value) if isinstance(value, str) and value else "protected"

    @property
    def is_public(self) -> bool:
        return self.access == "public"

    @property
    def is_shareable(self) -> bool:
        """Whether another project can ref it: a model, a seed or a snapshot."""
        return self.resource_type in SHAREABLE

    @property
    def group(self) -> str | None:
        return self.raw.get("group") or None

    @property
    def description(self) -> str:
        return str(self.raw.get("description") or "")

    @property
    def columns(self) -> dict[str, Column]:
        raw = self.raw.get("columns")
        if not isinstance(raw, Mapping):
            return {}
        return {str(k): Column(str(v.get("name") or k), v) for k, v in raw.items() if isinstance(v, Mapping)}

    @property
    def constraints(self) -> list[dict[str, Any]]:
        return [c for c in self.raw.get("constraints") or [] if isinstance(c, dict)]

    @property
    def contract_enforced(self) -> bool:
        contract = self.raw.get("contract") or self.config.get("contract") or {}
        return bool(isinstance(contract, Mapping) and contract.get("enforced"))

    @property
    def depends_on(self) -> list[str]:
        depends = self.raw.get("depends_on")
        nodes = depends.get("nodes") if isinstance(depends, Mapping) else None
        return [str(n) for n in nodes or []]

    @property
    def file(self) -> str:
        """The node's file, relative to its project (``original_file_path``)."""
        return str(self.raw.get("original_file_path") or "")

    @property
    def properties_file(self) -> str | None:
        """The YAML that declares its properties (``patch_path`` without its ``project://`` prefix)."""
        patch = self.raw.get("patch_path")
        return str(patch).split("://", 1)[-1] if patch else None

    @property
    def code(self) -> str:
        """The SQL it runs: compiled when dbt compiled it, else as written."""
        return str(self.raw.get("compiled_code") or self.raw.get("raw_code") or "")

    @property
    def relation(self) -> str:
        return relation_of(self.raw)

    @property
    def source_name(self) -> str | None:
        """The source a source table belongs to (``raw`` of ``source('raw', 'orders')``)."""
        value = self.raw.get("source_name")
        return str(value) if value else None

    # -- tests
    @property
    def attached_node(self) -> str | None:
        """The node a data test is attached to (dbt's ``attached_node``)."""
        value = self.raw.get("attached_node")
        return str(value) if value else None

    @property
    def column_name(self) -> str | None:
        """The column a data test checks, when it checks one."""
        value = self.raw.get("column_name")
        return str(value) if value else None

    @property
    def test_name(self) -> str | None:
        """A generic test's name (``unique``, ``not_null``, ...; ``test_metadata.name``)."""
        meta = self.raw.get("test_metadata")
        value = meta.get("name") if isinstance(meta, Mapping) else None
        return str(value) if value else None

    @property
    def test_kwargs(self) -> Mapping[str, Any]:
        """A generic test's arguments (``test_metadata.kwargs``: ``column_name``, ``to``, ...)."""
        meta = self.raw.get("test_metadata")
        kwargs = meta.get("kwargs") if isinstance(meta, Mapping) else None
        return kwargs if isinstance(kwargs, Mapping) else {}

    @property
    def deprecation_date(self) -> str | None:
        value = self.raw.get("deprecation_date")
        return str(value) if value else None

    # -- policy (meta)
    @property
    def slo_hours(self) -> float | None:
        return slo_hours(self.meta.get("freshness_slo_hours"))

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.is_pii]

    @property
    def pii_readers(self) -> list[str] | None:
        """Domains allowed to read its PII in clear (``meta.pii_allowed_consumers``); None: no policy."""
        return names(self.meta.get("pii_allowed_consumers"))

    @property
    def allowed_consumers(self) -> list[str] | None:
        """The only domains that may read it (``meta.allowed_consumers``), or None: any domain.

        Fails closed: the key written with no value (``allowed_consumers:``), a string, or a list of
        anything but names allows no one, never everyone."""
        meta = self.meta
        if "allowed_consumers" not in meta:
            return None
        return names(meta["allowed_consumers"]) or []

    def readable_by(self, consumer: str) -> bool:
        allowed = self.allowed_consumers
        return allowed is None or consumer in allowed
