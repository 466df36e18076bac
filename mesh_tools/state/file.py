"""The state file of a domain's build (``state.json``): its schema, its one reader and its one writer.

A domain's build state is kept per target in ``<target-path>/mesh-state/<target>/``, apart from the
artifacts every dbt command rewrites: ``state.json`` (this schema), ``manifest.json`` (the manifest of
the last build) and ``default-target.json`` (which target a build without ``--target`` built). A
file that cannot be read, is too large, is from another version or has another shape is no state:
the reader says why, and the build that wanted it builds in full (right or full), never crashes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh_tools.core.errors import MeshError
from mesh_tools.core.files import write_atomic
from mesh_tools.core.mesh import Domain
from mesh_tools.model.manifest import Manifest

# 3: a model's recorded reads include those of the user-defined functions it calls (a state of 2 lacks them)
STATE_VERSION = 3
STATE_FILE = "state.json"
_STATE_MAX_BYTES = 64 * 2**20
_POINTER_MAX_BYTES = 64 * 2**10

_Strict = ConfigDict(extra="ignore", strict=True)
_Stat = Annotated[list[int], Field(min_length=2, max_length=2)]  # [size, mtime_ns]


def state_dir(domain: Domain, target: str) -> Path:
    """The folder of the domain's build state for ``target`` (its name made safe as a folder name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", target) or "default"
    return domain.target_dir / "mesh-state" / safe


class ReadRecord(BaseModel):
    """What a model's compiled SQL reads beyond its refs and sources (state/inputs.node_reads)."""

    model_config = _Strict
    files: list[str] = []
    opaque: str | None = None


class QuietFacts(BaseModel):
    """What must stay the same for the next build to skip the domain without dbt (state/quiescence.py)."""

    model_config = _Strict
    mesh_yml: str | None = None
    profiles: str | None = None
    profile_env: str | None = None
    upstreams: dict[str, _Stat | None] = {}
    consumed: dict[str, str] = {}
    locations: dict[str, str | None] = {}
    models: int = 0
    products: list[Annotated[list[str | None], Field(min_length=3, max_length=3)]] = []
    detect: list[str] = []
    artifacts: list[_Stat | None] = []
    stored: list[str] = []  # sources that are tables in a database file the storage fingerprint observes


class StateFile(BaseModel):
    """The schema of ``state.json``: a file of another shape is no state (a full build says why)."""

    model_config = _Strict

    version: int
    code: str
    landing: dict[str, str | None] = {}
    owed: list[str] = []
    # [path, size, mtime_ns], [path, None] (absent), [path, "tree", digest], [identity, "warehouse"]
    storage: list[Annotated[list[str | int | None], Field(min_length=2, max_length=3)]] | None = None
    loaded_at: dict[str, str] = {}
    built: dict[str, str] = {}
    project: str | None = None
    seeds: dict[str, str | None] = {}
    own: str | None = None
    invocation: str | None = None
    target: str | None = None  # digest of what the target builds into (state/inputs.target_identity)
    env: dict[str, str] = {}  # environment variables the code reads -> digest of their value
    env_computed: str | None = None  # where the code reads a variable whose name is computed
    hooks: list[str] = []  # what the last build's on-run-start hooks wrote (beyond its sources)
    reads: dict[str, ReadRecord] = {}  # node -> what its SQL reads beyond refs and sources
    read_prints: dict[str, str] = {}  # node -> digest of the files it reads
    footprint: dict[str, _Stat] | None = None  # target/run file -> [size, mtime_ns]
    footprint_skip: list[str] = []  # singular tests' run files (not relations)
    counts: dict[str, int] = {}  # source -> row count (meta.change_detection: row_count)
    source_kinds: dict[str, str] = {}  # source -> "table", "view", ... in a database file the mesh fingerprints
    unseen: list[str] = []  # what the build cannot see change (for --explain)
    quiet: QuietFacts | None = None


class DefaultTarget(BaseModel):
    """``default-target.json``: the target a build without ``--target`` built, and what chose it."""

    model_config = _Strict
    target: str
    profiles: str | None = None  # SHA-256 of the profiles.yml that resolved it
    profile_env: str | None = None  # digest of the variables that profiles.yml reads (state/inputs.profile_env_digest)


def _read_file(path: Path) -> StateFile | str:
    """``state.json`` checked against its schema, or why it cannot serve (then everything is built)."""
    try:
        if path.stat().st_size > _STATE_MAX_BYTES:
            return "its recorded build state is larger than any the mesh writes"
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        return f"its recorded build state cannot be read ({type(exc).__name__})"
    if not isinstance(raw, dict):
        return "its recorded build state is not a JSON object"
    if raw.get("version") != STATE_VERSION:
        return "its recorded build state is from another version of mesh_tools"
    try:
        return StateFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "the file"
        return f"its recorded build state has an unexpected shape ({where}: {first.get('msg')})"


def read_state(domain: Domain, target: str) -> StateFile | str:
    """The domain's recorded build state for ``target``, or why there is none that can serve."""
    return _read_file(state_dir(domain, target) / STATE_FILE)


def write_state(domain: Domain, target: str, state: StateFile) -> None:
    """Write ``state`` as the domain's build state for ``target``, whole or not at all (atomic replace).

    It is validated again first: what is written is what the next build accepts."""
    StateFile.model_validate(state.model_dump())
    folder = state_dir(domain, target)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / STATE_FILE, json.dumps(state.model_dump(), indent=1, sort_keys=True) + "\n")


def update_state(domain: Domain, target: str, **changes: Any) -> bool:
    """Replace some fields of the recorded state (validated); False, writing nothing, when there is no usable
    state to update (the next build then builds in full anyway)."""
    state = read_state(domain, target)
    if isinstance(state, str):
        return False
    updated = StateFile.model_validate({**state.model_dump(), **changes})
    if updated != state:
        write_state(domain, target, updated)
    return True


def _pointer_path(domain: Domain) -> Path:
    return domain.target_dir / "mesh-state" / "default-target.json"


def read_default_target(domain: Domain) -> DefaultTarget | None:
    """Which target the domain's last build without ``--target`` built, or None (unknown, unreadable, foreign)."""
    path = _pointer_path(domain)
    try:
        if path.stat().st_size > _POINTER_MAX_BYTES:
            return None
        return DefaultTarget.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError):  # pydantic's ValidationError is a ValueError
        return None


def write_default_target(domain: Domain, pointer: DefaultTarget) -> None:
    """Remember which target a build without ``--target`` built (atomic replace)."""
    write_atomic(_pointer_path(domain), json.dumps(pointer.model_dump(), sort_keys=True) + "\n")


@dataclass
class BuildState:
    """What the domain's last mesh build left to compare with."""

    folder: Path
    manifest: Manifest
    code: str
    landing: dict[str, str | None]  # source unique_id -> fingerprint of its landing files (None: none)
    owed: set[str]
    storage: list[Any] | None
    loaded_at: dict[str, str]  # source unique_id -> max_loaded_at seen by that build
    built: dict[str, str]  # product unique_id -> invocation id of the build that last built it
    project: str | None = None  # digest of the dbt_project.yml files (vars, hooks: beyond dbt's comparison)
    seeds: dict[str, str | None] = field(default_factory=dict)  # seed unique_id -> SHA-256 of its file
    own: str | None = None  # code fingerprint without the mesh's stubs (its own code and packages)
    invocation: str | None = None  # the dbt invocation of the mesh's last build of the domain
    file: StateFile | None = None  # everything else the state file records (state/inputs.py)


def load_state(domain: Domain, target: str) -> BuildState | str:
    """The last build's state, or why there is none (then everything is built)."""
    folder = state_dir(domain, target)
    state_file, manifest_file = folder / STATE_FILE, folder / "manifest.json"
    if not state_file.is_file() or not manifest_file.is_file():
        return "no earlier mesh build of this target is recorded"
    data = _read_file(state_file)
    if isinstance(data, str):
        return data
    try:
        manifest = Manifest.load(manifest_file, domain.name)
    except MeshError:
        return "the manifest of its last recorded build cannot be read"
    return BuildState(
        folder=folder,
        manifest=manifest,
        code=data.code,
        landing=dict(data.landing),
        owed=set(data.owed),
        storage=data.storage,
        loaded_at=dict(data.loaded_at),
        built=dict(data.built),
        project=data.project,
        seeds=dict(data.seeds),
        own=data.own,
        invocation=data.invocation,
        file=data,
    )
