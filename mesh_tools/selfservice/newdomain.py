"""Create a domain from the mesh's template: plan every file first, then place it whole or not at all."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ConfigError, display_path
from mesh_tools.core.mesh import Mesh, load_mesh
from mesh_tools.selfservice.meshfile import registration
from mesh_tools.selfservice.template import (
    LOCK_FILE,
    check_name,
    load_template,
    lock_text,
    macros_path_for,
    parse_owner,
    render,
)


@dataclass
class NewDomainPlan:
    name: str
    folder: Path
    files: dict[str, str]  # path inside the domain -> content
    mesh_yml: str | None  # the new mesh.yml text, when the mesh lists its domains
    product: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def upstream_product(mesh: Mesh, upstream: str) -> dict[str, Any]:
    """The upstream's data product the starter product reads: its first public model, latest version."""
    from mesh_tools.model.manifest import Manifest

    domain = mesh.domains[upstream]
    if not domain.manifest_path.is_file():
        raise ConfigError(
            f"upstream '{upstream}' has not been built yet ({display_path(domain.manifest_path)} is missing): "
            f"run `mesh build {upstream}` first, then create the domain."
        )
    manifest = Manifest.load(domain.manifest_path, upstream)
    public = [m for m in manifest.public() if m.version is None or m.version == m.latest_version]
    if not public:
        raise ConfigError(
            f"upstream '{upstream}' has no public model to build on; choose an upstream with data products."
        )
    products = sorted(public, key=lambda m: (not (m.raw.get("meta") or {}).get("data_product"), m.name))
    return {"project": upstream, "name": products[0].name}


def plan_new_domain(
    mesh: Mesh,
    name: str,
    owner: str | None = None,
    description: str | None = None,
    upstreams: tuple[str, ...] = (),
    path: str | None = None,
) -> NewDomainPlan:
    """Everything `mesh new-domain` will write, checked before anything is written."""
    check_name(name, mesh)
    for up in upstreams:
        if up not in mesh.domains:
            from mesh_tools.core.suggestions import did_you_mean

            raise ConfigError(
                f"unknown upstream domain '{up}'.{did_you_mean(up, mesh.domains)} Domains: {', '.join(mesh.domains)}."
            )
    relative = path or f"{mesh.self_service.projects_dir.rstrip('/')}/{name}"
    folder = (mesh.root / relative).resolve()
    if mesh.root.resolve() not in (folder, *folder.parents):
        raise ConfigError(f"'{relative}' is outside the mesh root; create the domain below {mesh.root}.")
    if folder.exists():
        raise ConfigError(f"{display_path(folder)} already exists; choose another name or --path.")
    owner_name, owner_email = parse_owner(owner, name)
    product = upstream_product(mesh, upstreams[0]) if upstreams else None
    variables = {
        "name": name,
        "owner_name": owner_name,
        "owner_email": owner_email,
        "description": description or "",
        "upstreams": list(dict.fromkeys(upstreams)),
        "product": product,
        "macros_path": macros_path_for(mesh, folder),
    }
    template = load_template(mesh)
    shared = render(template, template.shared, variables)
    files = {**shared, **render(template, template.starter, variables)}
    files[LOCK_FILE] = lock_text(template, shared)
    mesh_yml = registration(mesh, name, folder, (owner_name, owner_email), description)
    plan = NewDomainPlan(name, folder, files, mesh_yml, product)
    if owner is None:
        plan.notes.append(f"no --owner given: the owner is '{owner_name}'; set it in models/_groups.yml")
    if description and mesh_yml is None:  # only mesh.yml's domain list holds a domain's description
        plan.notes.append(
            "--description is not recorded: the mesh has no list of domains (mesh.yml `domains:`) to write it in"
            + ("" if mesh.config_path else "; `mesh init` writes a mesh.yml that lists them")
        )
    return plan


def create_domain(mesh: Mesh, plan: NewDomainPlan) -> None:
    """Place the planned domain and register it; on any failure, leave nothing behind."""
    from mesh_tools.core.files import write_atomic

    scratch = plan.folder.with_name(f".{plan.folder.name}.{os.getpid()}.partial")
    old_mesh_yml = mesh.config_path.read_text(encoding="utf-8") if mesh.config_path else None
    placed = False
    try:
        for relative, body in plan.files.items():
            target = scratch / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")
        os.replace(scratch, plan.folder)
        placed = True
        if plan.mesh_yml is not None and mesh.config_path is not None:
            write_atomic(mesh.config_path, plan.mesh_yml)
        load_mesh(mesh.root)  # the mesh with the new domain must load
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        if placed:
            shutil.rmtree(plan.folder, ignore_errors=True)
        if old_mesh_yml is not None and mesh.config_path is not None:
            if mesh.config_path.read_text(encoding="utf-8") != old_mesh_yml:
                write_atomic(mesh.config_path, old_mesh_yml)
        raise
