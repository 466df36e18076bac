"""Data contracts in the Open Data Contract Standard (ODCS v3, Bitol): one per data product version.

Generated from what the mesh already holds: the model's properties (columns, types, constraints,
descriptions, PII policy, SLO, owner) from its manifest node, its data tests as quality checks, and
the release (id, hashes, rows, the location of its file) from the descriptor. Validated against the
JSON schema the standard publishes (the ``open-data-contract-standard`` package ships it).

Two places hold them: beside each release's descriptor (``contract.odcs.yaml``, written once with the
release) and wherever ``mesh contracts export`` writes the current ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from mesh_tools.core.credentials import url_place
from mesh_tools.model.nodes import Node
from mesh_tools.model.release import ReleaseDescriptor

API_VERSION = "v3.2.0"
CONTRACT_FILE = "contract.odcs.yaml"  # beside each release's descriptor
CONTRACT_SUFFIX = ".odcs.yaml"
VENDOR = "mesh-tools"  # the vendor of our custom properties (ODCS: a stable lowercase identifier)

_LOGICAL = (  # (pattern on the lower-cased type, ODCS logicalType); first match wins
    (r"\[\]$|^(array|list)\b|^array<", "array"),
    # a map is an object of keys to values (ODCS's own `map` needs key and value definitions we do not have)
    (r"^(struct|row|record|union|map)\b|^(struct|map)[<(]|^json", "object"),
    (r"^bool", "boolean"),
    (r"^(timestamp|datetime)", "timestamp"),
    (r"^date$", "date"),
    (r"^time\b", "time"),
    (r"^(u?(tiny|small|big|huge)?int|integer|int\d|serial|bigserial|long|short|byte)\b", "integer"),
    (r"^(decimal|numeric|double|float|real|number)", "number"),
    (r"^(varchar|char|character|text|string|uuid|enum|bpchar|nvarchar|clob)", "string"),
)


def logical_type(physical: str | None) -> str:
    """The ODCS logical type of an engine's type (``BIGINT`` → integer). ODCS requires one on every property
    and names no binary, interval or unknown type: those are ``string`` (the physicalType says what they are)."""
    text = (physical or "").strip().lower()
    for pattern, logical in _LOGICAL:
        if re.search(pattern, text):
            return logical
    return "string"


def unquote(name: str) -> str:
    """A column name as dbt's tests may quote it (``"Order ID"``, `` `x` ``), bare."""
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in '"`':
        return name[1:-1].replace(name[0] * 2, name[0])
    if len(name) >= 2 and name[0] == "[" and name[-1] == "]":
        return name[1:-1]
    return name


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _filtered(name: str | None, table: str, column: str | None, where: str, kwargs: Mapping[str, Any]) -> str | None:
    """A dbt test limited by ``where`` as the SQL check of the same rows (None: a test we cannot restate)."""
    rows = f"FROM {table} WHERE ({where})"
    if column is None:
        return None
    col = _ident(column)
    if name == "not_null":
        return f"SELECT COUNT(*) {rows} AND {col} IS NULL"
    if name == "unique":
        return f"SELECT COUNT(*) FROM (SELECT {col} {rows} AND {col} IS NOT NULL GROUP BY {col} HAVING COUNT(*) > 1)"
    if name == "accepted_values" and isinstance(kwargs.get("values"), list) and kwargs["values"]:
        values = ", ".join(_literal(v) for v in kwargs["values"])
        return f"SELECT COUNT(*) {rows} AND {col} NOT IN ({values})"
    return None


def contract_id(product: str) -> str:
    """An ODCS id (``^[A-Za-z0-9_-]+$``) for a product key: ``sales.fct_orders.v2`` → ``sales-fct_orders-v2``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", product.replace(".", "-"))


def contract_version(version: str | None) -> str:
    """The contract's version follows the model's: v2 → 2.0.0 (a breaking change needs a new model
    version, GOV301); an unversioned model's contract is 1.0.0."""
    if version is None:
        return "1.0.0"
    return f"{version}.0.0" if re.fullmatch(r"\d+", version) else str(version)


def _custom(props: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"property": k, "value": v} for k, v in props.items() if v not in (None, "", [], {})]


def _quality(test: Node, masked: bool, table: str, column: str | None) -> dict[str, Any] | None:
    """One dbt data test as an ODCS quality check, promising what the test checks (None: a check a masked
    column cannot keep, its values being NULL for consumers)."""
    name, kwargs = test.test_name, test.test_kwargs
    base: dict[str, Any] = {"name": test.name}
    severity = (test.config or {}).get("severity")
    if isinstance(severity, str):
        base["severity"] = severity.lower()
    if masked and name in ("not_null", "unique", "accepted_values"):
        return None
    where = (test.config or {}).get("where")
    if isinstance(where, str) and where.strip():  # the same rows as dbt's test, no more
        query = _filtered(name, table, column, where.strip(), kwargs)
        if query is not None:
            return {**base, "type": "sql", "query": query, "mustBe": 0,
                    "description": f"dbt test `{name}` on the rows where {where.strip()}"}  # fmt: skip
        base["description"] = f"dbt's test checks only the rows where {where.strip()}."
    if name == "not_null":
        return None if masked else {**base, "type": "library", "metric": "nullValues", "mustBe": 0,
                                    "dimension": "completeness"}  # fmt: skip
    if name == "unique":
        return None if masked else {**base, "type": "library", "metric": "duplicateValues", "mustBe": 0,
                                    "dimension": "uniqueness"}  # fmt: skip
    if name == "accepted_values" and isinstance(kwargs.get("values"), list):
        values = [v for v in kwargs["values"] if isinstance(v, str | int | float | bool)]
        return {**base, "type": "library", "metric": "invalidValues", "arguments": {"validValues": values},
                "mustBe": 0, "dimension": "conformity"}  # fmt: skip
    if name == "relationships":
        target = str(kwargs.get("to") or "").strip()
        field = kwargs.get("field")
        return {**base, "type": "text", "dimension": "consistency",
                "description": f"Every value has a match in {target}{f'.{field}' if field else ''} (dbt test "
                               f"`relationships`)."}  # fmt: skip
    description = str(test.raw.get("description") or "") or f"dbt data test `{name or test.name}`"
    if base.get("description"):
        description = f"{description}. {base['description']}"
    return {**base, "type": "custom", "engine": "dbt", "implementation": test.unique_id, "description": description}


def _own_quality(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """ODCS checks a team adds for the contract alone (``meta: {odcs_quality: [...]}`` on the model or a
    column): checks dbt does not run, which datacontract-cli does (`mesh check --datacontract`)."""
    items = meta.get("odcs_quality")
    return [dict(q) for q in items if isinstance(q, Mapping)] if isinstance(items, list) else []


def _constraint_columns(node: Node, kind: str) -> list[str]:
    """Columns a model-level constraint of ``kind`` names (``primary_key: [a, b]``)."""
    out: list[str] = []
    for constraint in node.constraints:
        if constraint.get("type") == kind:
            out += [str(c) for c in constraint.get("columns") or []]
    return out


@dataclass(frozen=True)
class _Columns:
    """What the contract's column properties are drawn from: the release's columns, the model's, its tests."""

    descriptor: ReleaseDescriptor
    node: Node | None
    by_column: dict[str, list[Node]]
    physical: dict[str, str]
    parquet: dict[str, str | None]
    masked: set[str]
    primary: list[str]
    unique: set[str]

    @classmethod
    def of(cls, d: ReleaseDescriptor, node: Node | None, column_tests: dict[str, list[Node]]) -> _Columns:
        return cls(
            descriptor=d,
            node=node,
            by_column=column_tests,
            physical={c.name.lower(): c.type for c in d.columns},
            parquet={c.name.lower(): c.parquet_type for c in d.columns},
            masked={c.lower() for c in d.pii_columns},
            primary=[c.lower() for c in _constraint_columns(node, "primary_key")] if node else [],
            unique={c.lower() for c in _constraint_columns(node, "unique")} if node else set(),
        )

    def names(self) -> list[str]:
        """The declared columns in their order, then any the release has beyond them."""
        d = self.descriptor
        names = [c.name for c in d.contract.columns] or [c.name for c in d.columns]
        return names + [c.name for c in d.columns if c.name not in names]

    def property(self, column_name: str) -> dict[str, Any]:
        """The ODCS property of one column."""
        d, key = self.descriptor, column_name.lower()
        node_columns = self.node.columns if self.node else {}
        declared = next((c for c in d.contract.columns if c.name.lower() == key), None)
        column = node_columns.get(column_name) or next((c for n, c in node_columns.items() if n.lower() == key), None)
        kinds = {str(c.get("type")) for c in (declared.constraints if declared else [])}
        checks = self.by_column.get(key, [])
        prop: dict[str, Any] = {"name": column_name}
        physical_type = self.physical.get(key) or (declared.data_type if declared else None)
        prop["logicalType"] = logical_type(physical_type or (declared.data_type if declared else None))
        if physical_type:
            prop["physicalType"] = physical_type
        description = (column.description if column else "") or (declared.description if declared else "")
        if description:
            prop["description"] = description
        masked = key in self.masked
        if masked:  # NULL in the file every consumer reads: not required, not unique there
            prop["classification"] = "pii"
            prop["tags"] = ["pii"]
        else:
            prop.update(self._keys(key, kinds, {t.test_name for t in checks}))
        if ("primary_key" in kinds or key in self.primary) and not masked:
            prop["primaryKey"] = True
            prop["primaryKeyPosition"] = self.primary.index(key) + 1 if key in self.primary else 1
        quality = [q for q in (_quality(t, masked, d.model, column_name) for t in checks) if q]
        quality += _own_quality(column.meta if column is not None else {})
        if quality:
            prop["quality"] = quality
        extra: dict[str, Any] = {
            "parquetType": self.parquet.get(key) if self.parquet.get(key) != physical_type else None
        }
        if declared is not None:  # what dbt declares, so a later check compares like with like (GOV301)
            extra["dbtDataType"] = declared.data_type
        if masked:
            extra["masked"] = True
            extra["piiReaders"] = next((f.readers for f in d.files if f.readers), None)
        items = _custom(extra)
        if declared is not None:
            items.append({"property": "dbtConstraints", "value": sorted(kinds - {"None"})})
        if items:
            prop["customProperties"] = [{**item, "vendor": VENDOR} for item in items]
        return prop

    def _keys(self, key: str, kinds: set[str], test_names: set[str | None]) -> dict[str, Any]:
        """``required`` and ``unique`` of an unmasked column, from its constraints, tests and model constraints."""
        out: dict[str, Any] = {}
        if "not_null" in kinds or "primary_key" in kinds or "not_null" in test_names or key in self.primary:
            out["required"] = True
        if {"unique"} & (kinds | test_names) or key in self.unique or ("primary_key" in kinds and not self.primary):
            out["unique"] = True
        return out


def _split_tests(tests: Iterable[Node]) -> tuple[dict[str, list[Node]], list[Node]]:
    """Data tests by the (lower-cased) column they test, and the table-level ones."""
    by_column: dict[str, list[Node]] = {}
    table_tests: list[Node] = []
    for test in tests:
        column = test.column_name or test.test_kwargs.get("column_name")
        (by_column.setdefault(unquote(str(column)).lower(), []) if column else table_tests).append(test)
    return by_column, table_tests


def _schema_object(
    d: ReleaseDescriptor, node: Node | None, columns: _Columns, table_tests: list[Node]
) -> dict[str, Any]:
    """The contract's one schema object: the product's table, its columns and table-level quality."""
    obj: dict[str, Any] = {"name": d.model, "logicalType": "object", "physicalType": "table"}
    if d.description:
        obj["description"] = d.description
    if d.warehouse is None:
        obj["physicalName"] = d.model
    else:
        obj["physicalName"] = f"{d.warehouse.releases_schema}.{d.warehouse.table}"
    obj["properties"] = [columns.property(name) for name in columns.names()]
    table_quality = [q for q in (_quality(t, False, d.model, None) for t in table_tests) if q]
    table_quality += _own_quality(node.meta if node is not None else {})
    if table_quality:
        obj["quality"] = table_quality
    return obj


def _description(d: ReleaseDescriptor) -> dict[str, Any]:
    """How to use the product (its ref), its purpose and its deprecation."""
    usage = f"{{{{ ref('{d.project}', '{d.model}'{f', v={d.version}' if d.version is not None else ''}) }}}}"
    description: dict[str, Any] = {"usage": f"In a consumer's dbt project: {usage}"}
    if d.description:
        description["purpose"] = d.description
    if d.deprecation_date:
        description["limitations"] = f"Deprecated: consumers must move off it by {d.deprecation_date}."
    return description


def _team(d: ReleaseDescriptor) -> dict[str, Any]:
    """``team`` and ``support`` from the product's owner (nothing when it has none)."""
    out: dict[str, Any] = {}
    owner = d.owner
    if owner.group or owner.name or owner.email:
        member = {"username": owner.email or owner.name or owner.group, "role": "owner"}
        if owner.name:
            member["name"] = owner.name
        out["team"] = {"name": owner.group or d.project, "members": [member]}
    if owner.email:
        out["support"] = [{"channel": "email", "url": f"mailto:{owner.email}", "tool": "email"}]
    return out


def _release_properties(d: ReleaseDescriptor) -> list[dict[str, Any]]:
    """The contract's custom properties: what the release is (id, rows, digest, build, tests, dbt's contract)."""
    digest = next((f.sha256 for f in d.files if f.readers is None), None)
    released = d.release_id != "unreleased"
    items = _custom({
        "releaseId": d.release_id if released else None,
        "rowCount": d.row_count if released else None,
        "sha256": digest,
        "contractHash": d.contract_hash,
        "contractEnforced": d.contract.enforced,
        "dbtNode": d.node,
        "engine": d.engine,
        "latestVersion": d.latest_version,
        "producedAt": d.produced_at,
        "builtAt": d.build.built_at,
        "dbtInvocationId": d.build.invocation_id,
        "testsPassed": d.tests.passed if released else None,
        "testsFailed": d.tests.failed if released else None,
        "deprecationDate": d.deprecation_date,
        "dbtModelConstraints": sorted({str(c.get("type")) for c in d.contract.constraints}),
    })  # fmt: skip
    items.append({"property": "dbtColumns", "value": [c.name for c in d.contract.columns]})
    return [{**item, "vendor": VENDOR} for item in items]


def build_contract(
    descriptor: ReleaseDescriptor | None,
    node: Node | None,
    tests: Iterable[Node] = (),
    server: dict[str, Any] | None = None,
    status: str | None = None,
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ODCS v3 contract of one product version: of a release (``descriptor``), or of a model not
    released yet (``node`` alone; ``owner``: its group's owner).

    ``node``: the model's manifest node (descriptions, tests, SLO); without it the descriptor's contract
    stands in. ``server``: where the release can be read (an ODCS server).
    """
    if descriptor is None:
        if node is None:
            raise ValueError("a contract needs a release or a model")
        descriptor = proposed_descriptor(node, owner or {})
        status = status or "proposed"
    d = descriptor
    column_tests, table_tests = _split_tests(tests)
    contract: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "DataContract",
        "id": contract_id(d.product),
        "name": d.product,
        "version": contract_version(d.version),
        "status": status or ("deprecated" if d.deprecation_date else "active"),
        "domain": d.project,
    }
    if node is not None and isinstance(node.raw.get("tags"), list) and node.raw["tags"]:
        contract["tags"] = [str(t) for t in node.raw["tags"]]
    contract["description"] = _description(d)
    if server:
        contract["servers"] = [server]
    contract["schema"] = [_schema_object(d, node, _Columns.of(d, node, column_tests), table_tests)]
    contract.update(_team(d))
    slo = node.slo_hours if node is not None else None
    if slo:
        contract["slaProperties"] = [{
            "property": "latency", "value": slo, "unit": "h",
            "description": f"The product's data is at most {slo:g} hours old (meta.freshness_slo_hours).",
        }]  # fmt: skip
    contract["customProperties"] = _release_properties(d)
    if d.produced_at:
        contract["contractCreatedTs"] = d.produced_at
    return contract


def proposed_descriptor(node: Node, owner: Mapping[str, Any]) -> ReleaseDescriptor:
    """What a release of ``node`` would say before it has data: its contract, owner and policy, no rows."""
    from mesh_tools.model.release import Contract, Owner

    contract = Contract.of(node)
    return ReleaseDescriptor(
        product=node.key, project=node.package, model=node.name, version=node.version,
        latest_version=node.latest_version, node=node.unique_id, release_id="unreleased",
        produced_at="", description=node.description,
        owner=Owner(group=node.group, name=owner.get("name"), email=owner.get("email")),
        deprecation_date=node.deprecation_date, contract=contract, contract_hash=contract.fingerprint(),
        row_count=0, files=[], pii_columns=node.pii_columns,
    )  # fmt: skip


def _props(items: Any) -> dict[str, Any]:
    return {str(i.get("property")): i.get("value") for i in items or [] if isinstance(i, Mapping)}


def baseline_of(contract: Mapping[str, Any]) -> dict[str, Any]:
    """An ODCS contract as the contract GOV301 compares a model with (``Contract.model_dump()``'s shape).

    From a contract this tool wrote (``dbtColumns``): the columns dbt declared, with the types and
    constraints dbt declared. From any other: every property, typed by ``physicalType`` (else
    ``logicalType``), constrained by ``required``, ``unique`` and ``primaryKey``; not enforced."""
    top = _props(contract.get("customProperties"))
    ours = isinstance(top.get("dbtColumns"), list)
    declared = {str(c).lower() for c in top.get("dbtColumns") or []}
    objects = [o for o in contract.get("schema") or [] if isinstance(o, Mapping)]
    columns = []
    for prop in (objects[0].get("properties") or []) if objects else []:
        if not isinstance(prop, Mapping) or not prop.get("name"):
            continue
        if ours and str(prop["name"]).lower() not in declared:
            continue  # a column of the data dbt's contract does not declare: nothing was promised of it
        extra = _props(prop.get("customProperties"))
        if ours:
            kinds = list(extra.get("dbtConstraints") or [])
            data_type = extra.get("dbtDataType")
        else:
            kinds = [k for k, on in (("not_null", prop.get("required")), ("unique", prop.get("unique")),
                                     ("primary_key", prop.get("primaryKey"))) if on]  # fmt: skip
            data_type = prop.get("physicalType") or prop.get("logicalType")
        columns.append({"name": str(prop["name"]), "data_type": data_type,
                        "constraints": [{"type": k} for k in kinds]})  # fmt: skip
    return {
        "enforced": bool(top.get("contractEnforced", False)),
        "columns": columns,
        "constraints": [{"type": k} for k in top.get("dbtModelConstraints") or []],
        "release": top.get("releaseId"),
        "foreign": not ours,
    }


def local_server(path: str, environment: str | None = None) -> dict[str, Any]:
    server = {"server": "exchange", "type": "local", "path": path, "format": "parquet"}
    return {**server, "environment": environment} if environment else server


def s3_server(location: str, endpoint: str | None = None, environment: str | None = None) -> dict[str, Any]:
    """A release file in an object store, as an ODCS server: where it is, never who may read it (the user,
    password and query of ``AWS_ENDPOINT_URL`` are the reader's own, so they are left out)."""
    server: dict[str, Any] = {"server": "exchange", "type": "s3", "location": url_place(location), "format": "parquet"}
    if endpoint:
        server["endpointUrl"] = url_place(endpoint)
    return {**server, "environment": environment} if environment else server


@cache
def _schema() -> dict[str, Any]:
    from importlib.resources import files

    return json.loads((files("open_data_contract_standard") / "schema.json").read_text(encoding="utf-8"))


@cache
def _validator() -> Any:
    import jsonschema

    schema = _schema()
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def schema_problems(contract: Any) -> list[str]:
    """Every way ``contract`` breaks the ODCS JSON schema (empty: valid), each with its location."""
    validator = _validator()
    out = []
    for error in sorted(validator.iter_errors(contract), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        out.append(f"{where}: {error.message}")
    return out


def to_yaml(contract: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(contract, sort_keys=False, allow_unicode=True, width=1000)
