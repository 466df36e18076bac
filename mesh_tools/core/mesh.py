"""The mesh's domain model (Mesh, Domain, Upstream) and the one loader that builds it.

The mesh comes from ``mesh.yml`` when there is one; otherwise every dbt project below the
root is a domain. Upstreams come from the dbt Mesh declaration ``dependencies.yml`` ->
``projects:`` and, for projects migrating from dbt-loom, from ``dbt_loom.config.yml``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mesh_tools.core.config import (
    MESH_FILE,
    Defaults,
    DocsConfig,
    DomainGovernance,
    EnvironmentSettings,
    ExchangeConfig,
    GovernanceConfig,
    HealthConfig,
    MeshConfig,
    Owner,
    SelfServiceConfig,
    load_domain_file,
    load_mesh_config,
)
from mesh_tools.core.errors import ConfigError, display_path
from mesh_tools.core.graph import find_cycle, topological_order
from mesh_tools.core.paths import is_within, require_writable, safe_name
from mesh_tools.core.selection import Criterion, Selection
from mesh_tools.core.suggestions import did_you_mean
from mesh_tools.core.yamlfile import YamlDoc, comment_spans, load_yaml, read_text

# The folder a Spark cluster on another machine shares with the mesh (the same files at the same paths). With an
# object-store exchange and no `exchange.cache` in mesh.yml, the verified cache lives below it, so the cluster
# reads the bytes the mesh checked and writes the releases it stages there (dbt/engines/spark_cluster.py checks).
SHARED_DIR_ENV = "MESH_SPARK_SHARED_DIR"
SHARED_CACHE_DIR = "mesh-cache"

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
    manifest_path: Path | None = None  # an upstream outside the mesh, known by a dbt_loom file manifest
    optional: bool = False  # a dbt_loom manifest marked `optional: true`
    label: str | None = None  # the dbt_loom manifest's own `name:` (a free label)
    excluded_packages: tuple[str, ...] = ()  # dbt_loom: packages whose models are not read from the manifest
    remote: bool = False  # a project built elsewhere, known by the interface it published in the object store
    included_packages: tuple[str, ...] = ()  # dbt_loom: only these packages' models are read


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
    remote_package_names: tuple[str, ...] = ()  # hub and git packages, as declared
    pins: dict[str, str] = field(default_factory=dict)
    environments: dict[str, EnvironmentSettings] = field(default_factory=dict)
    governance: DomainGovernance = field(default_factory=DomainGovernance)
    data_dirs: tuple[Path, ...] = ()  # seeds and docs: parsed by dbt, no refs in them
    # a reader's parse of the current files, outside target/, read instead of target/'s stale manifest
    parsed_manifest: Path | None = None

    # Where dbt writes the domain's artifacts (its target-path): the one place their names are written.
    @property
    def manifest_path(self) -> Path:
        return self.parsed_manifest or self.target_dir / "manifest.json"

    @property
    def run_results_path(self) -> Path:
        return self.target_dir / "run_results.json"

    @property
    def sources_path(self) -> Path:
        """`dbt source freshness` results."""
        return self.target_dir / "sources.json"

    @property
    def docs_dir(self) -> Path:
        """Where `mesh docs --catalog` has dbt write `docs generate` (beside the build's artifacts)."""
        return self.target_dir / "docs"

    @property
    def catalog_paths(self) -> tuple[Path, ...]:
        """The catalog.json files, most useful first: ours (``docs_dir``), then a plain `dbt docs generate`."""
        return (self.docs_dir / "catalog.json", self.target_dir / "catalog.json")

    @property
    def measurements_path(self) -> Path:
        """What a build that did not publish measured of its products (row counts, keys, columns)."""
        return self.target_dir / "mesh_measurements.json"

    @property
    def stages_dir(self) -> Path:
        """A staged build's files (a domain of a cycle): its peers' placeholder manifests, and the run results of
        its earlier stages (``stage-<n>.run_results.json``), which its last stage's run_results.json does not hold."""
        return self.target_dir / "mesh-stages"

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
    notes: tuple[str, ...] = ()  # what the loader ignored, where and why (shown by `mesh doctor` and builds)
    defaults: Defaults = field(default_factory=Defaults)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    docs: DocsConfig = field(default_factory=DocsConfig)
    self_service: SelfServiceConfig = field(default_factory=SelfServiceConfig)
    profiles_dir: Path | None = None  # `mesh --profiles-dir`: where dbt reads profiles.yml for every domain

    @property
    def docs_path(self) -> Path:
        path = Path(self.docs.path)
        return path if path.is_absolute() else self.root / path

    @property
    def health_path(self) -> Path:
        path = Path(os.path.expanduser(self.health.path))
        return Path(os.path.normpath(path if path.is_absolute() else self.root / path))

    def anchor(self, folder: Path) -> Path:
        """Where a write toward ``folder`` starts following no symbolic link: the mesh root when ``folder`` lies
        below it by name (``.mesh/``, the health folder: no folder on the way may be a link), else ``folder``
        itself (a place of the user's choosing, which may be one)."""
        return self.root if Path(os.path.normpath(folder)).is_relative_to(self.root) else folder

    @property
    def exchange_url(self) -> str | None:
        """The object store the exchange lives in (``MESH_EXCHANGE_URL``, else mesh.yml ``exchange.url``), or None."""
        return os.environ.get("MESH_EXCHANGE_URL") or self.exchange.url

    @property
    def exchange_path(self) -> Path:
        """The exchange's folder; with an object store, the local cache of what was read from it: mesh.yml's
        ``exchange.cache``, else ``<MESH_SPARK_SHARED_DIR>/mesh-cache/<mesh name>`` when that names a folder
        (a cluster on another machine reads the cache there), else ``.mesh/exchange-cache``."""
        shared = shared_cache(self.name)
        if self.exchange_url and shared is not None and "cache" not in self.exchange.model_fields_set:
            return shared
        path = Path(self.exchange.cache if self.exchange_url else self.exchange.path)
        return path if path.is_absolute() else self.root / path

    @property
    def order(self) -> list[str]:
        return list(self.domains)

    def upstream_graph(self) -> dict[str, set[str]]:
        return {name: set(d.upstream_names) & set(self.domains) for name, d in self.domains.items()}

    def require_writable(self, names: list[str], command: str) -> None:
        """StorageError (exit 3) naming the first domain folder among ``names`` this process cannot write:
        dbt writes its artifacts, logs and installed packages there, so the command could only fail midway."""
        for name in names:
            domain = self.domains[name]
            for folder in dict.fromkeys((domain.path, domain.target_dir, domain.packages_dir)):
                require_writable(
                    folder,
                    f"the folder of domain '{name}'",
                    f"`mesh {command}` writes dbt's artifacts (target/), logs and stub packages there",
                )

    def select(
        self, selectors: tuple[str, ...] | list[str] = (), exclude: tuple[str, ...] | list[str] = (),
        command: str = "this command",
    ) -> list[str]:  # fmt: skip
        """Domains named by dbt's selection grammar (core/selection.py: ``sales``, ``sales+``, ``2+sales``,
        ``@sales``, ``domain:sales``, ``owner:NAME``, comma for an intersection), minus ``exclude``, in order.
        Everything when nothing is given. SelectionError for an unknown name (with the closest one) or for a
        model-level selection, which only the commands that run models take."""
        from mesh_tools.core.selection import parse_selection

        selection = parse_selection(selectors, exclude)
        if selection.empty:
            return self.order
        return self.select_parsed(selection, command)

    def select_parsed(self, selection: Selection, command: str = "this command") -> list[str]:
        """``select`` for a parsed selection."""
        from mesh_tools.core.selection import SelectionError, evaluate, nothing_selected

        model = next((c for c in selection.criteria() if c.model_level), None)
        if model is not None:
            raise SelectionError(
                f"'{model.text}' names models; {command} selects whole domains (a domain's name, 'domain:NAME', "
                "'owner:NAME', with + and @). Model-level selection across domains is for `mesh build`."
            )
        chosen = evaluate(selection, self.upstream_graph(), self.domains_named)
        if not chosen:
            raise nothing_selected(selection, "domain")
        return [name for name in self.order if name in chosen]

    def domains_named(self, criterion: Criterion) -> set[str]:
        """The domains a criterion's method and value name (before its + and @)."""
        from mesh_tools.core.selection import SelectionError

        if criterion.method == "owner":
            found = {n for n, d in self.domains.items() if d.owner is not None and any(
                criterion.matches(v) for v in (d.owner.name, d.owner.email, d.owner.label()) if v)}  # fmt: skip
            if not found:
                owners = sorted({d.owner.label() for d in self.domains.values() if d.owner is not None})
                raise SelectionError(
                    f"no domain is owned by '{criterion.value}' (selection '{criterion.text}')."
                    + (f" Owners: {', '.join(owners)}." if owners else " No domain names an owner.")
                )
            return found
        found = {n for n in self.domains if criterion.matches(n)}
        if not found:
            name = criterion.value
            raise SelectionError(
                f"unknown domain '{name}' in selection '{criterion.text}'.{did_you_mean(name, self.domains)}"
                f" Domains: {', '.join(self.domains)}."
            )
        return found


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding mesh.yml, else ``start`` itself."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / MESH_FILE).is_file():
            return folder
    return start


def load_mesh(root: Path, *, allow_empty: bool = False) -> Mesh:
    """Load and validate the whole mesh, or raise one ConfigError saying what to fix.

    ``allow_empty``: a mesh without any domain yet is a mesh (for `mesh init` and `mesh new-domain`, which
    start one from an empty folder); every other command needs a domain to work on.
    """
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
    if not found and not allow_empty:
        raise ConfigError(
            f"{display_path(root)}: no dbt project found (no dbt_project.yml with a 'profile:' below it). "
            "Create a domain with `mesh new-domain NAME`, or run from the folder that holds your dbt projects."
        )
    folders: dict[Path, str] = {}
    for path, *_ in found:
        folders[path.resolve()] = _project_name(path)
    notes: list[str] = []
    domains: dict[str, Domain] = {}
    for entry in found:
        domain = _load_domain(*entry, folders=folders, notes=notes)
        if domain.name in domains:
            raise ConfigError(
                f"{display_path(domain.path / 'dbt_project.yml')}: project name '{domain.name}' is already used by "
                f"{display_path(domains[domain.name].path / 'dbt_project.yml')}. "
                "Project names must be unique in a mesh."
            )
        domains[domain.name] = domain
    remote = bool(os.environ.get("MESH_EXCHANGE_URL") or exchange.url)
    domains = _check_upstreams(domains, notes, remote)
    _check_exchange_place(root, exchange, domains, config_file if config else None)
    order = topological_order({n: set(d.upstream_names) & set(domains) for n, d in domains.items()})
    mesh = Mesh(
        root=root,
        name=name,
        config_path=config_file if config else None,
        domains={n: domains[n] for n in order},
        notes=tuple(dict.fromkeys(notes)),
        defaults=defaults,
        exchange=exchange,
        governance=governance,
        health=config.health if config else HealthConfig(),
        docs=config.docs if config else DocsConfig(),
        self_service=config.self_service if config else SelfServiceConfig(),
    )
    _check_health_place(mesh, doc.line_of(("health", "path")) if config else None)
    return mesh


_Found = tuple[Path, Owner | None, str | None, str]  # path, owner, description, declared name


def shared_cache(mesh_name: str) -> Path | None:
    """``<MESH_SPARK_SHARED_DIR>/mesh-cache/<mesh name>``, or None when the variable names no existing folder by an
    absolute path (a mount that is missing must not turn into a local folder of the same name)."""
    shared = os.environ.get(SHARED_DIR_ENV)
    if not shared or not os.path.isabs(shared) or not os.path.isdir(shared):
        return None
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", mesh_name).strip("._") or "mesh"
    return Path(os.path.normpath(shared)) / SHARED_CACHE_DIR / name


def _check_exchange_place(
    root: Path, exchange: ExchangeConfig, domains: dict[str, Domain], config: Path | None
) -> None:
    """The exchange holds every domain's releases and retention deletes in it: it must be a folder
    of its own, never the mesh root (or around it), never inside or around a domain (a single
    project at the mesh root keeps the default exchange inside its folder)."""
    path = Path(exchange.path)
    path = (path if path.is_absolute() else root / path).resolve()
    where = display_path(config) if config else display_path(root)
    if is_within(root, path):
        raise ConfigError(
            f"{where}: exchange.path '{exchange.path}' is the mesh root or holds it; the exchange must be a folder "
            "of its own (the default is 'exchange')."
        )
    for name, domain in domains.items():
        if is_within(domain.path, path) or (is_within(path, domain.path) and domain.path != root):
            raise ConfigError(
                f"{where}: exchange.path '{exchange.path}' overlaps domain '{name}' ({display_path(domain.path)}); "
                "the exchange must be a folder of its own (the default is 'exchange')."
            )


def _check_health_place(mesh: Mesh, line: int | None) -> None:
    """The health folder holds the history (a DuckDB file) and the reports, written on every build: never the
    mesh root or a folder around it, never inside or around a domain, a domain's local package (a shared macro
    package), the exchange, the mesh's own ``.mesh`` (locks) or ``.git`` (their owners' files), nor the docs
    site's folder (`mesh docs` replaces that folder whole, history included). ``~`` is the user's home."""
    path = mesh.health_path.resolve()
    where = display_path(mesh.config_path or mesh.root) + (f":{line}" if mesh.config_path and line else "")
    shown = f"health.path '{mesh.health.path}'"
    if is_within(mesh.root, path):
        raise ConfigError(
            f"{where}: {shown} is the mesh root or holds it; the health history and reports need a folder of their "
            "own (the default is 'health')."
        )
    others = [(f"domain '{n}'", d.path) for n, d in mesh.domains.items() if d.path != mesh.root]
    others += [("the exchange", mesh.exchange_path), ("the mesh's own folder of locks, parses and caches",
               mesh.root / ".mesh"), ("the git repository", mesh.root / ".git")]  # fmt: skip
    for name, domain in mesh.domains.items():  # a shared macro package: every domain that installs it reads it
        others += [(f"a local package of domain '{name}'", package) for package in domain.local_packages]
    if not is_within(mesh.root, mesh.docs_path):  # a site at the root: `mesh docs` refuses it, with its own words
        others.append(("the docs site (`mesh docs` replaces it whole)", mesh.docs_path))
    for what, folder in others:
        if is_within(path, folder) or is_within(folder, path):
            raise ConfigError(
                f"{where}: {shown} overlaps {what} ({display_path(folder)}); the health history and reports need a "
                "folder of their own (the default is 'health')."
            )
    for name, domain in mesh.domains.items():  # a single project at the mesh root: not its own folders
        if domain.path == mesh.root and any(is_within(path, f) for f in (domain.target_dir, domain.packages_dir)):
            raise ConfigError(
                f"{where}: {shown} is inside the build output of domain '{name}'; the health history and reports "
                "need a folder of their own (the default is 'health')."
            )


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
    """Every dbt project with a profile below ``root``, nested ones included.

    A project without a profile is a package (its ``integration_tests`` are not domains), so
    discovery does not look inside it. Inside a domain it skips the project's own build output
    and installed packages.
    """
    found: list[_Found] = []
    excluded_set = {p.resolve() for p in excluded}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        skipped = set(SKIPPED_DIRS)
        if "dbt_project.yml" in files:
            doc = load_yaml(here / "dbt_project.yml")
            data = doc.data if doc and isinstance(doc.data, dict) else {}
            if not data.get("profile"):  # a package, not a domain
                dirs[:] = []
                continue
            found.append((here, None, None, ""))
            for key in ("target-path", "packages-install-path", "log-path"):
                if isinstance(data.get(key), str):
                    skipped.add(Path(data[key]).name)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d not in skipped and (here / d).resolve() not in excluded_set
        )
    return found


def _project_name(path: Path) -> str:
    doc = load_yaml(path / "dbt_project.yml")
    data = doc.data if doc and isinstance(doc.data, dict) else {}
    name = data.get("name")
    return name if isinstance(name, str) else ""


def _load_domain(
    path: Path,
    owner: Owner | None,
    description: str | None,
    declared: str,
    *,
    folders: dict[Path, str],
    notes: list[str],
) -> Domain:
    project_doc = load_yaml(path / "dbt_project.yml")
    assert project_doc is not None
    project = project_doc.data if isinstance(project_doc.data, dict) else {}
    name = project.get("name")
    if not isinstance(name, str) or not name:
        raise project_doc.error((), "dbt_project.yml has no 'name:'. Give the project a name.")
    # the name becomes folders and files (the exchange's products, receipts, leases): never a path
    safe_name(name, "project name", f"{project_doc.display}:{project_doc.line_of(('name',))}")
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
            ("function-paths", ["functions"]),  # user-defined functions (dbt 1.11)
        )
        for p in paths(key, default)
    )
    deps_doc = load_yaml(path / "dependencies.yml", required=False)
    packages_doc = load_yaml(path / "packages.yml", required=False)
    upstreams = _declared_projects(deps_doc) + _loom_upstreams(path, name, folders, notes)
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
        remote_packages=len(remote),
        remote_package_names=tuple(remote),
        dependencies_file=path / "dependencies.yml",
        pins=settings.pins,
        environments=settings.environments,
        governance=settings.governance,
        data_dirs=(*paths("seed-paths", ["seeds"]), *paths("docs-paths", [])),
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


_LOOM_VAR = re.compile(r"\$(\w+)|\$\{([^}]+)\}")


def _loom_text(path: Path, notes: list[str]) -> str | None:
    """The config's text with ``$VAR`` / ``${VAR}`` replaced as dbt-loom does (an unset one by nothing).

    dbt-loom substitutes in the raw text before YAML parses it, comments included; a comment's value is
    thrown away by the parser, so the mesh leaves comments as written (a ``$VAR`` in a note about the
    config is neither read nor reported) and substitutes everywhere else, as dbt-loom does.
    """
    if not path.exists():
        return None
    text = read_text(path)
    # a text that does not scan is substituted whole (what dbt-loom parses); load_yaml then locates its error
    comments = comment_spans(text) or []

    out: list[str] = []
    done = 0
    for start, end in [*comments, (len(text), len(text))]:
        # matched between comments only, so no ${...} runs from a comment into a value or back
        for match in _LOOM_VAR.finditer(text, done, start):
            var = match.group(1) or match.group(2)
            if var not in os.environ:
                line = text.count("\n", 0, match.start()) + 1
                notes.append(f"{display_path(path)}:{line}: ${var} is not set; dbt-loom reads it as an empty string")
            out += [text[done : match.start()], os.environ.get(var, "")]
            done = match.end()
        out.append(text[done:end])
        done = end
    return "".join(out)


def _loom_upstreams(path: Path, project: str, folders: dict[Path, str], notes: list[str]) -> list[Upstream]:
    """Upstreams from dbt_loom.config.yml, read the way dbt-loom reads it.

    A manifest's ``name`` is a label: the project is the mesh domain whose folder holds the
    manifest path (built first, even before the file exists), else the manifest's own
    ``metadata.project_name``. Relative paths are relative to the project's folder (dbt-loom
    reads them from the working directory, where `dbt build` runs). ``optional: true`` manifests
    that do not exist are skipped with a note.
    """
    config = path / LOOM_FILE
    text = _loom_text(config, notes)
    if text is None:
        return []
    doc = load_yaml(config, required=False, text=text)
    if doc is None or doc.data is None:
        return []
    manifests = doc.data.get("manifests") if isinstance(doc.data, dict) else None
    if not isinstance(manifests, list):
        raise doc.error((), "dbt_loom.config.yml must have 'manifests:', a list of manifests.")
    out = []
    for index, entry in enumerate(manifests):
        found = _loom_entry(doc, ("manifests", index), entry, path, project, folders, notes)
        if found is not None:
            out.append(found)
    return out


def _loom_entry(doc: YamlDoc, loc: tuple[str, int], entry: object, path: Path, project: str,
                folders: dict[Path, str], notes: list[str]) -> Upstream | None:  # fmt: skip
    """The upstream one manifest entry of a dbt-loom config names (None: skipped, with a note)."""
    where = f"{doc.display}:{doc.line_of(loc)}"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise doc.error(loc, "each manifest needs 'name: <label>'.")
    label, optional = entry["name"], entry.get("optional") is True
    excluded, included = (
        _package_list(doc, entry, loc, "excluded_packages"),
        _package_list(doc, entry, loc, "included_packages"),
    )
    if excluded and included:
        raise doc.error(loc, "set 'excluded_packages' or 'included_packages', not both (as dbt-loom requires).")
    if entry.get("node_transformers"):
        notes.append(f"{where}: node_transformers of '{label}' are dbt-loom plugins; the mesh ignores them")
    kind = str(entry.get("type", "file"))
    raw = (entry.get("config") or {}).get("path") if isinstance(entry.get("config"), dict) else None
    upstream = functools.partial(
        Upstream, declared_in=where, optional=optional, label=label,
        excluded_packages=excluded, included_packages=included,
    )  # fmt: skip
    if kind != "file" or (isinstance(raw, str) and re.match(r"^https?://", raw)):
        what = f"manifest type '{kind}'" if kind != "file" else f"a manifest over HTTP ({raw})"
        if label in folders.values():
            notes.append(f"{where}: {what} of '{label}': the mesh builds project '{label}' itself and reads it")
            return upstream(label)
        if optional:
            notes.append(f"{where}: optional {what} '{label}' skipped: the mesh reads local manifest files only")
            return None
        raise doc.error(
            loc + ("type",),
            f"{what} is not read by the mesh: point 'config: path:' at the upstream's manifest.json, "
            "or give the manifest the name of a project of this mesh, which the mesh then builds itself.",
        )
    if not isinstance(raw, str) or not raw.strip():
        raise doc.error(loc, "a file manifest needs 'config: path: <manifest.json>'.")
    manifest = Path(raw.removeprefix("file://")).expanduser()
    manifest = (manifest if manifest.is_absolute() else path / manifest).resolve()
    owner = _owning_project(manifest, folders)
    if owner == project:
        notes.append(f"{where}: manifest '{label}' is this project's own ({raw}); ignored")
        return None
    if owner is not None:
        return upstream(owner)
    if manifest.is_file():
        return upstream(_manifest_project(manifest, where) or label, manifest_path=manifest)
    if optional:
        notes.append(f"{where}: optional manifest '{label}' skipped: {display_path(manifest)} does not exist")
        return None
    return upstream(label, manifest_path=manifest)  # stitching says the file is missing, and where


def _package_list(doc: YamlDoc, entry: dict, loc: tuple, key: str) -> tuple[str, ...]:
    value = entry.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise doc.error(loc + (key,), f"'{key}' must be a list of package names.")
    return tuple(value)


def _owning_project(path: Path, folders: dict[Path, str]) -> str | None:
    """The mesh project whose folder holds ``path`` (the innermost one, for nested projects)."""
    best: tuple[int, str] | None = None
    for folder, name in folders.items():
        if folder == path or folder in path.parents:
            depth = len(folder.parts)
            if best is None or depth > best[0]:
                best = (depth, name)
    return best[1] if best else None


def _manifest_project(path: Path, where: str) -> str | None:
    """``metadata.project_name`` of a manifest file (gzip-compressed ones too).

    The one artifact read below the model layer: the loader must know which project a dbt-loom
    manifest belongs to before any domain exists.
    """
    import json

    from mesh_tools.core.jsonfile import TooLarge, read_artifact_text

    try:
        data = json.loads(read_artifact_text(path))
    except TooLarge as exc:  # a compression bomb: refused once it passes the cap, before it fills the memory
        raise ConfigError(f"{where}: the manifest {display_path(path)} {exc}. Nothing was read from it.") from None
    except (OSError, EOFError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{where}: cannot read the manifest {display_path(path)} ({exc}).") from None
    name = (data.get("metadata") or {}).get("project_name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _dedupe(upstreams: list[Upstream]) -> list[Upstream]:
    by_name: dict[str, Upstream] = {}
    for up in upstreams:  # dependencies.yml entries come first and win over dbt_loom ones
        first = by_name.setdefault(up.name, up)
        if first.optional and not up.optional:  # declared for real somewhere: not optional
            by_name[up.name] = dataclasses.replace(first, optional=False)
    return list(by_name.values())


def _packages(path: Path, *docs: YamlDoc | None) -> tuple[list[Path], list[str]]:
    local: list[Path] = []
    remote: list[str] = []
    for doc in docs:
        if doc is None or not isinstance(doc.data, dict):
            continue
        entries = doc.data.get("packages") or []
        if not isinstance(entries, list):
            raise doc.error(("packages",), "'packages:' must be a list.")
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("local"), str):
                local.append((path / entry["local"]).resolve())
            elif isinstance(entry, dict):
                remote.append(str(entry.get("package") or entry.get("git") or entry.get("private") or entry))
            else:
                remote.append(str(entry))
    return local, remote


def _check_upstreams(domains: dict[str, Domain], notes: list[str], remote: bool = False) -> dict[str, Domain]:
    """Refuse what cannot be built; drop, with a note, what only documents an edge.

    A declared project that is not in the mesh is an error when it looks like a typo of one
    that is (a close match), else a note: dbt-core itself ignores ``projects:`` entries, and a
    ref to such a project is refused at stitching with its own message. An optional dbt-loom
    manifest that would close a cycle (a producer listing its consumer, so dbt-loom can show it
    who reads its models) is dropped with a note. With an object-store exchange (``remote``), a
    declared project that is not in the mesh is one built elsewhere: stitching reads the interface it
    published there.
    """
    kept: dict[str, Domain] = {}
    for name, domain in domains.items():
        upstreams = []
        for up in domain.upstreams:
            if up.name == name:
                raise ConfigError(f"{up.declared_in}: project '{name}' lists itself as an upstream. Remove that entry.")
            if up.name not in domains and up.manifest_path is None and remote:
                upstreams.append(dataclasses.replace(up, remote=True))  # stitching finds it in the exchange
                continue
            if up.name not in domains and up.manifest_path is None:
                hint = did_you_mean(up.name, domains)
                if hint and not up.optional:
                    raise ConfigError(
                        f"{up.declared_in}: unknown project '{up.name}': no domain of the mesh has that name."
                        f"{hint} Known domains: {', '.join(sorted(domains))}."
                    )
                notes.append(
                    f"{up.declared_in}: {name} declares project '{up.name}', which is not a project of this mesh; "
                    "ignored (a ref to it will be refused)"
                )
                continue
            upstreams.append(up)
        kept[name] = dataclasses.replace(domain, upstreams=tuple(upstreams))
    staged: set[tuple[str, str]] = set()  # edges of cycles every project declares for real: built in stages
    while cycle := find_cycle({n: {u for u in d.upstream_names if (n, u) not in staged} for n, d in kept.items()}):
        edges = [(cycle[i], cycle[i + 1]) for i in range(len(cycle) - 1)]
        optional = [
            (consumer, up) for consumer, producer in edges for up in kept[consumer].upstreams
            if up.name == producer and up.optional
        ]  # fmt: skip
        if not optional:
            # projects that read each other's models: a build works on the models across them, in stages, and
            # refuses a cycle between models (workflows/stages.py)
            staged.update(edges)
            continue
        # drop the optional edge whose manifest does not exist yet, else the first one
        consumer, dropped = min(optional, key=lambda e: (kept[e[1].name].manifest_path.is_file(), e[0]))
        notes.append(
            f"{dropped.declared_in}: optional dbt-loom manifest of '{dropped.name}' in {consumer} ignored: it would "
            f"make a cycle ({' -> '.join(cycle)}); it documents who reads {consumer}'s models, data flows the other way"
        )
        domain = kept[consumer]
        kept[consumer] = dataclasses.replace(domain, upstreams=tuple(u for u in domain.upstreams if u is not dropped))
    return kept
