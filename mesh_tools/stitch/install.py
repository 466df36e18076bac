"""Put stub packages in place in a consumer's packages folder, atomically and only when changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mesh_tools.mesh import Domain
from mesh_tools.stitch.stub import MARKER, read_marker
from mesh_tools.yamlfile import load_yaml


def _package_name(path: Path) -> str | None:
    try:
        doc = load_yaml(path / "dbt_project.yml", required=False)
    except Exception:  # a broken local package is dbt deps' to report
        return None
    data = doc.data if doc and isinstance(doc.data, dict) else {}
    name = data.get("name")
    return name if isinstance(name, str) else None


def needs_deps(domain: Domain) -> bool:
    """Whether `dbt deps` must run before the domain can parse: a declared package is not installed."""
    if not domain.local_packages and not domain.remote_packages:
        return False
    folder = domain.packages_dir
    if not folder.is_dir():
        return True
    local_names = set()
    for local in domain.local_packages:
        name = _package_name(local)
        if name and not (folder / name).exists():
            return True
        local_names.add(name)
    # what else is installed must cover the remote packages; the mesh's own (stubs, runtime) do not count
    others = [
        p
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in local_names and not (p / MARKER).is_file()
    ]
    return len(others) < domain.remote_packages


def _same(folder: Path, files: dict[str, str]) -> bool:
    if folder.is_symlink() or not folder.is_dir():
        return False
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    if present != set(files):
        return False
    return all((folder / rel).read_text(encoding="utf-8") == text for rel, text in files.items())


def install_stub(domain: Domain, upstream: str, files: dict[str, str]) -> bool:
    """Write the stub of ``upstream`` into the domain's packages folder; True when it changed.

    The new stub is written beside the old one and swapped in with renames, so dbt never sees
    a half-written package. A local package of the same name (the "local fallback" that would
    build the upstream's models again inside the consumer) is replaced: its link is removed,
    never the upstream project it points at.
    """
    final = domain.packages_dir / upstream
    if _same(final, files):
        return False
    scratch = domain.target_dir / "mesh_stitch_tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    fresh = scratch / f"{upstream}-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    for rel, text in files.items():
        path = fresh / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    domain.packages_dir.mkdir(parents=True, exist_ok=True)
    old: Path | None = None
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.is_dir():
        old = scratch / f"{upstream}-old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    fresh.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return True


def remove_stale_stubs(domain: Domain) -> list[str]:
    """Delete stubs of upstreams the domain no longer declares; return their names."""
    folder = domain.packages_dir
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if entry.is_symlink() or not (entry / MARKER).is_file():
            continue
        marker = read_marker(entry) or {}
        if marker.get("runtime"):
            continue
        if marker.get("upstream") not in domain.upstream_names:
            shutil.rmtree(entry)
            removed.append(entry.name)
    return removed
