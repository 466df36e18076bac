"""Which folder dbt reads a project's profiles.yml from, in dbt's own order (below profiles and the engines)."""

from __future__ import annotations

import os
from pathlib import Path


def profiles_dir_for(project_dir: Path, explicit: Path | None = None) -> Path:
    """The folder dbt reads profiles.yml from when run inside ``project_dir`` (dbt's own order)."""
    if explicit is not None:
        return explicit
    env = os.environ.get("DBT_PROFILES_DIR")
    if env:
        path = Path(env).expanduser()
        return path if path.is_absolute() else (project_dir / path)
    if (project_dir / "profiles.yml").is_file():
        return project_dir
    return Path.home() / ".dbt"
