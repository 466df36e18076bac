"""Build the static documentation site: home, a page per domain and per data product, split search.

Read from files only: each domain's manifest.json (and catalog.json and run_results.json when
present), the exchange's current releases and the health report. The site is written to a
scratch folder and swapped in whole, so a reader never sees half a site.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from mesh_tools.core.errors import ArtifactError, MeshError
from mesh_tools.core.jsonfile import loads
from mesh_tools.core.mesh import Mesh
from mesh_tools.core.paths import check_output_folder, mark_output_folder
from mesh_tools.core.words import counted, noun
from mesh_tools.docsite.lineage import Graph, draw, project_colors
from mesh_tools.model.manifest import Catalog, Manifest, RunResults
from mesh_tools.model.nodes import Column as ColumnSpec
from mesh_tools.model.nodes import Node

if TYPE_CHECKING:
    from mesh_tools.store.verify import Verifier

MAX_LINEAGE = 400  # nodes drawn on one page; beyond, the nearest are kept


@dataclass
class Column:
    name: str
    data_type: str | None
    description: str
    constraints: list[str]
    tests: list[str]
    pii: bool


@dataclass
class Product:
    key: str
    uid: str
    domain: str
    name: str
    version: str | None
    latest_version: str | None
    node: Node
    owner: str
    group: str | None
    columns: list[Column]
    ref_line: str
    versions: list[dict[str, Any]] = field(default_factory=list)
    release: dict[str, Any] | None = None
    release_problem: str | None = None  # why its current release cannot be read (never shown as fine)
    release_unverified: str | None = None  # why its bytes were not checked against their SHA-256, when not
    health: dict[str, Any] | None = None
    tests: list[dict[str, Any]] = field(default_factory=list)
    direct: list[dict[str, str]] = field(default_factory=list)
    indirect: list[dict[str, str]] = field(default_factory=list)
    lineage: str = ""
    lineage_note: str = ""

    @property
    def page(self) -> str:
        return f"products/{page_name(self.key)}.html"


@dataclass
class DomainInfo:
    name: str
    owner: str
    description: str
    upstreams: list[str]
    downstreams: list[str]
    products: list[Product]
    models: int = 0
    problem: str | None = None
    health: dict[str, Any] | None = None
    dbt_docs: str | None = None
    lineage: str = ""
    lineage_note: str = ""


@dataclass
class SiteOutcome:
    path: Path
    pages: int
    bytes: int
    seconds: float
    notes: list[str]


def _read(path: Path) -> Any:
    try:
        return loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _quietly(read: Callable[..., Any], *args: Any) -> Any:
    """An artifact as the model reads it; None when missing (not built yet) or unreadable (left out)."""
    try:
        return read(*args, missing_ok=True)
    except ArtifactError:
        return None


def _ref_line(project: str, name: str, version: str | None, latest: str | None) -> str:
    if version is not None and version != latest:
        return f"{{{{ ref('{project}', '{name}', v={version}) }}}}"
    return f"{{{{ ref('{project}', '{name}') }}}}"


def _catalog(paths: tuple[Path, ...]) -> Catalog | None:
    """The first readable catalog of the domain (an unreadable one is left out)."""
    for path in paths:
        if path.is_file():
            try:
                return Catalog.read(path, "Run `mesh docs --catalog` again.")
            except ArtifactError:
                continue
    return None


def _types(catalog: Catalog | None, uid: str) -> dict[str, str | None]:
    """The node's columns in the catalog: name -> the warehouse's type."""
    columns = catalog.columns_of(uid) if catalog is not None else {}
    return {str(n): (c.get("type") if isinstance(c, dict) else None) for n, c in columns.items()}


def _constraints(column: ColumnSpec) -> list[str]:
    out = []
    for c in column.constraints:
        text = str(c.get("type", ""))
        if c.get("expression"):
            text += f" ({c['expression']})"
        out.append(text)
    return out


def _column_tests(manifest: Manifest, uid: str) -> dict[str, list[str]]:
    tests: dict[str, list[str]] = {}
    for test in manifest.tests_of(uid, data_only=True):
        if test.attached_node == uid and test.column_name:
            tests.setdefault(test.column_name, []).append(test.test_name or test.name)
    return tests


class SiteBuilder:
    """Collects the site's data once, then renders every page."""

    def __init__(self, mesh: Mesh):
        self.mesh = mesh
        self.graph = Graph()
        self.notes: list[str] = []
        self.verifier: Verifier | None = None
        from mesh_tools.dbt.staleness import stale_domains

        self.stale = stale_domains(list(mesh.domains.values()))
        self.manifests: dict[str, Manifest] = {}
        self.catalogs: dict[str, Catalog] = {}
        self.results: dict[str, dict[str, str]] = {}
        for name, domain in mesh.domains.items():
            # a manifest not built yet, or unreadable, is skipped: the domain's page says so
            manifest = _quietly(Manifest.read, domain.manifest_path, name)
            if manifest is None:
                continue
            self.manifests[name] = manifest
            self.graph.add_manifest(name, manifest)
            catalog = _catalog(domain.catalog_paths)
            if catalog is not None:
                self.catalogs[name] = catalog
            results = _quietly(RunResults.read, domain.run_results_path)
            if results is not None:
                self.results[name] = {r.unique_id: r.status for r in results.results}
        self.health = self._health()
        self.colors = project_colors(mesh.domains)

    def _health(self) -> dict[str, Any]:
        report = _read(self.mesh.health_path / "report.json")
        if not isinstance(report, dict):
            return {"products": {}, "domains": {}}
        return {
            "products": {p.get("product"): p for p in report.get("products", []) if isinstance(p, dict)},
            "domains": {d.get("domain"): d for d in report.get("domains", []) if isinstance(d, dict)},
            "generated_at": report.get("generated_at"),
        }

    # -- the data
    def products_of(self, name: str) -> list[Product]:
        from mesh_tools.store.exchange import open_exchange
        from mesh_tools.store.verify import Verifier

        manifest = self.manifests.get(name)
        if manifest is None:
            return []
        if self.verifier is None:  # one download budget for the whole site
            self.verifier = Verifier(open_exchange(self.mesh))
        verifier = self.verifier
        domain_owner = self.mesh.domains[name].owner
        catalog = self.catalogs.get(name)
        statuses = self.results.get(name, {})
        products = []
        for node in sorted(manifest.products(), key=lambda n: n.unique_id):
            uid, version, latest = node.unique_id, node.version, node.latest_version
            tests = _column_tests(manifest, uid)
            catalog_cols = _types(catalog, uid)
            columns = [
                Column(
                    name=col_name,
                    data_type=column.data_type or catalog_cols.get(col_name),
                    description=column.description,
                    constraints=_constraints(column),
                    tests=tests.get(col_name, []),
                    pii=column.is_pii,
                )
                for col_name, column in node.columns.items()
            ]
            for col_name, type_ in catalog_cols.items():
                if col_name not in node.columns:
                    columns.append(Column(col_name, type_, "", [], [], False))
            product = Product(
                key=node.key,
                uid=uid,
                domain=name,
                name=node.name,
                version=version,
                latest_version=latest,
                node=node,
                owner=manifest.owner_of(node) or (domain_owner.label() if domain_owner else ""),
                group=node.group,
                columns=columns,
                ref_line=_ref_line(name, node.name, version, latest),
                health=self.health["products"].get(node.key),
            )
            try:  # its bytes checked as consumers check them (store.verify), or said to be unverified
                checked = verifier.current(name, node.name, version)
            except MeshError as exc:
                self.notes.append(str(exc))
                product.release_problem = str(exc)
                checked = None
            if checked is not None:
                product.release = checked.release.descriptor.model_dump(mode="json")
                confirmed = verifier.exchange.confirmation(checked.release.descriptor)
                product.release["confirmed_at"] = confirmed.confirmed_at if confirmed else None
                product.release_unverified = checked.unverified
            product.tests = [
                {"name": test.name, "column": test.column_name, "status": statuses.get(test.unique_id)}
                for test in manifest.tests_of(uid, data_only=True)
            ]
            products.append(product)
            self.graph.href[uid] = product.page
        for product in products:
            product.versions = [
                {
                    "label": f"v{p.version}" if p.version else "unversioned",
                    "page": p.page,
                    "deprecation_date": p.node.deprecation_date,
                    "latest": p.version == p.latest_version,
                    "current": p.key == product.key,
                }
                for p in products
                if p.name == product.name
            ]
        return products

    def _consumers(self, product: Product, products: dict[str, Product]) -> None:
        direct_uids = self.graph.children.get(product.uid, set())
        for uid in sorted(self.graph.downstream(product.uid)):
            project = self.graph.project_of(uid)
            entry = {
                "uid": uid,
                "project": project,
                "label": self.graph.label.get(uid, uid),
                "page": self.graph.href.get(uid) or f"domains/{page_name(project)}.html",
            }
            if project == product.domain and uid not in products:
                continue  # the producer's own downstream models are not consumers
            (product.direct if uid in direct_uids else product.indirect).append(entry)

    def _lineage(self, focus: str | None, nodes: set[str]) -> tuple[str, str]:
        note = ""
        if len(nodes) > MAX_LINEAGE:
            # keep the closest nodes: cross-project neighbours first, then by name
            ranked = sorted(nodes, key=lambda u: (u != focus, self.graph.project_of(u) == (focus or ""), u))
            nodes = set(ranked[:MAX_LINEAGE])
            note = f"{MAX_LINEAGE} of {len(ranked)} nodes drawn."
        return draw(self.graph, nodes, focus=focus, link_prefix="../", colors=self.colors), note

    # -- the site
    def build(self, out: Path) -> SiteOutcome:
        start = time.perf_counter()
        domains: list[DomainInfo] = []
        products: dict[str, Product] = {}
        downstream: dict[str, set[str]] = {n: set() for n in self.mesh.domains}
        for name, domain in self.mesh.domains.items():
            for up in domain.upstream_names:
                if up in downstream:
                    downstream[up].add(name)
        for name, domain in self.mesh.domains.items():
            info = DomainInfo(
                name=name,
                owner=domain.owner.label() if domain.owner else "",
                description=domain.description or "",
                upstreams=list(domain.upstream_names),
                downstreams=sorted(downstream[name]),
                products=self.products_of(name),
                health=self.health["domains"].get(name),
            )
            manifest = self.manifests.get(name)
            if manifest is None:
                info.problem = f"no manifest yet: build the domain with `mesh build {name}`."
            elif name in self.stale:
                info.problem = f"{self.stale[name]}: these pages describe its last parse. Run `mesh docs` again."
                self.notes.append(info.problem)
            if manifest is not None:
                info.models = sum(1 for _ in manifest.own("model"))
                if not info.description:
                    info.description = str(manifest.metadata.get("project_description") or "")
            # dbt's static_index.html opens from disk; its index.html needs a web server
            docs_dir = domain.docs_dir
            candidates = [
                docs_dir / "static_index.html",
                domain.target_dir / "static_index.html",
                docs_dir / "index.html",
            ]
            for index in candidates:
                if index.is_file():
                    info.dbt_docs = os.path.relpath(index, out / "domains")
                    break
            for product in info.products:
                products[product.uid] = product
            domains.append(info)
        for product in products.values():
            self._consumers(product, products)
            related = {product.uid} | self.graph.upstream(product.uid) | self.graph.downstream(product.uid)
            product.lineage, product.lineage_note = self._lineage(product.uid, related)
        for info in domains:
            own = {u for u, p in self.graph.project.items() if p == info.name}
            neighbours = {
                p for u in own for p in self.graph.parents.get(u, set()) if self.graph.project_of(p) != info.name
            }
            neighbours |= {
                c for u in own for c in self.graph.children.get(u, set()) if self.graph.project_of(c) != info.name
            }
            info.lineage, info.lineage_note = self._lineage(None, own | neighbours)
        scratch = out.with_name(f".{out.name}.{os.getpid()}.partial")
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            pages = self._render(scratch, domains, list(products.values()))
            mark_output_folder(scratch, "mesh docs")
            _swap(scratch, out)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return SiteOutcome(out, pages, size, time.perf_counter() - start, self.notes)

    def _home_map(self, domains: list[DomainInfo]) -> str:
        graph = Graph()
        for info in domains:
            uid = f"domain.{info.name}"
            graph.project[uid] = info.name
            count = len(info.products)
            graph.label[uid] = f"{count} product{'s' if count != 1 else ''}"
            graph.href[uid] = f"domains/{page_name(info.name)}.html"
            for up in info.upstreams:
                graph.parents[uid].add(f"domain.{up}")
                graph.children[f"domain.{up}"].add(uid)
        return draw(graph, set(graph.project), colors=self.colors)

    def _render(self, folder: Path, domains: list[DomainInfo], products: list[Product]) -> int:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("mesh_tools.docsite", "templates"),
            autoescape=jinja2.select_autoescape(["html", "j2"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["svg"] = Markup
        env.filters["counted"], env.filters["noun"] = counted, noun
        common = {"mesh": self.mesh, "domains": domains, "health_at": self.health.get("generated_at")}
        (folder / "domains").mkdir(parents=True)
        (folder / "products").mkdir()
        (folder / "search").mkdir()
        assets = folder / "assets"
        assets.mkdir()
        for name in ("site.css", "search.js"):
            (assets / name).write_bytes(resources.files("mesh_tools.docsite").joinpath("assets", name).read_bytes())
        pages = 0

        def write(path: str, template: str, root: str, **extra: Any) -> None:
            nonlocal pages
            html = env.get_template(template).render(root=root, **common, **extra)
            target = folder / path
            if folder.resolve() not in target.resolve().parents:  # page names are never paths
                raise MeshError(f"documentation page {path!r} would leave the site folder")
            target.write_text(html, encoding="utf-8")
            pages += 1

        write("index.html", "index.html.j2", "", map=self._home_map(domains), products=products)
        for info in domains:
            write(f"domains/{page_name(info.name)}.html", "domain.html.j2", "../", domain=info)
        for product in products:
            write(product.page, "product.html.j2", "../", product=product)
        for info in domains:
            entries = self._search_entries(info)
            text = "window.meshSearch=(window.meshSearch||[]).concat(" + json.dumps(entries, separators=(",", ":"))
            (folder / "search" / f"{info.name}.js").write_text(text + ");\n", encoding="utf-8")
        return pages

    def _search_entries(self, info: DomainInfo) -> list[list[str]]:
        """[kind, name, where, page, description] for the domain, its models and their columns."""
        entries = [["domain", info.name, info.owner, f"domains/{page_name(info.name)}.html", info.description[:160]]]
        manifest = self.manifests.get(info.name)
        if manifest is None:
            return entries
        catalog = self.catalogs.get(info.name)
        for node in manifest.own("model"):
            uid = node.unique_id
            page = self.graph.href.get(uid) or f"domains/{page_name(info.name)}.html"
            kind = "product" if node.is_public else "model"
            label = self.graph.label.get(uid, node.name)
            entries.append([kind, label, info.name, page, node.description[:160]])
            described = {name: column.description for name, column in node.columns.items()}
            for col_name in _types(catalog, uid):
                described.setdefault(col_name, "")
            for col_name, description in described.items():
                entries.append(["column", col_name, f"{info.name}.{label}", page, description[:120]])
        return entries


def _swap(scratch: Path, out: Path) -> None:
    """Replace ``out`` by ``scratch`` with two renames (the old site stays until the new one is whole)."""
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    if out.exists():
        os.replace(out, old)
    os.replace(scratch, out)
    shutil.rmtree(old, ignore_errors=True)


def page_name(name: str) -> str:
    """A file name for a page about ``name`` (names come from manifests: never a path)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).replace("..", "__").lstrip(".")
    return safe or "_"


def build_site(mesh: Mesh, out: Path | None = None) -> SiteOutcome:
    """Write the documentation site of ``mesh`` (default: the mesh's docs folder).

    The folder is replaced whole, so it must be the site's own: never the mesh root, a domain, the
    exchange or the health folder, nor a folder the site did not write (see mesh_tools.core.paths)."""
    target = out or mesh.docs_path
    protected = {f"domain '{name}'": domain.path for name, domain in mesh.domains.items()}
    protected |= {"the exchange": mesh.exchange_path, "the health folder": mesh.health_path}
    check_output_folder(target, mesh_root=mesh.root, protected=protected, command="mesh docs")
    target.parent.mkdir(parents=True, exist_ok=True)
    return SiteBuilder(mesh).build(target)
