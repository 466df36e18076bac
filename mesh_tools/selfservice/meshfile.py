"""Round-trip edits of YAML files the mesh changes for a team: mesh.yml, model properties.

ruamel.yaml keeps the comments, the order and the quoting of everything not edited.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ConfigError, display_path


def _yaml() -> Any:
    from ruamel.yaml import YAML

    handler = YAML()
    handler.preserve_quotes = True
    handler.indent(mapping=2, sequence=4, offset=2)
    handler.width = 110
    return handler


def load_round_trip(path: Path) -> Any:
    from ruamel.yaml.error import YAMLError

    try:
        return _yaml().load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise ConfigError(f"{display_path(path)}: cannot read ({str(exc).splitlines()[0]}).") from None


def dump_round_trip(data: Any) -> str:
    stream = io.StringIO()
    _yaml().dump(data, stream)
    return stream.getvalue()


def registration(
    mesh: Any, name: str, folder: Path, owner: tuple[str, str | None], description: str | None
) -> str | None:
    """The new mesh.yml text registering a domain, or None when the mesh discovers its domains."""
    import os

    from mesh_tools.core.config import load_mesh_config

    if mesh.config_path is None:
        return None
    config, _ = load_mesh_config(mesh.config_path)
    if config.domains is None:
        return None
    return with_domain(mesh.config_path, name, os.path.relpath(folder, mesh.root), owner, description)


def with_domain(mesh_yml: Path, name: str, path: str, owner: tuple[str, str | None], description: str | None) -> str:
    """mesh.yml's text with ``name`` added under ``domains:`` (comments and order kept)."""
    from ruamel.yaml.comments import CommentedMap

    data = load_round_trip(mesh_yml)
    domains = data.get("domains")
    if domains is None:
        domains = CommentedMap()
        data["domains"] = domains
    domains.fa.set_block_style()  # `domains: {}` (an empty mesh's) grows into a list of lines, not one flow line
    entry = CommentedMap()
    entry["path"] = path
    if description:
        entry["description"] = description
    owner_map = CommentedMap()
    owner_map["name"] = owner[0]
    if owner[1]:
        owner_map["email"] = owner[1]
    owner_map.fa.set_flow_style()
    entry["owner"] = owner_map
    domains[name] = entry
    return dump_round_trip(data)
