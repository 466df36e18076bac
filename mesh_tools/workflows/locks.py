"""What a run that writes a domain locks (core/lock.py), for every caller: the `mesh` commands and the Dagster
integration take the same locks, so a build started from either refuses (or waits for) one from the other.

A domain's lock covers its folder and its releases; a storage lock its database file (DuckDB: one writer per
file, whichever domains open it); the health history and the docs site are the mesh's, locked only while a
run writes them after its domains are done.
"""

from __future__ import annotations

from pathlib import Path

from mesh_tools.core import lock
from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh


def storage_files(mesh: Mesh, names: list[str], target: str | None) -> list[Path]:
    """The database files the domains' profiles open (DuckDB: one writer per file); a profile dbt cannot
    read locks nothing here (the run reports it as that domain's failure)."""
    from mesh_tools.dbt import profiles as dbt_profiles

    files: list[Path] = []
    for name in names:
        try:
            info = dbt_profiles.load_profile(mesh.domains[name].path, target, mesh.profiles_dir)
        except MeshError:
            continue
        files += [Path(f) for f in info.files]
    return files


def domain_locks(
    mesh: Mesh, names: list[str], *, storage: bool = False, target: str | None = None
) -> list[lock.Resource]:
    """The locks of a run that writes ``names`` (with ``storage``: also the database files they open)."""
    resources = [lock.domain(n) for n in dict.fromkeys(names)]
    if storage:
        resources += [lock.storage(f) for f in storage_files(mesh, list(dict.fromkeys(names)), target)]
    return resources


def health_lock(mesh: Mesh) -> lock.Resource:
    """The health history and its reports: written by `mesh health`, and after a build or sync."""
    return lock.folder("health", mesh.health_path, "the health history")


def docs_lock(mesh: Mesh, out: Path | None = None) -> lock.Resource:
    """A documentation site's folder (`mesh docs` replaces it whole)."""
    return lock.folder("docs", out or mesh.docs_path, "the documentation site")
