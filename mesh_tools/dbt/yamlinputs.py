"""The YAML files dbt reads for a project, checked by the bounded reader before dbt is handed any of them.

dbt parses YAML with PyYAML and then renders and copies what it read: an alias bomb in profiles.yml
or a schema file expands there until the machine runs out of memory, and a file nested ten thousand
levels deep overflows its renderer. ``check_dbt_yaml`` runs ``core.yamlfile.check_bounded`` over
every file dbt would read (profiles.yml, the project's top-level files, the YAML files in its
resource paths, and the same for each installed package), so such a file is one located error in
well under a second, never a hang. Each file is read once per process while it stays unchanged.

Which files dbt reads is dbt-core 1.11's own search (``dbt/parser/search.py`` calling
``dbt_common.clients.system.find_matching``): every folder below a resource path, hidden ones and
ones named ``target`` included (``os.walk`` without following a linked subfolder), every file whose
name matches ``[!.#~]*.yml`` or ``.yaml`` without regard to case, less what the project's
``.dbtignore`` excludes. The check walks the same way, so nothing dbt reads escapes it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any

import yaml

from mesh_tools.core.yamlfile import check_bounded
from mesh_tools.dbt.profiles_dir import profiles_dir_for

# Top-level files dbt reads in a project folder (catalogs.yml since dbt 1.10).
PROJECT_FILES = ("dbt_project.yml", "dependencies.yml", "packages.yml", "selectors.yml", "catalogs.yml")
# Resource paths whose YAML files dbt parses (its ``all_source_paths``), with dbt's defaults.
_RESOURCE_PATHS = {
    "model-paths": ["models"],
    "seed-paths": ["seeds"],
    "snapshot-paths": ["snapshots"],
    "analysis-paths": ["analyses"],
    "macro-paths": ["macros"],
    "test-paths": ["tests"],
    "function-paths": ["functions"],
}
# dbt's pattern for schema files (search.py: "[!.#~]*" + extension, matched ignoring case).
_SCHEMA_FILE = tuple(re.compile(fnmatch.translate(f"[!.#~]*{ext}"), re.IGNORECASE) for ext in (".yml", ".yaml"))


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
    ignored = _ignore_spec(folder)
    searched: set[str] = set()
    for key, default in _RESOURCE_PATHS.items():
        value = project.get(key, default)
        for entry in value if isinstance(value, list) else [value]:
            if not isinstance(entry, str) or "{" in entry:  # a path dbt renders at run time is its own to read
                continue
            entry = entry.rstrip("/")  # dbt searches each path once, without its trailing slash
            if entry not in searched:
                searched.add(entry)
                _check_folder(folder, entry, ignored)
    return project


def _check_folder(project: Path, searched: str, ignored: Any) -> None:
    """Check every schema file dbt finds below ``project/searched`` (find_matching's walk, file for file)."""
    top = os.path.join(os.path.normpath(project), searched)
    if not os.path.isdir(top):
        return
    for here, dirs, files in os.walk(top):  # like dbt: every subfolder, none followed through a link
        dirs.sort()
        for name in sorted(files):
            if not any(pattern.match(name) for pattern in _SCHEMA_FILE):
                continue
            path = os.path.join(here, name)
            if ignored is not None and ignored.match_file(os.path.join(searched, os.path.relpath(path, top))):
                continue
            check_bounded(Path(path))


def _ignore_spec(folder: Path) -> Any:
    """The project's ``.dbtignore`` as dbt reads it (gitignore patterns), or None without one."""
    path = folder / ".dbtignore"
    if not path.is_file():
        return None
    import pathspec  # dbt's own dependency, for dbt's own reading of the file

    try:
        with open(path, encoding="utf-8") as handle:
            return pathspec.PathSpec.from_lines(pathspec.patterns.GitWildMatchPattern, handle)
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # dbt fails on it itself: everything is checked meanwhile


def _read(path: Path) -> dict[str, Any]:
    """The mapping in an already checked dbt_project.yml; empty when there is none or dbt would refuse it."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
