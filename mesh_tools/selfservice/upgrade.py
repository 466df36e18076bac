"""Bring a domain's shared files up to date with the mesh's template, keeping the domain's own edits.

Per shared file: base = what the template rendered when the domain last took it (recorded in
``.mesh-template.json``), ours = the file now, theirs = what the template renders today.
Untouched by the domain -> replaced; template unchanged -> kept; both changed -> a 3-way line
merge (``git merge-file``), refused on conflict. Without a recorded base, a file that differs
is replaced only with ``force``. The domain's models, tests and starter files are never touched.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mesh_tools.core.errors import ConfigError
from mesh_tools.core.mesh import Mesh
from mesh_tools.selfservice.template import LOCK_FILE, load_template, lock_text, read_lock, render, variables_of

UP_TO_DATE, CREATE, REPLACE, MERGE, KEEP, CONFLICT, DIFFERS = (
    "up to date",
    "create",
    "replace",
    "merge",
    "keep (only the domain changed it)",
    "conflict",
    "differs (no record of the template it came from)",
)


@dataclass
class FileChange:
    path: str
    action: str
    current: str | None
    new: str | None  # what the file becomes (None: stays as it is)
    base_next: str  # what the record holds for this file afterwards

    def diff(self) -> str:
        if self.new is None or self.new == self.current:
            return ""
        lines = difflib.unified_diff(
            (self.current or "").splitlines(keepends=True),
            self.new.splitlines(keepends=True),
            fromfile=f"a/{self.path}",
            tofile=f"b/{self.path}",
        )
        return "".join(lines)


@dataclass
class UpgradePlan:
    domain: str
    folder: Path
    changes: list[FileChange]
    lock: str
    notes: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[FileChange]:
        return [c for c in self.changes if c.new is not None and c.new != c.current]

    @property
    def blocked(self) -> list[FileChange]:
        return [c for c in self.changes if c.action in (CONFLICT, DIFFERS)]


def _merge(ours: str, base: str, theirs: str) -> tuple[str, bool]:
    """A 3-way line merge; (result, clean)."""
    git = shutil.which("git")
    if git is None:
        return ours, False
    with tempfile.TemporaryDirectory(prefix="mesh-merge-") as tmp:
        paths = []
        for label, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / label
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
        done = subprocess.run(
            [git, "merge-file", "-p", "-L", "domain", "-L", "base", "-L", "template", *paths],
            capture_output=True,
            text=True,
        )
    return done.stdout, done.returncode == 0


def plan_upgrade(mesh: Mesh, name: str, force: bool = False) -> UpgradePlan:
    if name not in mesh.domains:
        from mesh_tools.core.suggestions import did_you_mean

        raise ConfigError(
            f"unknown domain '{name}'.{did_you_mean(name, mesh.domains)} Domains: {', '.join(mesh.domains)}."
        )
    domain = mesh.domains[name]
    template = load_template(mesh)
    rendered = render(template, template.shared, variables_of(mesh, domain))
    lock = read_lock(domain.path) or {}
    bases: dict[str, str] = lock.get("shared") or {}
    changes = []
    for path, theirs in rendered.items():
        file = domain.path / path
        ours = file.read_text(encoding="utf-8") if file.is_file() else None
        base = bases.get(path)
        if ours is None:
            changes.append(FileChange(path, CREATE, None, theirs, theirs))
        elif ours == theirs:
            changes.append(FileChange(path, UP_TO_DATE, ours, None, theirs))
        elif base is not None and ours == base:
            changes.append(FileChange(path, REPLACE, ours, theirs, theirs))
        elif base is not None and theirs == base:
            changes.append(FileChange(path, KEEP, ours, None, theirs))
        elif base is not None:
            merged, clean = _merge(ours, base, theirs)
            if clean:
                changes.append(FileChange(path, MERGE, ours, merged, theirs))
            else:
                changes.append(FileChange(path, CONFLICT, ours, None, base))
                changes[-1].new = merged  # shown, never written
        elif force:
            changes.append(FileChange(path, REPLACE, ours, theirs, theirs))
        else:
            changes.append(FileChange(path, DIFFERS, ours, theirs, theirs))
    record = {c.path: c.base_next for c in changes}
    return UpgradePlan(name, domain.path, changes, lock_text(template, record))


def apply_upgrade(plan: UpgradePlan) -> None:
    """Write every pending change (each file whole), then the new record."""
    from mesh_tools.core.files import write_atomic

    if plan.blocked:
        listed = ", ".join(f"{c.path} ({c.action})" for c in plan.blocked)
        raise ConfigError(
            f"{plan.domain}: not upgraded: {listed}. Resolve the conflicts by hand (the diff shows them), "
            "or pass --force to take the template's version of files without a record."
        )
    for change in plan.pending:
        write_atomic(plan.folder / change.path, change.new or "")
    write_atomic(plan.folder / LOCK_FILE, plan.lock)
