"""Bring an existing dbt project into the mesh: register it, say what it lacks, add contracts from its catalog."""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ConfigError, display_path
from mesh_tools.core.mesh import Domain, Mesh, _load_domain
from mesh_tools.core.yamlfile import load_yaml
from mesh_tools.selfservice.meshfile import registration
from mesh_tools.selfservice.template import check_name, parse_owner


@dataclass
class AdoptPlan:
    name: str
    folder: Path
    mesh: Mesh  # the mesh with the domain in it
    mesh_yml: str | None  # new mesh.yml text; None when already registered or discovered
    already: bool


def plan_adopt(mesh: Mesh, path: str, owner: str | None, description: str | None) -> AdoptPlan:
    folder = Path(path) if Path(path).is_absolute() else (Path.cwd() / path)
    folder = folder.resolve()
    project_file = folder / "dbt_project.yml"
    if not project_file.is_file():
        raise ConfigError(f"{display_path(folder)}: no dbt_project.yml there; give the folder of a dbt project.")
    if mesh.root.resolve() not in folder.parents:
        raise ConfigError(f"{display_path(folder)} is outside the mesh root ({mesh.root}); move the project below it.")
    doc = load_yaml(project_file)
    data = doc.data if doc is not None and isinstance(doc.data, dict) else {}
    name, profile = data.get("name"), data.get("profile")
    if not isinstance(name, str) or not profile:
        raise ConfigError(
            f"{display_path(project_file)}: a domain needs 'name' and 'profile' (a project without a profile "
            "is a package, like macros/)."
        )
    for existing in mesh.domains.values():
        if existing.path.resolve() == folder:
            return AdoptPlan(name, folder, mesh, None, already=True)
    check_name(name, mesh)
    owner_name, owner_email = parse_owner(owner, name)
    config_owner = None
    if owner:
        from mesh_tools.core.config import Owner

        config_owner = Owner(name=owner_name, email=owner_email)
    folders = {d.path.resolve(): n for n, d in mesh.domains.items()} | {folder: name}
    domain = _load_domain(folder, config_owner, description, name, folders=folders, notes=[])
    with_domain = dataclasses.replace(mesh, domains={**mesh.domains, name: domain})
    mesh_yml = registration(mesh, name, folder, (owner_name, owner_email), description)
    return AdoptPlan(name, folder, with_domain, mesh_yml, already=False)


def register(plan: AdoptPlan) -> None:
    from mesh_tools.core.files import write_atomic
    from mesh_tools.core.mesh import load_mesh

    if plan.mesh_yml is None or plan.mesh.config_path is None:
        return
    old = plan.mesh.config_path.read_text(encoding="utf-8")
    write_atomic(plan.mesh.config_path, plan.mesh_yml)
    try:
        load_mesh(plan.mesh.root)
    except BaseException:
        write_atomic(plan.mesh.config_path, old)
        raise


@dataclass
class Readiness:
    """What a domain lacks to meet the mesh's governance."""

    models: int = 0
    public: list[str] = field(default_factory=list)
    no_contract: list[str] = field(default_factory=list)
    no_description: list[str] = field(default_factory=list)
    undocumented_columns: list[str] = field(default_factory=list)
    no_owner: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


def readiness(mesh: Mesh, domain: Domain) -> Readiness:
    """From the domain's parsed manifest and the governance check."""
    from mesh_tools.governance.engine import run_check
    from mesh_tools.model.manifest import Manifest

    manifest = Manifest.load(domain.manifest_path, domain.name)
    found = Readiness(models=len(manifest.models))
    for model in sorted(manifest.models, key=lambda m: m.unique_id):
        raw = model.raw
        label = model.label
        if model.is_public:
            found.public.append(label)
        if not ((raw.get("config") or {}).get("contract") or {}).get("enforced"):
            found.no_contract.append(label)
        if not (raw.get("description") or "").strip():
            found.no_description.append(label)
        if not manifest.owner_of(model):
            found.no_owner.append(label)
        if any(not (c.get("description") or "").strip() for c in (raw.get("columns") or {}).values()) or not raw.get(
            "columns"
        ):
            found.undocumented_columns.append(label)
    load = [n for n in mesh.domains if n == domain.name or mesh.domains[n].manifest_path.is_file()]
    report = run_check(mesh, [domain.name], sqlfluff=False, load=load)
    found.findings = [f"{v.code} {v.rule} [{v.severity.name.lower()}]: {v.finding.message}" for v in report.violations]
    return found


@dataclass
class FileEdit:
    path: Path
    old: str | None
    new: str

    def diff(self, root: Path) -> str:
        rel = os.path.relpath(self.path, root)
        return "".join(
            difflib.unified_diff(
                (self.old or "").splitlines(keepends=True),
                self.new.splitlines(keepends=True),
                fromfile="/dev/null" if self.old is None else f"a/{rel}",
                tofile=f"b/{rel}",
            )
        )


def contract_edits(domain: Domain, models: tuple[str, ...], catalog_path: Path) -> list[FileEdit]:
    """The properties-file edits that give each model an enforced contract with the catalog's columns."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from mesh_tools.model.manifest import Catalog, Manifest
    from mesh_tools.selfservice.meshfile import dump_round_trip, load_round_trip

    manifest = Manifest.load(domain.manifest_path, domain.name, f"Run `mesh stitch {domain.name}`.")
    catalog = Catalog.read(catalog_path, f"Run `mesh adopt` again after `mesh build {domain.name}`.")
    nodes = {n.unique_id: n for n in manifest.own("model")}
    docs: dict[Path, Any] = {}
    originals: dict[Path, str | None] = {}
    for name in models:
        chosen = [n for n in nodes.values() if n.name == name]
        if not chosen:
            from mesh_tools.core.suggestions import did_you_mean

            names = sorted({n.name for n in nodes.values()})
            raise ConfigError(f"{domain.name} has no model '{name}'.{did_you_mean(name, names)}")
        node = chosen[0]
        columns = catalog.columns_of(node.unique_id)
        if not columns:
            raise ConfigError(
                f"model '{name}' is not in {domain.name}'s catalog: build it first with "
                f"`mesh build {domain.name} --no-publish`, then run `mesh adopt` again."
            )
        if node.properties_file:
            file = domain.path / node.properties_file
        else:
            file = domain.path / Path(node.file).parent / f"_{name}.yml"
        if file not in docs:
            originals[file] = file.read_text(encoding="utf-8") if file.is_file() else None
            docs[file] = load_round_trip(file) if file.is_file() else CommentedMap()
        doc = docs[file]
        entries = doc.setdefault("models", CommentedSeq())
        entry = next((e for e in entries if isinstance(e, dict) and e.get("name") == name), None)
        if entry is None:
            entry = CommentedMap()
            entry["name"] = name
            entries.append(entry)
        config = entry.setdefault("config", CommentedMap())
        contract = CommentedMap()
        contract["enforced"] = True
        contract.fa.set_flow_style()
        config["contract"] = contract
        documented = entry.setdefault("columns", CommentedSeq())
        by_name = {c.get("name"): c for c in documented if isinstance(c, dict)}
        for column in sorted(columns.values(), key=lambda c: c.get("index", 0)):
            col_name = column["name"]
            col_name = next((k for k in by_name if str(k).lower() == str(col_name).lower()), col_name)
            target = by_name.get(col_name)
            if target is None:
                target = CommentedMap()
                target["name"] = col_name
                documented.append(target)
                by_name[col_name] = target
            target.setdefault("data_type", str(column.get("type", "")).lower())
    return [FileEdit(path, originals[path], dump_round_trip(doc)) for path, doc in docs.items()]


def apply_edits(edits: list[FileEdit]) -> None:
    from mesh_tools.core.files import write_atomic

    for edit in edits:
        write_atomic(edit.path, edit.new)
