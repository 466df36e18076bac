"""Test a governance rule without dbt: a few domains declared in memory, one rule run, its findings.

In the style of dbt-bouncer's ``check_passes`` / ``check_fails``::

    from mesh_tools.governance.testing import MeshSpec, check_fails, check_passes

    mesh = MeshSpec()
    crm = mesh.domain("crm")
    crm.product("customers", columns={"customer_id": "integer", "email": {"data_type": "text", "pii": True}},
                meta={"pii_allowed_consumers": ["ads"]})
    ads = mesh.domain("ads", upstreams=["crm"])
    ads.model("audience", refs=["crm.customers"])
    check_passes(mesh, "GOV401")
    ads.model("leads", refs=["crm.internal_scores"])
    [finding] = check_fails(mesh, "GOV201")

``DomainSpec.product`` declares a public model that meets every product rule (enforced contract,
typed and described columns, an owned group, unique + not_null on its key); override what a case
needs. ``model`` declares a bare model. The manifests are shaped as dbt writes them, read through
the same ``Manifest`` and ``CheckContext`` as ``mesh check``; a plugin's own rule (a ``Rule``) runs
the same way as a built-in code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.config import DomainGovernance, GovernanceConfig
from mesh_tools.core.mesh import Domain, Mesh, Upstream
from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.registry import BUILTIN
from mesh_tools.governance.rule import Finding, Rule
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import NodeId, ProductKey

ColumnSpec = str | Mapping[str, Any] | None  # a data type, or the column's properties (``pii: True`` is meta)


def _uid(kind: str, project: str, name: str, version: Any = None, scope: str | None = None) -> str:
    return str(NodeId(kind, project, name, None if version is None else str(version), scope=scope))


def _column(name: str, spec: ColumnSpec) -> dict[str, Any]:
    props: dict[str, Any] = {"data_type": spec} if isinstance(spec, str) or spec is None else dict(spec)
    meta = dict(props.pop("meta", None) or {})
    if "pii" in props:
        meta["pii"] = props.pop("pii")
    return {
        "name": name,
        "description": props.pop("description", ""),
        "data_type": props.pop("data_type", None),
        "constraints": list(props.pop("constraints", [])),
        "meta": meta,
        "tags": [],
        **props,
    }


@dataclass
class DomainSpec:
    """One domain's project, as its manifest will describe it."""

    name: str
    upstreams: tuple[str, ...] = ()
    local_packages: tuple[str, ...] = ()  # other domains installed as local packages
    adapter: str = "duckdb"
    governance: DomainGovernance = field(default_factory=DomainGovernance)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    macros: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- declaring
    def model(
        self,
        name: str,
        *,
        access: str = "protected",
        columns: Mapping[str, ColumnSpec] | None = None,
        tests: Mapping[str, Iterable[str]] | None = None,
        refs: Iterable[str] = (),
        group: str | None = None,
        description: str = "",
        meta: Mapping[str, Any] | None = None,
        contract: bool = False,
        constraints: Iterable[Mapping[str, Any]] = (),
        sql: str = "select 1 as id",
        compiled: str | None = None,
        path: str | None = None,
        version: int | str | None = None,
        latest_version: int | str | None = None,
        deprecation_date: str | None = None,
        pre_hook: Iterable[str] = (),
        post_hook: Iterable[str] = (),
        database: str | None = None,
    ) -> dict[str, Any]:
        """A model of this domain (its raw manifest node). ``refs``: ``model`` of this domain,
        ``project.model`` or ``project.model.v2`` of another; ``tests``: column -> generic tests."""
        uid = _uid("model", self.name, name, version)
        file = path or f"models/{name}" + (f"_v{version}" if version is not None else "") + ".sql"
        node: dict[str, Any] = {
            "unique_id": uid,
            "resource_type": "model",
            "package_name": self.name,
            "name": name,
            "alias": name if version is None else f"{name}_v{version}",
            "database": database or self.name,
            "schema": "main",
            "original_file_path": file,
            "patch_path": f"{self.name}://models/schema.yml",
            "access": access,
            "group": group,
            "description": description,
            "columns": {c: _column(c, spec) for c, spec in (columns or {}).items()},
            "meta": dict(meta or {}),
            "config": {
                "meta": {},
                "contract": {"enforced": contract},
                "pre-hook": [{"sql": s, "transaction": True} for s in pre_hook],
                "post-hook": [{"sql": s, "transaction": True} for s in post_hook],
            },
            "contract": {"enforced": contract},
            "constraints": [dict(c) for c in constraints],
            "depends_on": {"nodes": [self._ref(r) for r in refs], "macros": []},
            "raw_code": sql,
            "version": version,
            "latest_version": latest_version if latest_version is not None else version,
            "deprecation_date": deprecation_date,
        }
        if compiled is not None:
            node["compiled_code"] = compiled
        self.nodes[uid] = node
        for column, names in (tests or {}).items():
            for test in names:
                self.test(uid, test, column)
        return node

    def product(
        self,
        name: str,
        *,
        columns: Mapping[str, ColumnSpec] | None = None,
        key: str | None = None,
        group: str | None = None,
        owner: Mapping[str, Any] | None = None,
        description: str | None = None,
        **model: Any,
    ) -> dict[str, Any]:
        """A public model that meets every product rule: override any part (``description=""``,
        ``contract=False``, ``tests={}``...). Columns without a description get one; ``key``
        (default: the first column) is tested unique and not_null."""
        columns = dict(columns or {"id": "integer"})
        described: dict[str, ColumnSpec] = {}
        for column, spec in columns.items():
            props = {"data_type": spec} if isinstance(spec, str) or spec is None else dict(spec)
            props.setdefault("description", f"The {column}.")
            described[column] = props
        group = group or f"{self.name}_team"
        if not any(g["name"] == group for g in self.groups.values()):
            self.group(group, owner=owner or {"name": f"{self.name} team", "email": f"{self.name}@example.com"})
        key = key or next(iter(described))
        model.setdefault("tests", {key: ["unique", "not_null"]})
        model.setdefault("contract", True)
        return self.model(
            name,
            access="public",
            columns=described,
            group=group,
            description=f"One row per {name}." if description is None else description,
            **model,
        )

    def test(self, model_uid: str, test: str, column: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """A generic data test on a model (``unique``, ``not_null``, ...)."""
        model = NodeId.parse(model_uid).name
        name = f"{test}_{model}_{column or 'model'}_{len(self.nodes)}"
        uid = _uid("test", self.name, name)
        node = {
            "unique_id": uid,
            "resource_type": "test",
            "package_name": self.name,
            "name": name,
            "original_file_path": "models/schema.yml",
            "column_name": column,
            "attached_node": model_uid,
            "test_metadata": {"name": test, "kwargs": {"column_name": column, **kwargs}},
            "depends_on": {"nodes": [model_uid], "macros": [f"macro.dbt.test_{test}"]},
            "config": {"severity": "ERROR"},
        }
        self.nodes[uid] = node
        return node

    def source(
        self,
        source_name: str,
        name: str,
        *,
        freshness: Mapping[str, Any] | None = None,
        loaded_at_field: str | None = "_loaded_at",
        meta: Mapping[str, Any] | None = None,
        external_location: str | None = None,
        relation_name: str | None = None,
        database: str | None = None,
    ) -> dict[str, Any]:
        """A source table; by default fresh within a day and with a ``loaded_at_field``."""
        uid = _uid("source", self.name, name, scope=source_name)
        node = {
            "unique_id": uid,
            "resource_type": "source",
            "package_name": self.name,
            "source_name": source_name,
            "name": name,
            "database": database or self.name,
            "schema": source_name,
            "original_file_path": "models/sources.yml",
            "relation_name": relation_name or f'"{database or self.name}"."{source_name}"."{name}"',
            "loaded_at_field": loaded_at_field,
            "freshness": dict(freshness)
            if freshness is not None
            else {"warn_after": {"count": 24, "period": "hour"}, "error_after": {"count": None, "period": None}},
            "meta": {**(meta or {}), **({"external_location": external_location} if external_location else {})},
            "source_meta": {},
            "config": {},
        }
        self.sources[uid] = node
        return node

    def group(self, name: str, owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
        group: dict[str, Any] = {
            "unique_id": _uid("group", self.name, name),
            "resource_type": "group",
            "package_name": self.name,
            "name": name,
            "owner": dict(owner or {}),
        }
        self.groups[group["unique_id"]] = group
        return group

    def macro(self, name: str, sql: str, package: str | None = None) -> dict[str, Any]:
        """A macro of this project (or of a package it installs)."""
        package = package or self.name
        macro: dict[str, Any] = {
            "unique_id": _uid("macro", package, name),
            "resource_type": "macro",
            "package_name": package,
            "name": name,
            "original_file_path": f"macros/{name}.sql",
            "macro_sql": sql,
            "depends_on": {"macros": []},
        }
        self.macros[macro["unique_id"]] = macro
        return macro

    def hook(self, sql: str, when: str = "on-run-start") -> dict[str, Any]:
        """An on-run-start / on-run-end hook (dbt's ``operation`` node)."""
        index = sum(1 for n in self.nodes.values() if n["resource_type"] == "operation")
        name = f"{self.name}-{when}-{index}"
        uid = _uid("operation", self.name, name)
        node = {
            "unique_id": uid,
            "resource_type": "operation",
            "package_name": self.name,
            "name": name,
            "original_file_path": "./dbt_project.yml",
            "raw_code": sql,
            "depends_on": {"nodes": [], "macros": []},
            "config": {},
        }
        self.nodes[uid] = node
        return node

    # -- reading
    def _ref(self, ref: str) -> str:
        if "." not in ref:
            return _uid("model", self.name, ref)
        return str(ProductKey.parse(ref).node_id)  # another project's product: ``sales.fct_orders[.v2]``

    def manifest_json(self) -> dict[str, Any]:
        """The domain's manifest.json as dbt would write it (the parts the mesh reads)."""
        return {
            "metadata": {"project_name": self.name, "adapter_type": self.adapter, "dbt_version": "1.9.0"},
            "nodes": self.nodes,
            "sources": self.sources,
            "groups": self.groups,
            "macros": self.macros,
            "unit_tests": {},
            "exposures": {},
            "child_map": {},  # the model derives it from depends_on
            "parent_map": {},
        }

    def manifest(self) -> Manifest:
        return Manifest.of(self.manifest_json(), self.name)


@dataclass
class MeshSpec:
    """A mesh of in-memory domains (nothing is read from or written to ``root``)."""

    root: Path = Path("/nonexistent-mesh")
    domains: dict[str, DomainSpec] = field(default_factory=dict)
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)

    def domain(
        self, name: str, *, upstreams: Iterable[str] = (), local_packages: Iterable[str] = (), adapter: str = "duckdb"
    ) -> DomainSpec:
        spec = DomainSpec(name, tuple(upstreams), tuple(local_packages), adapter)
        self.domains[name] = spec
        return spec

    def mesh(self) -> Mesh:
        """The ``Mesh`` (domains in declaration order) the rules see."""
        domains = {}
        for name, spec in self.domains.items():
            path = self.root / name
            domains[name] = Domain(
                name=name,
                path=path,
                owner=None,
                description=None,
                profile=None,
                upstreams=tuple(Upstream(u, f"{name}/dependencies.yml") for u in spec.upstreams),
                packages_dir=path / "dbt_packages",
                target_dir=path / "target",
                code_dirs=(path / "models",),
                local_packages=tuple(self.root / p for p in spec.local_packages),
                remote_packages=0,
                dependencies_file=path / "dependencies.yml",
                governance=spec.governance,
            )
        return Mesh(self.root, "test-mesh", None, domains, governance=self.governance)

    def context(
        self,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        contracts: Mapping[str, Any] | None = None,
        loaded: Iterable[str] | None = None,
    ) -> CheckContext:
        """What a rule sees: every domain's manifest (or only the ``loaded`` ones, as the publish gate loads a
        domain and its upstreams), ``options`` by rule code, saved ``contracts``."""
        names = set(self.domains if loaded is None else loaded)
        manifests = {name: spec.manifest() for name, spec in self.domains.items() if name in names}
        ctx = CheckContext(self.mesh(), manifests)
        ctx.options = {code: dict(values) for code, values in (options or {}).items()}
        ctx.baseline_contracts = dict(contracts or {})
        return ctx


def run_rule(mesh: MeshSpec, rule: str | Rule, **context: Any) -> list[Finding]:
    """The findings of one rule (a built-in code, or a plugin's ``Rule``) over the mesh."""
    chosen = BUILTIN[rule] if isinstance(rule, str) else rule
    return list(chosen.check(mesh.context(**context)))


def check_passes(mesh: MeshSpec, rule: str | Rule, **context: Any) -> None:
    """Assert the rule finds nothing."""
    found = run_rule(mesh, rule, **context)
    assert not found, f"{_code(rule)} should pass, found:\n" + "\n".join(f"  {f.domain}: {f.message}" for f in found)


def check_fails(mesh: MeshSpec, rule: str | Rule, **context: Any) -> list[Finding]:
    """Assert the rule finds something; return its findings."""
    found = run_rule(mesh, rule, **context)
    assert found, f"{_code(rule)} should fail, found nothing"
    return found


def _code(rule: str | Rule) -> str:
    return rule if isinstance(rule, str) else rule.code
