"""What a run that writes a domain locks (core/lock.py), for every caller: the `mesh` commands and the Dagster
integration take the same locks, so a build started from either refuses (or waits for) one from the other.

A domain's lock covers its folder and its releases; a storage lock its database file (DuckDB: one writer per
file, whichever domains open it); the health history and the docs site are the mesh's, locked only while a
run writes them after its domains are done.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mesh_tools.core import lock
from mesh_tools.core.errors import MeshError
from mesh_tools.core.files import write_atomic
from mesh_tools.core.mesh import Mesh
from mesh_tools.dbt.profiles_dir import profiles_dir_for
from mesh_tools.state.inputs import profile_env_digest

STORAGE_CACHE = "profile-storage.json"  # in .mesh/: each domain's storage files, by what its profile render read
# renders made by this process, written by ``save_storage_cache`` once its command ran (a refused one writes nothing)
_PENDING: dict[Path, dict[str, dict[str, object]]] = {}


def _profile_key(mesh: Mesh, name: str, target: str | None) -> str | None:
    """A digest of everything dbt's rendering of the domain's profile reads: profiles.yml and dbt_project.yml
    (its `profile:`), their folders, the target asked for, and the variables profiles.yml and dbt read (digests,
    never values). None when a file cannot be read (then dbt renders it, and says what is wrong)."""
    domain = mesh.domains[name]
    folder = profiles_dir_for(domain.path, mesh.profiles_dir)
    try:
        files = (folder / "profiles.yml").read_bytes(), (domain.path / "dbt_project.yml").read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256(repr((str(domain.path.resolve()), str(folder.resolve()), target)).encode())
    for data in files:
        digest.update(hashlib.sha256(data).digest())
    digest.update(profile_env_digest(folder / "profiles.yml").encode())
    return digest.hexdigest()


_CACHE_LIMIT = 16 * 2**20  # far above 200 domains' entries; a larger file is not ours to read


def _read_cache(path: Path) -> dict[str, object]:
    """The kept renders; anything else (missing, not a regular file, too large, not JSON, not a map) is empty:
    every profile is rendered again and the file rewritten."""
    try:
        if not path.is_file() or path.stat().st_size > _CACHE_LIMIT:
            return {}
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def storage_files(mesh: Mesh, names: list[str], target: str | None) -> list[Path]:
    """The database files the domains' profiles open (DuckDB: one writer per file); a profile dbt cannot
    read locks nothing here (the run reports it as that domain's failure).

    Rendering a profile needs dbt (about a second to import); a mesh where nothing changed otherwise never
    starts it. So each domain's files are kept in ``.mesh/profile-storage.json`` by a digest of every input of
    the render (``_profile_key``), and dbt renders only a profile whose inputs changed; what it renders is kept
    once the command ran (``save_storage_cache``)."""
    cache_path = mesh.root / ".mesh" / STORAGE_CACHE
    cache = _read_cache(cache_path)
    files: list[Path] = []
    for name in names:
        key = _profile_key(mesh, name, target)
        kept = cache.get(name)
        if key is not None and isinstance(kept, dict) and kept.get("key") == key \
                and isinstance(kept.get("files"), list) and all(isinstance(f, str) for f in kept["files"]):  # fmt: skip
            files += [Path(f) for f in kept["files"]]
            continue
        from mesh_tools.dbt import profiles as dbt_profiles

        try:
            info = dbt_profiles.load_profile(mesh.domains[name].path, target, mesh.profiles_dir)
        except MeshError:
            continue
        files += [Path(f) for f in info.files]
        if key is not None:
            _PENDING.setdefault(cache_path, {})[name] = {"key": key, "files": [str(f) for f in info.files]}
    return files


def save_storage_cache(mesh: Mesh) -> None:
    """Keep the profile renders this process made (``storage_files``) for the next command: called once a
    command ran, never by one that was refused (it leaves nothing behind)."""
    cache_path = mesh.root / ".mesh" / STORAGE_CACHE
    pending = _PENDING.pop(cache_path, None)
    if not pending:
        return
    cache = {**_read_cache(cache_path), **pending}
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_path, json.dumps(cache, indent=1, sort_keys=True) + "\n", below=mesh.root)
    except (OSError, MeshError):
        pass  # a read-only mesh, a link where it goes (refused): rendered again next time


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
