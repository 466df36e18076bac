"""Lint model SQL with sqlfluff for GOV502: every file of the mesh in one pass, in parallel, a file's result kept by
content so an unchanged file is not linted again.

What a file's lint depends on, and so its key: the file's bytes and its path (relative to the mesh root), the
sqlfluff configuration the rule builds (dialect, templater, rules, line length: mesh.yml's options), the versions
of Python, sqlfluff and every installed sqlfluff plugin, and, in case a later sqlfluff reads them for a string,
the sqlfluff config files (``.sqlfluff``, ``setup.cfg``, ``tox.ini``, ``pyproject.toml``) in the file's folder and
every folder above it up to the mesh root. The jinja templater is given no macro or search path: it reads no
other file (``{% include %}`` fails as a TMP violation, which the rule leaves out). The cache holds every
violation sqlfluff reported (code, description, line), so a cached file gives exactly what a fresh lint gives.

The cache is one JSON file, ``.mesh/sqlfluff-cache.json`` below the mesh root (where the readers keep their
parses); one that cannot be read or has another shape is ignored and rewritten, and a mesh root that cannot be
written lints without one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import MeshError
from mesh_tools.core.files import ensure_folder, write_atomic

CACHE_FILE = Path(".mesh") / "sqlfluff-cache.json"
CACHE_FORMAT = 1
CACHE_LIMIT = 50_000  # entries kept: this run's, then earlier ones, newest first
CONFIG_FILES = (".sqlfluff", "setup.cfg", "tox.ini", "pyproject.toml")
PARALLEL_FROM = 16  # fewer files than this are linted in this process: starting workers costs more

# (rule code, description, line number) of one violation, in sqlfluff's order
Violation = tuple[str, str, int | None]


@dataclass(frozen=True)
class SqlFile:
    """One file to lint: where it is, what it holds."""

    path: Path
    text: str


def lint_files(
    root: Path, files: list[SqlFile], overrides: dict[str, Any], configs: dict[str, Any], processes: int
) -> list[list[Violation]]:
    """sqlfluff's violations for each of ``files`` (in their order), from the cache where the key matches."""
    settings = {"overrides": overrides, "configs": configs}
    base = _fingerprint(settings)
    folders: dict[Path, str] = {}  # this call's reading of the config files (a later call reads them again)
    keys = [_key(base, root, item, folders) for item in files]
    cache_path = root / CACHE_FILE
    known = _read_cache(cache_path)
    out: dict[int, list[Violation]] = {}
    todo: list[int] = []
    for index, key in enumerate(keys):
        found = _valid(known.get(key))
        if found is None:
            todo.append(index)
        else:
            out[index] = found
    if todo:
        linted = _lint(settings, [(str(files[i].path), files[i].text) for i in todo], processes)
        for index, violations in zip(todo, linted, strict=True):
            out[index] = violations
        kept = {key: [list(v) for v in out[i]] for i, key in enumerate(keys)}
        for key, value in known.items():  # other meshes' subsets, other options: kept while there is room
            if len(kept) >= CACHE_LIMIT:
                break
            kept.setdefault(key, value)
        _write_cache(root, cache_path, kept)
    return [out[i] for i in range(len(files))]


def _lint(settings: dict[str, Any], items: list[tuple[str, str]], processes: int) -> list[list[Violation]]:
    # a process running other threads (an orchestrator, a build's gate) is not forked: a lock one of them holds
    # would stay held in the child
    if processes <= 1 or len(items) < PARALLEL_FROM or threading.active_count() > 1:
        _start(settings)
        return [_lint_one(item) for item in items]
    # fork: the workers start with sqlfluff already imported; each builds its linter once
    with ProcessPoolExecutor(
        processes, mp_context=get_context("fork"), initializer=_start, initargs=(settings,)
    ) as pool:
        return list(pool.map(_lint_one, items, chunksize=max(1, len(items) // (processes * 8))))


_LINTER: Any = None


def _start(settings: dict[str, Any]) -> None:
    """Make this process's linter (in a worker: once, when it starts)."""
    global _LINTER
    from sqlfluff.core import FluffConfig, Linter

    _LINTER = Linter(config=FluffConfig(overrides=settings["overrides"], configs=settings["configs"]))


def _lint_one(item: tuple[str, str]) -> list[Violation]:
    fname, text = item
    result = _LINTER.lint_string(text, fname=fname)
    return [(str(v.rule_code()), str(v.desc()), v.line_no) for v in result.get_violations()]


# -- the key
@cache
def _versions() -> str:
    """Python's, sqlfluff's and every sqlfluff plugin's version: a new one may lint the same file otherwise."""
    import sqlfluff

    plugins = sorted(
        f"{entry.name}={entry.value}@{entry.dist.version if entry.dist else '?'}"
        for entry in metadata.entry_points(group="sqlfluff")
    )
    return json.dumps([sys.version, sqlfluff.__version__, plugins])


def _fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([CACHE_FORMAT, _versions(), settings], sort_keys=True).encode()).hexdigest()


def _key(base: str, root: Path, item: SqlFile, folders: dict[Path, str]) -> str:
    try:
        where = str(item.path.relative_to(root))
    except ValueError:
        where = str(item.path)
    digest = hashlib.sha256()
    for part in (base, str(item.path), where, _config_files(item.path.parent, root, folders), item.text):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def _config_files(folder: Path, root: Path, folders: dict[Path, str]) -> str:
    """The sqlfluff config files in ``folder`` and each folder above it up to ``root`` (all of them when
    ``folder`` is not below ``root``), as one digest; ``folders``: the digests this call has made already."""
    return _folder_configs(folder.resolve(), root.resolve(), folders)


def _folder_configs(folder: Path, root: Path, folders: dict[Path, str]) -> str:
    if folder in folders:
        return folders[folder]
    digest = hashlib.sha256()
    for name in CONFIG_FILES:
        try:
            digest.update(f"{name}\0".encode() + (folder / name).read_bytes() + b"\0")
        except FileNotFoundError:
            continue
        except OSError as exc:  # unreadable: a key no other run shares, so nothing is taken from the cache
            digest.update(f"{name}\0{exc}\0{os.urandom(8).hex()}".encode())
    if folder != root and folder.parent != folder:
        digest.update(_folder_configs(folder.parent, root, folders).encode())
    folders[folder] = digest.hexdigest()
    return folders[folder]


# -- the file
def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _valid(entry: Any) -> list[Violation] | None:
    """A cached result as violations, or None when it is not one (then the file is linted again)."""
    if not isinstance(entry, list):
        return None
    out: list[Violation] = []
    for item in entry:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[1], str)):
            return None
        line = item[2]
        if line is not None and (not isinstance(line, int) or isinstance(line, bool)):
            return None
        out.append((item[0], item[1], line))
    return out


def _write_cache(root: Path, path: Path, files: dict[str, Any]) -> None:
    """Write the cache; a mesh root where it cannot be written keeps none (the lint is the same without it)."""
    try:
        ensure_folder(path.parent, root)
        write_atomic(path, json.dumps({"format": CACHE_FORMAT, "files": files}), below=root)
    except (OSError, MeshError):  # a link planted at .mesh (StorageError), a full disk, a read-only root
        pass


def relevant(violations: Iterable[Violation]) -> list[Violation]:
    """The style violations (templating and parsing gaps of the jinja templater left out)."""
    return [v for v in violations if v[0] not in ("TMP", "PRS")]
