"""`mesh init`: write a commented mesh.yml for a mesh that has none, with the recommended governance floor.

The mesh builds without a mesh.yml (every dbt project below the root is a domain, governance
advisory). ``mesh init`` is the one step to adopting the floor: it lists the domains it found
and sets ``governance.enforce: true`` with every rule at its recommended severity, so an
error-level finding then blocks a domain's releases. ``--advisory`` writes the same file with
enforcement off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mesh_tools.core.config import MESH_FILE
from mesh_tools.core.errors import ConfigError, display_path
from mesh_tools.core.files import create_partial
from mesh_tools.core.mesh import Mesh, load_mesh


def _quoted(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


# A governance rule of the recommended floor: code, default severity, name, one-line description.
FloorRule = tuple[str, str, str, str]


def render_mesh_yml(mesh: Mesh, floor: Iterable[FloorRule], *, enforce: bool = True) -> str:
    """The text of mesh.yml for ``mesh`` (found by discovery), commented for the people who will edit it.

    ``floor``: the governance rules to list at their default severity (the caller knows the rules).
    """
    domains = [
        "# One domain per dbt project: the key is the project's name (dbt_project.yml `name:`).",
        "# Without this list, every dbt project below the root is a domain (nested ones too).",
    ]
    if not mesh.domains:
        # last in the file: the entries `mesh new-domain` adds then follow it, not the governance comments below it
        domains += ["# None yet: `mesh new-domain NAME` creates a domain and lists it here.", "domains: {}"]
    else:
        domains.append("domains:")
    for name, domain in mesh.domains.items():
        path = domain.path.relative_to(mesh.root) if mesh.root in domain.path.parents else domain.path
        domains += [
            f"  {name if name.isidentifier() else _quoted(name)}:",
            f"    path: {_quoted(str(path))}",
            "    # owner: {name: <team>, email: <address>}",
            "    # description: <what the domain owns>",
        ]
    lines = [
        "# mesh.yml for the dbt projects below this folder, written by `mesh init`.",
        "# Every key but `name` is optional; mesh-tools' docs/reference/configuration.md documents them all.",
        f"name: {_quoted(mesh.name)}",
        "",
        *([*domains, ""] if mesh.domains else []),
        "# Governance. With `enforce: true` an error-level finding blocks the domain's releases (its",
        "# current releases stay current); with `false` findings are advisory: `mesh build` counts them",
        "# and `mesh check` lists them. A domain may raise a severity or waive a rule for named models",
        "# in its own mesh_domain.yml, never lower one. `mesh rules` explains each rule.",
        "governance:",
        f"  enforce: {'true' if enforce else 'false'}",
        "  fail_on: error            # lowest severity that makes `mesh check` fail",
        "  rules:                    # the recommended floor (each rule at its default severity)",
    ]
    for code, severity, name, description in floor:
        setting = f"{code}: {severity}"
        lines.append(f"    {setting:<18}# {name}: {description}")
    lines += [
        "",
        "# Where releases, the health history and the documentation site live (defaults shown).",
        "# exchange: {path: exchange, retention: 5}",
        "# health: {path: health}",
        "# docs: {path: site}",
        "",
        *([] if mesh.domains else [*domains, ""]),
    ]
    return "\n".join(lines)


def init_mesh(
    root: Path, floor: Iterable[FloorRule], *, enforce: bool = True, dry_run: bool = False
) -> tuple[Path, str, Mesh]:
    """Write ``root/mesh.yml`` (never over an existing one); the path, the text, and the mesh it describes."""
    path = root / MESH_FILE
    if path.exists():
        raise ConfigError(
            f"{display_path(path)} already exists; `mesh init` never replaces it. "
            "Edit it (mesh-tools' docs/reference/configuration.md)."
        )
    mesh = load_mesh(root, allow_empty=True)  # an empty folder starts a mesh: `mesh new-domain` fills it
    text = render_mesh_yml(mesh, floor, enforce=enforce)
    if dry_run:
        return path, text, mesh
    from mesh_tools.core.config import load_mesh_config

    partial, fd = create_partial(path)  # a new file of its own: never through a planted link
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        load_mesh_config(partial)  # what we write must read back
        os.link(partial, path)  # fails if a mesh.yml appeared meanwhile: never replace one
    except FileExistsError:
        raise ConfigError(f"{display_path(path)} appeared while `mesh init` ran; nothing written.") from None
    finally:
        partial.unlink(missing_ok=True)
    return path, text, load_mesh(root, allow_empty=True)
