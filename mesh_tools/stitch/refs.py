"""Find cross-project refs in a domain's code and check each against its upstream's manifest."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mesh_tools.core.errors import display_path
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.core.suggestions import did_you_mean
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node

_Q = r"""(['"])"""
REF = re.compile(
    r"\bref\(\s*" + _Q + r"(?P<project>[\w.-]+)\1\s*,\s*(['\"])(?P<model>[\w.-]+)\3"
    r"\s*(?:,\s*(?:v|version)\s*=\s*['\"]?(?P<version>[\w.-]+)['\"]?\s*)?\)"
)
_NOT_FOUND = re.compile(
    r"(?:'(?P<node>[^']+)' \((?P<file>[^)]+)\) )?"
    r"depends on a node named '(?P<model>[^']+)' (?:with version '(?P<version>[^']+)' )?"
    r"in package or project '(?P<project>[^']+)' which was not found"
)


@dataclass(frozen=True)
class CrossProjectRef:
    """``ref(project, model[, v=N])`` written at ``file:line``."""

    project: str
    model: str
    version: str | None
    file: Path
    line: int

    @property
    def where(self) -> str:
        return f"{display_path(self.file)}:{self.line}"

    @property
    def text(self) -> str:
        version = f", v={self.version}" if self.version is not None else ""
        return f"ref('{self.project}', '{self.model}'{version})"


def scan_refs(domain: Domain) -> list[CrossProjectRef]:
    """Every two-argument ref in the domain's SQL and YAML (unit-test inputs), in file order."""
    found: list[CrossProjectRef] = []
    for folder in domain.code_dirs:
        if not folder.is_dir():
            continue
        for file in sorted(folder.rglob("*")):
            if file.suffix not in (".sql", ".yml", ".yaml") or not file.is_file():
                continue
            text = file.read_text(encoding="utf-8", errors="replace")
            for match in REF.finditer(text):
                if match["project"] == domain.name:
                    continue
                line = text.count("\n", 0, match.start()) + 1
                found.append(CrossProjectRef(match["project"], match["model"], match["version"], file, line))
    return found


def check_ref(
    ref: CrossProjectRef,
    domain: Domain,
    mesh: Mesh,
    manifests: Mapping[str, Manifest],
    packages: Iterable[str] = (),
) -> str | None:
    """Why ``ref`` cannot resolve in ``domain``, or None when it is fine."""
    declared = set(domain.upstream_names)
    if ref.project not in declared:
        if ref.project in mesh.domains:
            return (
                f"{ref.where}: {ref.text} uses project '{ref.project}', which {domain.name} does not declare. "
                f"Add '- name: {ref.project}' under 'projects:' in {display_path(domain.dependencies_file)}."
            )
        if ref.project in set(packages):
            return None  # an ordinary dbt package installed by packages.yml
        return (
            f"{ref.where}: {ref.text}: no project named '{ref.project}' in the mesh."
            f"{did_you_mean(ref.project, set(mesh.domains) | declared)}"
        )
    manifest = manifests.get(ref.project)
    if manifest is None:
        return None
    return explain(ref.project, ref.model, ref.version, manifest, prefix=f"{ref.where}: {ref.text}") or restricted(
        ref, domain.name, manifest
    )


def _target(manifest: Manifest, model: str, version: str | None) -> Node | None:
    """The node ``ref(project, model[, v])`` resolves to: that version, else the latest."""
    nodes = manifest.named(model)
    if version is not None:
        nodes = [n for n in nodes if n.version == str(version)]
    else:
        nodes = [n for n in nodes if n.version is None or n.version == n.latest_version] or nodes
    return nodes[0] if nodes else None


def restricted(ref: CrossProjectRef, consumer: str, manifest: Manifest) -> str | None:
    """Why ``consumer`` may not read the product ``ref`` names (its ``meta.allowed_consumers``), or None."""
    node = _target(manifest, ref.model, ref.version)
    if node is None or node.readable_by(consumer):
        return None
    allowed = node.allowed_consumers or []
    owner = manifest.owner_of(node)
    contact = f" ({owner})" if owner else ""
    return (
        f"{ref.where}: {ref.text}: {ref.project} shares '{node.label}' only with "
        f"{', '.join(allowed) or 'no other domain'} (meta.allowed_consumers), so {consumer} may not read it and it "
        f"is not stitched. Ask its owner{contact} to add {consumer} to allowed_consumers, or use another product."
    )


def _offer(project: str, manifest: Manifest) -> str:
    """What ``project`` shares, to name in a refusal: its public models (and seeds and snapshots)."""
    public = manifest.public()
    if not public:
        return ""
    kinds = "models" if all(n.resource_type == "model" for n in public) else "models, seeds and snapshots"
    return f" Public {kinds} of {project}: {', '.join(sorted({n.name for n in public}))}."


def explain(project: str, model: str, version: str | None, manifest: Manifest, prefix: str) -> str | None:
    """Why ``project.model`` (version) is not available to other projects, or None. ``model`` may name a model,
    a seed or a snapshot: what ``ref(project, name)`` names, as dbt-loom shares them."""
    nodes = manifest.named(model)
    if not nodes:
        hint = did_you_mean(model, [m.name for m in manifest.shareable])
        return f"{prefix}: project '{project}' has no model '{model}'.{hint}{_offer(project, manifest)}"
    if version is not None:
        versions = sorted(n.version for n in nodes if n.version is not None)
        match = [n for n in nodes if n.version == str(version)]
        if not match:
            listed = ", ".join(versions) if versions else f"none (the {nodes[0].resource_type} is not versioned)"
            return (
                f"{prefix}: {nodes[0].resource_type} '{model}' of project '{project}' has no version {version}. "
                f"Versions: {listed}."
            )
        nodes = match
    else:
        latest = [n for n in nodes if n.version is None or n.version == n.latest_version]
        nodes = latest or nodes
    node = nodes[0]
    if node.is_public:
        return None
    owner = manifest.owner_of(node)
    contact = f" ({owner})" if owner else ""
    kind = node.resource_type
    # dbt 1.11 keeps a seed's or snapshot's access in its config (dbt-loom reads it there)
    how = "" if kind == "model" else " (`config: {access: public}` in its properties)"
    likewise = "" if kind == "model" else ", and so can public seeds and snapshots"
    return (
        f"{prefix}: '{node.label}' is a {node.access} {kind} of project '{project}' ({node.unique_id}). "
        f"Only public models can be referenced from another project{likewise}: ask its owner{contact} to make it "
        f"public{how}, or use a public {kind}.{_offer(project, manifest)}"
    )


def explain_dbt_error(message: str, manifests: Mapping[str, Manifest], consumer: str = "") -> str | None:
    """Rewrite dbt's generic "node ... was not found" error with the access level, or the access
    policy that left the product out of ``consumer``'s stub (a ref computed in Jinja), when we know it."""
    match = _NOT_FOUND.search(message)
    if not match or match["project"] not in manifests:
        return None
    prefix = (f"{match['file']} ({match['node']}): " if match["file"] else "") + (
        f"ref('{match['project']}', '{match['model']}')"
    )
    manifest = manifests[match["project"]]
    explained = explain(match["project"], match["model"], match["version"], manifest, prefix=prefix)
    if explained or not consumer:
        return explained
    node = _target(manifest, match["model"], match["version"])
    if node is None or node.readable_by(consumer):
        return None
    return (
        f"{prefix}: {match['project']} shares '{node.label}' only with "
        f"{', '.join(node.allowed_consumers or []) or 'no other domain'} (meta.allowed_consumers), so {consumer} "
        "may not read it and it is not stitched."
    )
