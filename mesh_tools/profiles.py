"""Find where a domain stores its data by reading its dbt profile (profiles.yml)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from mesh_tools.errors import ConfigError
from mesh_tools.mesh import Domain
from mesh_tools.yamlfile import display_path


@dataclass(frozen=True)
class Storage:
    """A domain's warehouse connection, as far as the mesh needs to know it."""

    adapter: str
    target: str
    path: Path | None  # the database file (DuckDB), or the warehouse folder of a local Spark session


def profiles_dir(domain: Domain) -> Path | None:
    """The folder dbt reads profiles.yml from when run inside the project, as dbt looks it up."""
    env = os.environ.get("DBT_PROFILES_DIR")
    for candidate in (domain.path, Path(env) if env else None, Path.home() / ".dbt"):
        if candidate is not None and (candidate / "profiles.yml").is_file():
            return candidate
    return None


def _env_var(name: str, default: Any = None) -> Any:
    if name in os.environ:
        return os.environ[name]
    if default is None:
        raise ConfigError(f"profiles.yml uses env_var('{name}') but {name} is not set. Set it or give a default.")
    return default


def storage_of(domain: Domain, target: str | None = None) -> Storage | None:
    """The storage of ``domain`` for ``target`` (its profile's default target when None)."""
    folder = profiles_dir(domain)
    if folder is None or not domain.profile:
        return None
    path = folder / "profiles.yml"
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    try:
        rendered = env.from_string(path.read_text(encoding="utf-8")).render(env_var=_env_var)
        profiles = yaml.safe_load(rendered) or {}
    except (jinja2.TemplateError, yaml.YAMLError, OSError) as exc:
        raise ConfigError(f"{display_path(path)}: cannot read profile '{domain.profile}' ({exc}).") from None
    profile = profiles.get(domain.profile)
    if not isinstance(profile, dict):
        raise ConfigError(f"{display_path(path)}: no profile named '{domain.profile}' (used by {domain.name}).")
    chosen = target or profile.get("target", "dev")
    output = (profile.get("outputs") or {}).get(chosen)
    if not isinstance(output, dict):
        raise ConfigError(f"{display_path(path)}: profile '{domain.profile}' has no target '{chosen}'.")
    adapter = str(output.get("type", ""))
    db_path = None
    if adapter == "spark" and output.get("method") == "session":
        # a local session keeps its tables under the warehouse folder, relative to the project
        params = output.get("server_side_parameters") or {}
        folder = Path(str(params.get("spark.sql.warehouse.dir", "spark-warehouse")))
        return Storage(adapter=adapter, target=chosen, path=(folder if folder.is_absolute() else domain.path / folder))
    if adapter == "duckdb":
        raw = str(output.get("path", ":memory:"))
        if raw != ":memory:" and not raw.startswith(("md:", "motherduck:", "s3://", "http")):
            file = Path(raw)
            db_path = (file if file.is_absolute() else domain.path / file).resolve()
    return Storage(adapter=adapter, target=chosen, path=db_path)
