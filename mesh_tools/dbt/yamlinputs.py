"""The YAML files dbt reads for a project, checked by the bounded reader before dbt is handed any of them.

dbt parses YAML with PyYAML and then renders and copies what it read: an alias bomb in profiles.yml
or a schema file expands there until the machine runs out of memory, and a file nested ten thousand
levels deep overflows its renderer. ``check_dbt_yaml`` runs ``core.yamlfile.check_bounded`` over
every file dbt would read (profiles.yml, the project's top-level files, the YAML files in its
resource paths, and the same for each installed package), so such a file is one located error in
well under a second, never a hang. Each file is read once per process while it stays unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from mesh_tools.core.yamlfile import check_bounded
from mesh_tools.dbt.profiles import profiles_dir_for

# Top-level files dbt reads in a project folder (catalogs.yml since dbt 1.10).
PROJECT_FILES = ("dbt_project.yml", "dependencies.yml", "packages.yml", "selectors.yml", "catalogs.yml")
# Resource paths whose YAML files dbt parses, with dbt's defaults.
_RESOURCE_PATHS = {
    "model-paths": ["models"],
    "seed-paths": ["seeds"],
    "snapshot-paths": ["snapshots"],
    "analysis-paths": ["analyses"],
    "macro-paths": ["macros"],
    "test-paths": ["tests"],
}
_SKIPPED = {"target", "dbt_packages", "dbt_modules", "logs", "__pycache__", "node_modules"}


def check_dbt_yaml(project_dir: Path, profiles_dir: Path | None = None) -> None:
    """ConfigError (file, line, what to do) for the first YAML file dbt would read that could hang it."""
    check_bounded(profiles_dir_for(project_dir, profiles_dir) / "profiles.yml")
    project = _check_project(project_dir)
    install = project.get("packages-install-path", "dbt_packages")
    packages = project_dir / install if isinstance(install, str) else None
    if packages is not None and packages.is_dir():
        for package in sorted(packages.iterdir()):
            if package.is_dir() and (package / "dbt_project.yml").is_file():
                _check_project(package)


def _check_project(folder: Path) -> dict[str, Any]:
    """Check a project's (or a package's) top-level files and resource paths; its dbt_project.yml's data."""
    for name in PROJECT_FILES:
        check_bounded(folder / name)
    project = _read(folder / "dbt_project.yml")
    for key, default in _RESOURCE_PATHS.items():
        value = project.get(key, default)
        for entry in value if isinstance(value, list) else [value]:
            if isinstance(entry, str) and "{" not in entry:  # a path dbt renders at run time is its own to read
                _check_folder(folder / entry)
    return project


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        return
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED and not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".yml", ".yaml")):
                check_bounded(Path(here) / name)


def _read(path: Path) -> dict[str, Any]:
    """The mapping in an already checked dbt_project.yml; empty when there is none or dbt would refuse it."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
