"""The mesh's domain model (Mesh, Domain, Upstream) and the one loader that builds it.

The mesh comes from ``mesh.yml`` when there is one; otherwise every dbt project below the
root is a domain. Upstreams come from the dbt Mesh declaration ``dependencies.yml`` ->
``projects:`` and, for projects migrating from dbt-loom, from ``dbt_loom.config.yml``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mesh_tools.config import (
    MESH_FILE,
    Defaults,
    DocsConfig,
    DomainGovernance,
    ExchangeConfig,
    GovernanceConfig,
    HealthConfig,
    MeshConfig,
    Owner,
    SelfServiceConfig,
    load_domain_file,
    load_mesh_config,
)
from mesh_tools.errors import ConfigError
from mesh_tools.graph import closure, find_cycle, invert, topological_order
from mesh_tools.suggestions import did_you_mean
from mesh_tools.yamlfile import YamlDoc, display_path, load_yaml

# Folders that never hold a domain: build output, installed packages, tooling.
SKIPPED_DIRS = {
    "dbt_packages",
    "dbt_modules",
    "target",
    "logs",
    "node_modules",
    "site-packages",
    "__pycache__",
    "venv",
    "env",
}
LOOM_FILE = "dbt_loom.config.yml"


@dataclass(frozen=True)
class Upstream:
    """A project whose public models a domain consumes."""

    name: str
    declared_in: str  # "file:line", for messages
    manifest_path: Path | None = None  # given by a dbt_loom file manifest


@dataclass(frozen=True)
class Domain:
    """One domain: a dbt project that owns its models and storage."""

    name: str
    path: Path
    owner: Owner | None
    description: str | None
    profile: str | None
    upstreams: tuple[Upstream, ...]
    packages_dir: Path
    target_dir: Path
    code_dirs: tuple[Path, ...]  # where refs can be written: models, tests, macros, ...
    local_packages: tuple[Path, ...]
    remote_packages: int
    dependencies_file: Path
    pins: dict[str, str] = field(default_factory=dict)
    governance: DomainGovernance = field(default_factory=DomainGovernance)

    @property
    def manifest_path(self) -> Path:
        return self.target_dir / "manifest.json"

    @property
    def upstream_names(self) -> tuple[str, ...]:
        return tuple(up.name for up in self.upstreams)


@dataclass(frozen=True)
class Mesh:
    """Every domain, their dependencies, and mesh-wide settings."""

    root: Path
    name: str
    config_path: Path | None
    domains: dict[str, Domain]  # in dependency order
    defaults: Defaults = field(default_factory=Defaults)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    docs: DocsConfig = field(default_factory=DocsConfig)
    self_service: SelfServiceConfig = field(default_factory=SelfServiceConfig)

    @property
    def docs_path(self) -> Path:
        path = Path(self.docs.path)
        return path if path.is_absolute() else self.root / path

    @property
    def health_path(self) -> Path:
        path = Path(self.health.path)
        return path if path.is_absolute() else self.root / path

    @property
    def exchange_path(self) -> Path:
        path = Path(self.exchange.path)
        return path if path.is_absolute() else self.root / path

    @property
    def order(self) -> list[str]:
        return list(self.domains)

    def upstream_graph(self) -> dict[str, set[str]]:
        return {name: set(d.upstream_names) & set(self.domains) for name, d in self.domains.items()}

    def select(self, selectors: tuple[str, ...] | list[str]) -> list[str]:
        """Domains named by dbt-like selectors (``sales``, ``sales+``, ``+marketing``), in order."""
        if not selectors:
            return self.order
        ups = self.upstream_graph()
        downs = invert(ups)
        chosen: set[str] = set()
        for raw in selectors:
            for selector in raw.split(","):
                selector = selector.strip()
                name = selector.strip("+")
                if name not in self.domains:
                    raise ConfigError(
                        f"unknown domain '{name}' in selection '{raw}'.{did_you_mean(name, self.domains)}"
                        f" Domains: {', '.join(self.domains)}."
                    )
                chosen.add(name)
                if selector.endswith("+"):
                    chosen |= closure([name], downs)
                if selector.startswith("+"):
                    chosen |= closure([name], ups)
        return [name for name in self.order if name in chosen]


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding mesh.yml, else ``start`` itself."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / MESH_FILE).is_file():
            return folder
    return start


def load_mesh(root: Path) -> Mesh:
    """Load and validate the whole mesh, or raise one ConfigError saying what to fix."""
    root = root.resolve()
    if not root.is_dir():
        raise ConfigError(f"{root}: mesh root is not a folder. Pass --root with the folder holding mesh.yml.")
    config_file = root / MESH_FILE
    config: MeshConfig | None = None
    if config_file.is_file():
        config, doc = load_mesh_config(config_file)
        name = config.name
        found = _domains_from_config(root, config, doc) if config.domains is not None else None
        defaults = config.defaults
    else:
        name, found, defaults = root.name, None, Defaults()
    exchange = config.exchange if config else ExchangeConfig()
    governance = config.governance if config else GovernanceConfig()
    if found is None:
        found = _discover(root, [root / ex for ex in (config.exclude if config else [])])
    if not found:
        raise ConfigError(
            f"{display_path(root)}: no dbt project found (no dbt_project.yml with a 'profile:' below it). "
            "Create one with `dbt init` or list domains in mesh.yml."
        )
    domains: dict[str, Domain] = {}
    for entry in found:
        domain = _load_domain(*entry)
        if domain.name in domains:
            raise ConfigError(
                f"{display_path(domain.path / 'dbt_project.yml')}: project name '{domain.name}' is already used by "
                f"{display_path(domains[domain.name].path / 'dbt_project.yml')}. "
                "Project names must be unique in a mesh."
            )
        domains[domain.name] = domain
    _check_upstreams(domains)
    order = topological_order({n: set(d.upstream_names) for n, d in domains.items()})
    return Mesh(
        root=root,
        name=name,
        config_path=config_file if config else None,
        domains={n: domains[n] for n in order},
        defaults=defaults,
        exchange=exchange,
        governance=governance,
        health=config.health if config else HealthConfig(),
        docs=config.docs if config else DocsConfig(),
        self_service=config.self_service if config else SelfServiceConfig(),
    )


_Found = tuple[Path, Owner | None, str | None, str]  # path, owner, description, declared name


def _domains_from_config(root: Path, config: MeshConfig, doc: YamlDoc) -> list[_Found]:
    found: list[_Found] = []
    seen: dict[Path, str] = {}
    for key, spec in (config.domains or {}).items():
        where = ("domains", key, "path")
        path = (root / spec.path).resolve()
        if path != root and root not in path.parents:
            raise doc.error(
                where,
                f"domain '{key}' points outside the mesh root: {spec.path}. "
                "Move the project below the root or fix the path.",
            )
        if not (path / "dbt_project.yml").is_file():
            raise doc.error(
                where,
                f"domain '{key}': no dbt_project.yml in {spec.path}. "
                "Fix the path or create the project with `dbt init`.",
            )
        if path in seen:
            raise doc.error(where, f"domains '{seen[path]}' and '{key}' point at the same folder {spec.path}.")
        seen[path] = key
        found.append((path, spec.owner, spec.description, key))
    return found


def _discover(root: Path, excluded: list[Path]) -> list[_Found]:
    found: list[_Found] = []
    excluded_set = {p.resolve() for p in excluded}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if "dbt_project.yml" in files:
            doc = load_yaml(here / "dbt_project.yml")
            data = doc.data if doc and isinstance(doc.data, dict) else {}
            if data.get("profile"):  # a project without a profile is a package, not a domain
                found.append((here, None, None, ""))
            dirs[:] = []  # a project's subfolders hold its code, not other domains
            continue
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and d not in SKIPPED_DIRS and (here / d).resolve() not in excluded_set
        )
    return found


def _load_domain(path: Path, owner: Owner | None, description: str | None, declared: str) -> Domain:
    project_doc = load_yaml(path / "dbt_project.yml")
    assert project_doc is not None
    project = project_doc.data if isinstance(project_doc.data, dict) else {}
    name = project.get("name")
    if not isinstance(name, str) or not name:
        raise project_doc.error((), "dbt_project.yml has no 'name:'. Give the project a name.")
    if declared and declared != name:
        raise ConfigError(
            f"{display_path(path / 'dbt_project.yml')}: project name '{name}' differs from its domain "
            f"name '{declared}' in mesh.yml. Use the same name in both."
        )

    def paths(key: str, default: list[str]) -> list[Path]:
        value = project.get(key, default)
        return [path / p for p in (value if isinstance(value, list) else [value])]

    code_dirs = tuple(
        p
        for key, default in (
            ("model-paths", ["models"]),
            ("test-paths", ["tests"]),
            ("macro-paths", ["macros"]),
            ("analysis-paths", ["analyses"]),
            ("snapshot-paths", ["snapshots"]),
        )
        for p in paths(key, default)
    )
    deps_doc = load_yaml(path / "dependencies.yml", required=False)
    packages_doc = load_yaml(path / "packages.yml", required=False)
    upstreams = _declared_projects(deps_doc) + _loom_upstreams(path)
    local, remote = _packages(path, packages_doc, deps_doc)
    settings = load_domain_file(path)
    return Domain(
        name=name,
        path=path,
        owner=owner,
        description=description,
        profile=project.get("profile"),
        upstreams=tuple(_dedupe(upstreams)),
        packages_dir=path / str(project.get("packages-install-path", "dbt_packages")),
        target_dir=path / str(project.get("target-path", "target")),
        code_dirs=code_dirs,
        local_packages=tuple(local),
        remote_packages=remote,
        dependencies_file=path / "dependencies.yml",
        pins=settings.pins,
        governance=settings.governance,
    )


def _declared_projects(doc: YamlDoc | None) -> list[Upstream]:
    if doc is None or doc.data is None:
        return []
    if not isinstance(doc.data, dict):
        raise doc.error((), "dependencies.yml must be a mapping with 'projects:' and/or 'packages:'.")
    projects = doc.data.get("projects") or []
    if not isinstance(projects, list):
        raise doc.error(("projects",), "'projects:' must be a list of '- name: <project>' entries.")
    out = []
    for index, entry in enumerate(projects):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise doc.error(("projects", index), "each entry under 'projects:' needs 'name: <project>'.")
        out.append(Upstream(entry["name"], f"{doc.display}:{doc.line_of(('projects', index))}"))
    return out


def _loom_upstreams(path: Path) -> list[Upstream]:
    doc = load_yaml(path / LOOM_FILE, required=False)
    if doc is None or doc.data is None:
        return []
    manifests = doc.data.get("manifests") if isinstance(doc.data, dict) else None
    if not isinstance(manifests, list):
        raise doc.error((), "dbt_loom.config.yml must have 'manifests:', a list of manifests.")
    out = []
    for index, entry in enumerate(manifests):
        loc = ("manifests", index)
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise doc.error(loc, "each manifest needs 'name: <project>'.")
        kind = entry.get("type", "file")
        if kind != "file":
            raise doc.error(
                loc + ("type",),
                f"manifest type '{kind}' is not supported; only 'file' manifests "
                "are read. Point 'config: path:' at the upstream's manifest.json.",
            )
        raw = (entry.get("config") or {}).get("path")
        if not isinstance(raw, str):
            raise doc.error(loc, "a file manifest needs 'config: path: <manifest.json>'.")
        manifest = Path(os.path.expandvars(raw))
        manifest = manifest if manifest.is_absolute() else (path / manifest)
        out.append(Upstream(entry["name"], f"{doc.display}:{doc.line_of(loc)}", manifest.resolve()))
    return out


def _dedupe(upstreams: list[Upstream]) -> list[Upstream]:
    by_name: dict[str, Upstream] = {}
    for up in upstreams:  # dependencies.yml entries come first and win over dbt_loom ones
        by_name.setdefault(up.name, up)
    return list(by_name.values())


def _packages(path: Path, *docs: YamlDoc | None) -> tuple[list[Path], int]:
    local: list[Path] = []
    remote = 0
    for doc in docs:
        if doc is None or not isinstance(doc.data, dict):
            continue
        entries = doc.data.get("packages") or []
        if not isinstance(entries, list):
            raise doc.error(("packages",), "'packages:' must be a list.")
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("local"), str):
                local.append((path / entry["local"]).resolve())
            else:
                remote += 1
    return local, remote


def _check_upstreams(domains: dict[str, Domain]) -> None:
    for domain in domains.values():
        for up in domain.upstreams:
            if up.name == domain.name:
                raise ConfigError(
                    f"{up.declared_in}: project '{domain.name}' lists itself as an upstream. Remove that entry."
                )
            if up.name not in domains and up.manifest_path is None:
                raise ConfigError(
                    f"{up.declared_in}: unknown project '{up.name}': no domain of the mesh has that name."
                    f"{did_you_mean(up.name, domains)} Known domains: {', '.join(sorted(domains))}."
                )
    cycle = find_cycle({n: set(d.upstream_names) for n, d in domains.items()})
    if cycle:
        first = next(up for up in domains[cycle[0]].upstreams if up.name == cycle[1])
        raise ConfigError(
            f"{first.declared_in}: cycle between domains: {' -> '.join(cycle)} (each consumes the next). "
            "Data must flow one way: remove one of these dependencies."
        )
