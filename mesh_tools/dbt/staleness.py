"""Whether a domain's manifest still describes its files, so no command judges stale artifacts silently.

dbt writes ``manifest.json`` when it parses. A file of the project changed after that (a model,
its YAML, a macro, dbt_project.yml, a local package such as the shared macros) means the
manifest may no longer say what the project says: `mesh check` and `mesh docs` parse such a
domain again first, and `mesh health` says that its report describes the last build.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import display_path
from mesh_tools.core.mesh import Domain
from mesh_tools.dbt.packages import MARKER

# Files at the project's top level that change what dbt parses.
PROJECT_FILES = ("dbt_project.yml", "dependencies.yml", "packages.yml", "selectors.yml", "dbt_loom.config.yml")
# Build output and installed packages inside a code folder are not the project's sources.
_SKIPPED = {"target", "dbt_packages", "dbt_modules", "logs", "__pycache__", ".git"}
# What dbt parses: SQL, YAML, Python models, docs blocks, seeds (data files and databases are not code).
_SOURCES = {".sql", ".yml", ".yaml", ".py", ".md", ".csv", ".jinja", ".j2"}


def _newest(folder: Path, after: float) -> Path | None:
    """The first file below ``folder`` modified after ``after`` (a walk, stopping at the first hit)."""
    for here, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in _SKIPPED and not d.startswith(".")]
        for name in files:
            path = Path(here) / name
            if path.suffix.lower() not in _SOURCES:
                continue
            try:
                if path.stat().st_mtime > after:
                    return path
            except OSError:
                continue
    return None


def changed_since_manifest(domain: Domain, others: tuple[Path, ...] = ()) -> Path | None:
    """A file of ``domain`` changed after its manifest was written, or None (also when there is no manifest).

    ``others``: folders of the other domains; a local package that is one of them (the pre-mesh
    way to share models) is stitched as an upstream, not parsed as code of this domain.
    """
    try:
        written = domain.manifest_path.stat().st_mtime
    except OSError:
        return None
    for name in PROJECT_FILES:
        path = domain.path / name
        try:
            if path.stat().st_mtime > written:
                return path
        except OSError:
            continue
    for folder in (*domain.code_dirs, *(p for p in domain.local_packages if p not in others)):
        if folder.is_dir():
            hit = _newest(folder, written)
            if hit is not None:
                return hit
    return None


def stale_message(domain: Domain, changed: Path) -> str:
    return (
        f"{display_path(changed)} changed after {domain.name}'s manifest was written "
        f"({display_path(domain.manifest_path)})"
    )


def stale_domains(domains: list[Domain], every: list[Domain] | None = None) -> dict[str, str]:
    """Domain name -> why its manifest is stale, for the domains whose files changed after it."""
    others = tuple(d.path.resolve() for d in (every or domains))
    out = {}
    for domain in domains:
        changed = changed_since_manifest(domain, others)
        if changed is not None:
            out[domain.name] = stale_message(domain, changed)
    return out


def code_fingerprint(domain: Domain, stubs: bool = True) -> str:
    """A hash of everything dbt parses for ``domain``: its project files, code folders, local packages
    and installed packages (the upstream stubs and the runtime package included, unless not ``stubs``:
    then the domain's own code only, which a new upstream release does not change).

    Equal fingerprints mean dbt would parse the same project: a state-aware build then needs no
    state comparison to know that no node's code changed.
    """
    import hashlib

    digest = hashlib.sha256()
    for name in PROJECT_FILES:
        _hash_file(digest, domain.path / name, name)
    folders = [*domain.code_dirs, *domain.data_dirs, *domain.local_packages, domain.packages_dir]
    for folder in sorted(set(folders), key=str):
        if not folder.is_dir():
            continue
        for here, dirs, files in os.walk(folder, followlinks=True):
            dirs[:] = sorted(d for d in dirs if d not in _SKIPPED - {"dbt_packages"} and not d.startswith("."))
            if Path(here) != folder and Path(here).name in ("target", "logs"):
                continue
            if not stubs and Path(here).parent == domain.packages_dir and MARKER in files:
                dirs[:] = []
                continue
            for name in sorted(files):
                path = Path(here) / name
                if path.suffix.lower() in _SOURCES or name == MARKER:
                    _hash_file(digest, path, os.path.relpath(path, domain.path))
    return digest.hexdigest()


def _hash_file(digest: Any, path: Path, label: str) -> None:
    try:
        content = path.read_bytes()
    except OSError:
        return
    digest.update(f"{label}\0{len(content)}\0".encode())
    digest.update(content)
