"""The mesh's domain template: which files it has, which are shared, and rendering them for a domain.

Template files use ``[[ variable ]]`` and ``[% block %]`` so that dbt's own ``{{ }}`` passes
through untouched. A domain records what the shared files looked like when it last took them
from the template (``.mesh-template.json``), the base of the 3-way merge `mesh upgrade-domain` does.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from mesh_tools.core.errors import ConfigError, display_path
from mesh_tools.core.jsonfile import loads
from mesh_tools.core.mesh import Domain, Mesh

LOCK_FILE = ".mesh-template.json"
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
# Names a domain cannot take: SQL keywords (its name becomes a schema and a database alias),
# names dbt gives meaning to, and the mesh's own folders and packages.
RESERVED = frozenset(
    """
    all alter and any as asc between by case cast check column constraint create cross current
    database default delete desc distinct drop else end except exists false fetch for foreign from
    full grant group having in index inner insert intersect into is join key lateral left like
    limit natural not null of offset on or order outer primary references right rollback schema
    select session set some table then to true union unique update user using values view when
    where window with
    adapter builtins config dbt dbt_packages env exceptions graph invocation_id macros model
    models modules project ref return run_started_at seeds snapshots source sources target tests
    this var
    exchange health mesh mesh_macros mesh_tools site
    """.split()
)


def check_name(name: str, mesh: Mesh) -> None:
    """Refuse a name that is not a lower-case identifier, is reserved, or is taken."""
    if not IDENTIFIER.fullmatch(name):
        raise ConfigError(
            f"'{name}' is not a valid domain name: use lower-case letters, digits and underscores, "
            "starting with a letter (it becomes a dbt project, profile and schema name)."
        )
    if name in RESERVED:
        raise ConfigError(f"'{name}' is a reserved word (SQL, dbt or the mesh's own); choose another domain name.")
    if name in mesh.domains:
        where = display_path(mesh.domains[name].path)
        raise ConfigError(f"a domain named '{name}' already exists ({where}); choose another name.")
    if name.startswith("upstream_"):
        raise ConfigError(f"'{name}': names starting with 'upstream_' are the schemas of stitched upstream products.")


@dataclass(frozen=True)
class Template:
    root: Path
    version: str
    shared: tuple[str, ...]
    starter: tuple[str, ...]

    @property
    def files(self) -> Path:
        return self.root / "files"


def builtin_template() -> Path:
    return Path(str(resources.files("mesh_tools.selfservice").joinpath("template")))


def load_template(mesh: Mesh) -> Template:
    """The mesh's template (mesh.yml ``self_service.template``), else the built-in one."""
    configured = mesh.self_service.template
    root = builtin_template()
    if configured:
        root = Path(configured) if Path(configured).is_absolute() else mesh.root / configured
    spec = root / "template.yml"
    try:
        data = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(
            f"{display_path(spec)}: domain template not found. Fix self_service.template in mesh.yml "
            "or remove it to use the built-in template."
        ) from None
    except (yaml.YAMLError, OSError) as exc:
        raise ConfigError(f"{display_path(spec)}: cannot read the domain template ({exc}).") from None
    shared, starter = data.get("shared") or [], data.get("starter") or []
    if not isinstance(shared, list) or not isinstance(starter, list):
        raise ConfigError(f"{display_path(spec)}: 'shared' and 'starter' must be lists of file paths.")
    for entry in [*shared, *starter]:
        if not (root / "files" / entry).is_file():
            raise ConfigError(f"{display_path(spec)}: lists '{entry}', which is not in {display_path(root / 'files')}.")
    return Template(root, str(data.get("version", "1")), tuple(shared), tuple(starter))


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def render(template: Template, entries: tuple[str, ...], variables: dict[str, Any]) -> dict[str, str]:
    """Rendered files: path inside the domain -> content."""
    env = _environment()
    out = {}
    for entry in entries:
        try:
            path = env.from_string(entry).render(**variables)
            body = env.from_string((template.files / entry).read_text(encoding="utf-8")).render(**variables)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{display_path(template.files / entry)}: cannot render ({exc}).") from None
        out[path] = body
    return out


def parse_owner(text: str | None, name: str) -> tuple[str, str | None]:
    """``"Returns Team <returns@acme.test>"`` -> (name, email); no owner -> ("<name> team", None)."""
    if not text:
        return f"{name.replace('_', ' ').title()} team", None
    match = re.match(r"^\s*(.*?)\s*<([^<>@\s]+@[^<>\s]+)>\s*$", text)
    if match:
        return match.group(1) or match.group(2), match.group(2)
    if "@" in text and " " not in text.strip():
        return text.strip(), text.strip()
    return text.strip(), None


def macros_path_for(mesh: Mesh, folder: Path) -> str | None:
    """The shared macros package the other domains use, relative to ``folder``."""
    counts: dict[Path, int] = {}
    for domain in mesh.domains.values():
        for package in domain.local_packages:
            counts[package.resolve()] = counts.get(package.resolve(), 0) + 1
    if not counts:
        default = mesh.root / "macros"
        if not (default / "dbt_project.yml").is_file():
            return None
        counts[default.resolve()] = 1
    best = max(counts, key=lambda p: (counts[p], str(p)))
    return os.path.relpath(best, folder)


def variables_of(mesh: Mesh, domain: Domain) -> dict[str, Any]:
    """The template variables of an existing domain, read from what it is now."""
    owner = domain.owner
    return {
        "name": domain.name,
        "owner_name": owner.name if owner and owner.name else f"{domain.name.title()} team",
        "owner_email": owner.email if owner else None,
        "description": domain.description or "",
        "upstreams": list(domain.upstream_names),
        "product": None,
        "macros_path": macros_path_for(mesh, domain.path),
    }


def read_lock(folder: Path) -> dict[str, Any] | None:
    path = folder / LOCK_FILE
    if not path.is_file():
        return None
    try:
        data = loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(
            f"{display_path(path)}: template record is corrupt. Remove it; the next upgrade then compares "
            "without a base and asks for --force."
        ) from None
    return data if isinstance(data, dict) else None


def lock_text(template: Template, shared: dict[str, str]) -> str:
    record = {
        "template": str(template.root) if template.root != builtin_template() else "built-in",
        "version": template.version,
        "shared": shared,
    }
    return json.dumps(record, indent=2, sort_keys=True) + "\n"
