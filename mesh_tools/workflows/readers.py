"""What a reader of the mesh reads: each domain's manifest, or, where it is stale, a parse of its current files
made outside the domain.

A reader (check, docs, contracts export) never judges stale artifacts, and never changes what a running build
publishes from: the parse goes under ``.mesh/parsed/`` (kept by content, so the next reader of the same files
reads it again), never into the domain's ``target/``, and takes no lock.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from mesh_tools.core.errors import ArtifactError
from mesh_tools.core.files import ensure_folder
from mesh_tools.core.mesh import Mesh
from mesh_tools.dbt import staleness
from mesh_tools.workflows.scheduler import default_jobs, parse_outside

Note = Callable[[str], None]
Cleanup = Callable[[Path], None]  # removes a scratch folder when the command ends


def current_view(mesh: Mesh, names: list[str], note: Note, cleanup: Cleanup, shown: Callable[[Path], str]) -> Mesh:
    """The mesh in which each of ``names`` whose manifest is stale (its files changed, by content) or cannot be
    told current reads a parse of its current files instead. A domain that no longer parses is an
    ArtifactError: its old manifest would describe code that is gone."""
    others = staleness.others_of(mesh)
    stale: dict[str, staleness.Judgement] = {}
    for name in names:
        domain = mesh.domains[name]
        if domain.manifest_path.is_file():
            judged = staleness.judge(domain, others)
            if not judged.fresh:
                stale[name] = judged
    if not stale:
        return mesh
    root = scratch_root(mesh, cleanup)
    found: dict[str, Path] = {}
    inputs: dict[str, staleness.ParseInputs] = {}
    scratch: dict[str, Path] = {}
    for name, judged in stale.items():
        domain = mesh.domains[name]
        inputs[name] = staleness.parse_inputs(domain, others)
        kept = staleness.parsed_manifest(root, domain, inputs[name])
        if kept is not None:
            found[name] = kept
            note(f"{judged.why}: reading its parse of the current files ({shown(kept.parent)})")
            continue
        folder = ensure_folder(staleness.parsed_dir(root, domain, inputs[name]).parent, root)  # no link on the way
        scratch[name] = Path(tempfile.mkdtemp(prefix=".parsing-", dir=folder))
        cleanup(scratch[name])
        note(f"{judged.why}: parsing {name} again (into {shown(folder)}; its target/ stays as it is)")
    if scratch:
        problems = parse_outside(mesh, scratch, mesh.defaults.target, mesh.defaults.jobs or default_jobs())
        for name, dest in scratch.items():
            if problems[name]:
                why = "its files changed after its manifest was written" if stale[name].changed else (
                    "its manifest cannot be told current")  # fmt: skip
                raise ArtifactError(f"{name}: {why} and it no longer parses: {problems[name]}")
            found[name] = staleness.keep_parse(root, mesh.domains[name], inputs[name], dest, others)
    domains = {
        n: dataclasses.replace(d, parsed_manifest=found[n]) if n in found else d for n, d in mesh.domains.items()
    }
    return dataclasses.replace(mesh, domains=domains)


def scratch_root(mesh: Mesh, cleanup: Cleanup) -> Path:
    """Where readers keep their parses: the mesh root's ``.mesh/``, or, where it may not be written, a
    temporary folder removed when the command ends."""
    try:
        ensure_folder(mesh.root / ".mesh", mesh.root)  # a link planted at .mesh: StorageError naming it
        if os.access(mesh.root / ".mesh", os.W_OK):
            return mesh.root
    except OSError:
        pass
    temporary = Path(tempfile.mkdtemp(prefix="mesh-parsed-"))
    cleanup(temporary)
    return temporary
