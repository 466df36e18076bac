"""Whether a domain's manifest still describes its files, judged by their content, so no command judges stale artifacts.

dbt writes ``manifest.json`` when it parses. Whenever the mesh runs dbt in a domain, it records beside
the manifest what that parse read: the SHA-256 of every parse input (project files, code folders,
seeds and docs, local and installed packages, the upstream stubs), tied to the manifest by its
invocation id. A reader compares the files with that record:

- a file whose content differs, a new file, a removed file: the manifest is stale, and that file is named;
- no record, or a record of another manifest (a dbt command run by hand): whether the manifest is
  current cannot be told, so a reader that needs it current parses again;
- modification times are only a fast path to a change (a file newer than the manifest whose content
  differs from the record), never proof that nothing changed: an edit restored with its old time
  (``cp -p``, ``tar x``, ``rsync -a``) is found by its content.

`mesh check`, `mesh docs` and `mesh contracts export` parse a stale domain again into a scratch
target path outside the domain (``.mesh/parsed/``), never into its ``target/``; `mesh health` says that
its report describes the last build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import display_path
from mesh_tools.core.jsonfile import loads
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.dbt.packages import MARKER

# Files at the project's top level that change what dbt parses.
PROJECT_FILES = ("dbt_project.yml", "dependencies.yml", "packages.yml", "selectors.yml", "dbt_loom.config.yml")
# Build output and installed packages inside a code folder are not the project's sources.
_SKIPPED = {"target", "dbt_packages", "dbt_modules", "logs", "__pycache__", ".git"}
# What dbt parses: SQL, YAML, Python models, docs blocks, seeds (data files and databases are not code).
_SOURCES = {".sql", ".yml", ".yaml", ".py", ".md", ".csv", ".jinja", ".j2"}
# What the mesh recorded of a parse, beside the manifest it wrote (target/, or a scratch target path).
RECORD = "mesh_parse_inputs.json"
PARSED_DIR = Path(".mesh") / "parsed"  # readers' parses of stale domains, by content: never a domain's target/
_INVOCATION = re.compile(rb'"invocation_id"\s*:\s*"([^"]{1,100})"')


def _parse_files(domain: Domain, stubs: bool = True, skip: frozenset[Path] = frozenset()) -> Iterator[tuple[str, Path]]:
    """(label, path) of every file dbt parses for ``domain``, in a fixed order (see code_fingerprint).

    ``skip``: resolved folders left out (other domains used as local packages: stitched, not parsed as code).
    """
    for name in PROJECT_FILES:
        yield name, domain.path / name
    # dbt reads every folder below a resource path (hidden ones, ones named target: dbt/parser/search.py), so
    # below the domain's own resource paths nothing is left out but the domain's own build output; a package
    # (local, or installed: one level deeper) leaves out its own build output and hidden folders at its top.
    output = {p.resolve() for p in (domain.target_dir, domain.packages_dir, domain.path / "logs")}
    tops = {f: 0 for f in [*domain.code_dirs, *domain.data_dirs]}
    tops.update({f: 1 for f in domain.local_packages} | {domain.packages_dir: 2})
    for folder in sorted(tops, key=str):
        if not folder.is_dir() or (skip and folder.resolve() in skip):
            continue
        for here, dirs, files in os.walk(folder, followlinks=True):
            if tops[folder] == 0:
                dirs[:] = sorted(d for d in dirs if (Path(here) / d).resolve() not in output)
            elif len(Path(here).relative_to(folder).parts) < tops[folder]:
                dirs[:] = sorted(d for d in dirs if d not in _SKIPPED - {"dbt_packages"} and not d.startswith("."))
            else:
                dirs.sort()
            if skip:
                dirs[:] = [d for d in dirs if (Path(here) / d).resolve() not in skip]
            if not stubs and Path(here).parent == domain.packages_dir and MARKER in files:
                dirs[:] = []
                continue
            for name in sorted(files):
                path = Path(here) / name
                if path.suffix.lower() in _SOURCES or name == MARKER:
                    yield os.path.relpath(path, domain.path), path


def parse_files(domain: Domain, stubs: bool = True) -> Iterator[Path]:
    """Every file dbt parses for ``domain`` (``stubs``: with the mesh's generated packages), as dbt finds them."""
    return (path for _label, path in _parse_files(domain, stubs))


def code_fingerprint(domain: Domain, stubs: bool = True) -> str:
    """A hash of everything dbt parses for ``domain``: its project files, code folders, local packages
    and installed packages (the upstream stubs and the runtime package included, unless not ``stubs``:
    then the domain's own code only, which a new upstream release does not change).

    Equal fingerprints mean dbt would parse the same project: a state-aware build then needs no
    state comparison to know that no node's code changed.
    """
    digest = hashlib.sha256()
    for label, path in _parse_files(domain, stubs):
        _hash_file(digest, path, label)
    return digest.hexdigest()


def _hash_file(digest: Any, path: Path, label: str) -> None:
    try:
        content = path.read_bytes()
    except OSError:
        return
    digest.update(f"{label}\0{len(content)}\0".encode())
    digest.update(content)


def _content(path: Path) -> str | None:
    """The SHA-256 of a file's bytes as they are now (no cache: a same-size edit with its old time differs)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _skip(domain: Domain, others: tuple[Path, ...]) -> frozenset[Path]:
    return frozenset(others) - {domain.path.resolve()}


@dataclass(frozen=True)
class ParseInputs:
    """What dbt is about to parse in a domain (label -> SHA-256), and the id of the manifest there before."""

    files: dict[str, str]
    manifest_id: str | None

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(sorted(self.files.items())).encode()).hexdigest()


def others_of(mesh: Mesh) -> tuple[Path, ...]:
    """Every domain's folder: a local package that is one of them is stitched, not parsed as code."""
    return tuple(d.path.resolve() for d in mesh.domains.values())


def parse_inputs(domain: Domain, others: tuple[Path, ...] = (), manifest: Path | None = None) -> ParseInputs:
    """The content of every parse input of ``domain`` now, and the invocation id of its manifest."""
    files = {}
    for label, path in _parse_files(domain, skip=_skip(domain, others)):
        digest = _content(path)
        if digest is not None:
            files[label] = digest
    return ParseInputs(files, invocation_of(manifest or domain.manifest_path))


def before_dbt(domain: Domain, others: tuple[Path, ...] = ()) -> ParseInputs:
    """What a dbt command the mesh is about to run in ``domain`` will parse (for ``record_parse`` after it).

    dbt's partial parsing re-reads a YAML file only when its modification time changed: a file whose
    content differs from what the last recorded parse read, with a time that does not say so (restored
    with ``cp -p``, ``tar x``, ``rsync -a``), would keep its old content in the new manifest. Then dbt's
    partial-parse cache is removed first, so dbt parses every file again.
    """
    inputs = parse_inputs(domain, others)
    manifest = domain.manifest_path
    recorded = _recorded(manifest) if manifest.is_file() else None
    if recorded is not None and recorded != inputs.files:
        written = manifest.stat().st_mtime
        paths = dict(_parse_files(domain, skip=_skip(domain, others)))
        changed = {k for k in set(inputs.files) | set(recorded) if inputs.files.get(k) != recorded.get(k)}
        for label in changed:
            path = paths.get(label)
            if path is None or not path.exists():
                continue  # a removed file: dbt sees it is gone
            if path.stat().st_mtime <= written:  # a time that hides the change
                (domain.target_dir / "partial_parse.msgpack").unlink(missing_ok=True)
                break
    return inputs


def invocation_of(manifest: Path) -> str | None:
    """The invocation id a manifest.json carries (dbt writes it first, in ``metadata``), or None."""
    try:
        with open(manifest, "rb") as handle:
            head = handle.read(16384)
    except OSError:
        return None
    found = _INVOCATION.search(head)
    if found:
        return found.group(1).decode("utf-8", "replace")
    try:
        value = loads(manifest.read_bytes()).get("metadata", {}).get("invocation_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def record_parse(
    domain: Domain, before: ParseInputs, others: tuple[Path, ...] = (), manifest: Path | None = None
) -> bool:
    """After a dbt command the mesh ran in ``domain``: record what its new manifest was parsed from.

    Only when dbt wrote a new manifest (its invocation id changed) and no parse input changed while it
    ran (then the manifest may describe either version: no record, and readers parse again).
    """
    from mesh_tools.core.files import write_atomic

    manifest = manifest or domain.manifest_path
    after = parse_inputs(domain, others, manifest)
    if after.manifest_id is None or after.manifest_id == before.manifest_id or after.files != before.files:
        return False
    record = {"schema_version": 1, "invocation_id": after.manifest_id, "fingerprint": after.fingerprint,
              "files": dict(sorted(after.files.items()))}  # fmt: skip
    try:
        write_atomic(manifest.parent / RECORD, json.dumps(record, indent=1) + "\n")
    except OSError:
        return False  # no record: readers cannot tell, and parse again
    return True


def _recorded(manifest: Path) -> dict[str, str] | None:
    """The parse inputs recorded for this very manifest (None: no record, a corrupt one, another manifest's)."""
    try:
        data = loads((manifest.parent / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    if data.get("invocation_id") is None or data.get("invocation_id") != invocation_of(manifest):
        return None
    files = data["files"]
    return {str(k): str(v) for k, v in files.items()} if all(isinstance(v, str) for v in files.values()) else None


@dataclass(frozen=True)
class Judgement:
    """Whether a domain's manifest describes its files: ``fresh``, else ``changed`` (the file proving it,
    when one does) and ``why`` (one sentence)."""

    fresh: bool
    changed: Path | None = None
    why: str | None = None


def judge(domain: Domain, others: tuple[Path, ...] = ()) -> Judgement:
    """Compare the domain's parse inputs with the record of its manifest (see the module's docstring).

    A domain without a manifest is not judged here (fresh): its readers say it was never built.
    """
    manifest = domain.manifest_path
    try:
        written = manifest.stat().st_mtime
    except OSError:
        return Judgement(True)
    recorded = _recorded(manifest)
    files = list(_parse_files(domain, skip=_skip(domain, others)))
    # the fast path: a file newer than the manifest whose content differs from the record proves a change
    for label, path in files:
        try:
            newer = path.stat().st_mtime > written
        except OSError:
            continue
        if newer and (recorded is None or recorded.get(label) != _content(path)):
            return _changed(domain, path)
    if recorded is None:
        return Judgement(False, None, _unknown(domain))
    seen = set()
    for label, path in files:
        digest = _content(path)
        if digest is None:
            continue
        seen.add(label)
        if recorded.get(label) != digest:
            return _changed(domain, path)
    for label in sorted(set(recorded) - seen):
        return _changed(domain, domain.path / label)
    return Judgement(True)


def _changed(domain: Domain, path: Path) -> Judgement:
    return Judgement(False, path, stale_message(domain, path))


def _unknown(domain: Domain) -> str:
    shown = display_path(domain.manifest_path)
    if invocation_of(domain.manifest_path) is None:
        return f"{domain.name}'s manifest ({shown}) is not one dbt wrote (no invocation id: corrupt?): not read"
    return (
        f"whether {domain.name}'s manifest ({shown}) describes its files cannot be told (no mesh command recorded "
        "what it was parsed from: a dbt command run by hand?)"
    )


def changed_since_manifest(domain: Domain, others: tuple[Path, ...] = ()) -> Path | None:
    """A file of ``domain`` whose content changed after its manifest was written, or None (also when there is
    no manifest, and when the change cannot be told: see ``judge`` for that).

    ``others``: folders of the other domains; a local package that is one of them (the pre-mesh
    way to share models) is stitched as an upstream, not parsed as code of this domain.
    """
    return judge(domain, others).changed


def stale_message(domain: Domain, changed: Path) -> str:
    how = "changed" if changed.exists() else "was removed"
    where = display_path(domain.manifest_path)
    return f"{display_path(changed)} {how} after {domain.name}'s manifest was written ({where})"


def stale_domains(domains: list[Domain], every: list[Domain] | None = None, unknown: bool = True) -> dict[str, str]:
    """Domain name -> why its manifest is stale (or, with ``unknown``, cannot be told current)."""
    others = tuple(d.path.resolve() for d in (every or domains))
    out = {}
    for domain in domains:
        found = judge(domain, others)
        if not found.fresh and (unknown or found.changed is not None):
            out[domain.name] = found.why or ""
    return out


# -- readers' parses: outside the domain, by content


def parsed_dir(root: Path, domain: Domain, inputs: ParseInputs) -> Path:
    """Where a reader's parse of ``domain`` with these inputs lives (one folder per content)."""
    return root / PARSED_DIR / domain.name / inputs.fingerprint[:24]


def parsed_manifest(root: Path, domain: Domain, inputs: ParseInputs) -> Path | None:
    """The manifest of an earlier reader's parse of exactly these inputs, if one was kept."""
    manifest = parsed_dir(root, domain, inputs) / "manifest.json"
    recorded = _recorded(manifest) if manifest.is_file() else None
    return manifest if recorded == inputs.files else None


def keep_parse(root: Path, domain: Domain, inputs: ParseInputs, scratch: Path, others: tuple[Path, ...]) -> Path:
    """The manifest a reader's parse into ``scratch`` wrote, kept under ``.mesh/parsed/`` by its content when no
    input changed while dbt parsed (then the next reader of the same files need not parse again)."""
    manifest = scratch / "manifest.json"
    if not record_parse(domain, inputs, others, manifest):
        return manifest
    final = parsed_dir(root, domain, inputs)
    try:
        os.rename(scratch, final)  # whole, or not at all: another reader may have kept the same parse first
    except OSError:
        return manifest
    for old in final.parent.iterdir():  # earlier contents' parses: only the latest is read again
        if old != final and not old.name.startswith(".") and old.stat().st_mtime < final.stat().st_mtime - 600:
            import shutil

            shutil.rmtree(old, ignore_errors=True)
    return final / "manifest.json"
