"""State-aware builds: which nodes of a domain must run, and why; the state the next build compares with.

A domain's build state is kept per target in ``<target-path>/mesh-state/<target>/``, apart from
the artifacts every dbt command rewrites: the manifest of its last build, the source freshness
results that build saw, fingerprints of its code, of its landing files and of its storage, and
the nodes still owed a good run (selected once and not yet successful).

A node runs when (reasons in `--explain`):
- dbt's own state comparison selects it (``state:modified+`` against that manifest): its code,
  config or macros changed, or an upstream product it reads has a new release (the stitched stub
  names another release folder, so only that product's readers are modified);
- a source it reads has new data (landing files changed, or a newer ``loaded_at`` in source
  freshness), or a source cannot be observed at all (then it always runs: correctness first);
- its last run did not succeed, its relation is missing, or (when publishing) its product has no
  current release;
- anything upstream of it runs (dbt's ``+``).
Nothing selected: no dbt command at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import MeshError
from mesh_tools.core.files import file_sha256, write_atomic
from mesh_tools.core.mesh import Domain
from mesh_tools.model.freshness import FreshnessResults
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import Node

STATE_VERSION = 1
BUILT = ("model", "seed", "snapshot")
_GOOD = {"success", "pass", "warn"}


def state_dir(domain: Domain, target: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", target) or "default"
    return domain.target_dir / "mesh-state" / safe


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

    @property
    def manifest_dir(self) -> Path:
        return self.folder


def load_state(domain: Domain, target: str) -> BuildState | str:
    """The last build's state, or why there is none (then everything is built)."""
    folder = state_dir(domain, target)
    state_file, manifest_file = folder / "state.json", folder / "manifest.json"
    if not state_file.is_file() or not manifest_file.is_file():
        return "no earlier mesh build of this target is recorded"
    try:
        raw = json.loads(state_file.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            return "its recorded build state is from another version of mesh_tools"
        manifest = Manifest.load(manifest_file, domain.name)
        return BuildState(
            folder=folder,
            manifest=manifest,
            code=str(raw["code"]),
            landing={str(k): (None if v is None else str(v)) for k, v in dict(raw.get("landing") or {}).items()},
            owed={str(u) for u in raw.get("owed") or []},
            storage=raw.get("storage"),
            loaded_at={str(k): str(v) for k, v in dict(raw.get("loaded_at") or {}).items()},
            built={str(k): str(v) for k, v in dict(raw.get("built") or {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError, MeshError):
        return "its recorded build state cannot be read"


# -- what can be observed of the outside: landing files, storage files


def landing_files(domain: Domain, source: Node) -> list[Path] | None:
    """The local files a source reads (dbt-duckdb's ``external_location``), or None when it names none."""
    location = source.config.get("external_location") or source.meta.get("external_location")
    if not location:
        return None
    text = str(location).replace("{name}", source.name).replace("{identifier}", str(source.get("identifier") or ""))
    quoted = re.findall(r"'([^']+)'|\"([^\"]+)\"", text)
    candidates = [a or b for a, b in quoted] or [text]
    files: list[Path] = []
    for candidate in candidates:
        if re.match(r"^[a-z][a-z0-9+.-]*://", candidate, re.I):
            return None  # remote (s3://, https://): not observable from here
        path = Path(candidate).expanduser()
        path = path if path.is_absolute() else domain.path / path
        if any(ch in str(path) for ch in "*?["):
            files.extend(sorted(path.parent.glob(path.name)) if path.parent.is_dir() else [])
        elif path.exists():
            files.append(path)
    return files or None


def landing_fingerprint(domain: Domain, source: Node) -> str | None:
    files = landing_files(domain, source)
    if files is None:
        return None
    parts = []
    for path in files:
        try:
            parts.append(f"{path}:{file_sha256(path)}" if path.is_file() else f"{path}:dir:{_tree_stat(path)}")
        except OSError:
            parts.append(f"{path}:unreadable")
    return "|".join(parts)


def _tree_stat(folder: Path) -> str:
    """A digest of every file's path, size and modification time below ``folder``."""
    import hashlib

    digest = hashlib.sha256()
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(here) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def storage_fingerprint(files: Iterable[Path], remote: Iterable[str]) -> list[Any] | None:
    """Size and modification time of the storage a target opens: a DuckDB file and its WAL, or every
    file below a local Spark warehouse folder (a dropped table removes its files).

    None when the storage is not only local (a server, s3://): then relations are checked through
    dbt every time.
    """
    files = list(files)
    if list(remote) or not files:
        return None
    found: list[Any] = []
    for path in files:
        if path.is_dir():
            found.append([str(path), "tree", _tree_stat(path)])
            continue
        for candidate in (path, path.with_name(path.name + ".wal")):
            try:
                stat = candidate.stat()
            except FileNotFoundError:
                found.append([str(candidate), None])
                continue
            found.append([str(candidate), stat.st_size, stat.st_mtime_ns])
    return found


def freshness_sources(manifest: Manifest) -> list[Node]:
    """The project's sources that `dbt source freshness` measures (a loaded_at_field and a threshold)."""
    found = []
    for source in manifest.own_sources():
        rule = source.get("freshness") or {}
        has_rule = isinstance(rule, dict) and any(
            isinstance(rule.get(k), dict) and rule[k].get("count") for k in ("warn_after", "error_after")
        )
        if source.get("loaded_at_field") and has_rule:
            found.append(source)
    return found


# -- the plan


@dataclass
class BuildPlan:
    """What one domain's build runs: everything, or a selection, with the reasons known before dbt runs."""

    full: bool
    why_full: str = ""
    state: BuildState | None = None
    modified: bool = False  # dbt's state comparison is part of the selection
    selectors: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # node or source unique_id -> why it runs
    code: str = ""
    landing: dict[str, str | None] = field(default_factory=dict)
    fresh: FreshnessResults | None = None  # source freshness measured for this build

    @property
    def empty(self) -> bool:
        return not self.full and not self.modified and not self.selectors

    def as_full(self, why: str) -> BuildPlan:
        """This plan, building everything instead (what was measured and fingerprinted is kept)."""
        return BuildPlan(full=True, why_full=why, state=self.state, code=self.code, landing=self.landing,
                         fresh=self.fresh)  # fmt: skip

    def dbt_args(self) -> list[str]:
        if self.full:
            return []
        select = (["state:modified+"] if self.modified else []) + self.selectors
        args = ["--select", *select]
        if self.modified and self.state is not None:
            args += ["--state", str(self.state.folder)]
        return args


def _selector(node: Node) -> str:
    if node.resource_type == "source":
        return "source:" + ".".join(node.unique_id.split(".")[1:]) + "+"
    fqn = node.get("fqn")
    if isinstance(fqn, list) and fqn:
        return "fqn:" + ".".join(str(p) for p in fqn) + "+"
    return node.name + "+"


def plan_build(
    domain: Domain,
    state: BuildState | str,
    code: str,
    fresh: FreshnessResults | None,
    missing: set[str],
    unreleased: set[str],
) -> BuildPlan:
    """Decide what runs, from the state of the last build and what is observed now.

    ``fresh``: source freshness measured now (None when not measured); ``missing``: nodes whose
    relation is gone; ``unreleased``: products without a current release.
    """
    if isinstance(state, str):
        plan = BuildPlan(full=True, why_full=state, code=code, fresh=fresh)
        for source in state_sources(domain):
            plan.landing[source[0]] = source[1]
        return plan
    plan = BuildPlan(full=False, state=state, code=code, modified=code != state.code, fresh=fresh)
    manifest = state.manifest
    measured = {r.unique_id: r for r in fresh.results} if fresh is not None else {}
    for source in manifest.own_sources():
        uid = source.unique_id
        fingerprint = landing_fingerprint(domain, source)
        plan.landing[uid] = fingerprint
        result = measured.get(uid)
        newer = result is not None and result.max_loaded_at and result.max_loaded_at != state.loaded_at.get(uid)
        label = ".".join(uid.split(".")[2:])
        if fingerprint is not None and fingerprint != state.landing.get(uid):
            why = f"the landing files of source {label} changed"
        elif newer:
            why = f"source {label} has newer rows (loaded_at {result.max_loaded_at})"  # type: ignore[union-attr]
        elif fingerprint is None and (result is None or not result.max_loaded_at):
            why = (
                f"source {label} cannot be observed (no landing file, no loaded_at_field freshness): "
                "what reads it runs every time"
            )
        else:
            continue
        plan.reasons[uid] = why
        plan.selectors.append(_selector(source))
    for uid, why in (
        *((u, "its last run did not succeed") for u in sorted(state.owed)),
        *((u, "its relation is missing from the warehouse") for u in sorted(missing)),
        *((u, "its current release is not from its last build") for u in sorted(unreleased)),
    ):
        node = manifest.node(uid)
        if node is None or uid in plan.reasons:
            continue  # gone from the project: nothing to run
        plan.reasons[uid] = why
        plan.selectors.append(_selector(node))
    return plan


def state_sources(domain: Domain) -> list[tuple[str, str | None]]:
    """(source id, landing fingerprint) of the sources the current manifest knows (a full build's baseline)."""
    try:
        manifest = Manifest.read(domain.manifest_path, domain.name, missing_ok=True)
    except MeshError:
        return []
    if manifest is None:
        return []
    return [(s.unique_id, landing_fingerprint(domain, s)) for s in manifest.own_sources()]


def relations_to_check(manifest: Manifest) -> list[list[str | None]]:
    """[database, schema, identifier, unique_id] of every relation the domain's build materializes."""
    found: list[list[str | None]] = []
    for node in manifest.nodes.values():
        if node.resource_type not in BUILT or node.config.get("materialized") == "ephemeral":
            continue
        if not node.get("relation_name"):
            continue
        identifier = node.get("alias") or node.name
        found.append([node.get("database"), node.get("schema"), identifier, node.unique_id])
    return found


# -- after the run: why each node ran, and the state the next build compares with


def explain(plan: BuildPlan, domain: str, after: Manifest | None, results: RunResults | None) -> list[tuple[str, str]]:
    """(node label, reason) for every model, seed and snapshot that ran."""
    if results is None:
        return []
    ran = [r.unique_id for r in results.results if r.unique_id.split(".", 1)[0] in BUILT]
    if plan.full:
        return [(_label(u, after), f"full build ({plan.why_full})") for u in ran]
    before = plan.state.manifest if plan.state is not None else None
    ran_set = set(ran)
    out = []
    for uid in ran:
        label = _label(uid, after) + ("" if uid.split(".")[1] == domain else " (upstream view)")
        out.append((label, _reason(uid, plan, domain, before, after, ran_set)))
    return out


def _reason(uid: str, plan: BuildPlan, domain: str, before: Manifest | None, after: Manifest | None,
            ran: set[str]) -> str:  # fmt: skip
    if uid in plan.reasons:
        return plan.reasons[uid]
    node = after.nodes.get(uid) if after is not None else None
    old = before.nodes.get(uid) if before is not None else None
    if node is not None and old is None:
        return "it is new" if node.package == domain else "an upstream product it reads is new"
    if node is not None and old is not None:
        if node.package != domain and node.get("raw_code") != old.get("raw_code"):
            return f"upstream {node.package}.{node.label} has a new release"
        if (node.get("checksum") or {}).get("checksum") != (old.get("checksum") or {}).get("checksum"):
            return "its code changed"
        if node.get("config") != old.get("config"):
            return "its configuration changed"
        changed = [m for m in _macros(node) if _macro_sql(after, m) != _macro_sql(before, m)]
        if changed:
            return f"macro {changed[0].split('.')[-1]} changed"
        parents = [p for p in node.depends_on if p in ran]
        if parents:
            return f"upstream {_label(parents[0], after)} ran"
        sources = [p for p in node.depends_on if p in plan.reasons]
        if sources:
            return plan.reasons[sources[0]]
    return "dbt's state comparison selected it"


def _macros(node: Node) -> list[str]:
    depends = node.get("depends_on") or {}
    return [str(m) for m in depends.get("macros") or []] if isinstance(depends, dict) else []


def _macro_sql(manifest: Manifest | None, uid: str) -> Any:
    macro = manifest.macros.get(uid) if manifest is not None else None
    return macro.get("macro_sql") if macro is not None else None


def _label(uid: str, manifest: Manifest | None) -> str:
    node = manifest.node(uid) if manifest is not None else None
    if node is not None:
        return f"{node.package}.{node.label}" if node.resource_type != "source" else uid
    return ".".join(uid.split(".")[1:])


def record_state(
    domain: Domain,
    target: str,
    plan: BuildPlan,
    manifest_path: Path,
    results: RunResults,
    products: Iterable[str] = (),
) -> None:
    """Write the state the next build compares with, after a dbt build wrote ``results`` (or ran nothing).

    Nodes that did not succeed stay owed; the code and landing fingerprints are those taken before
    the build, so a change made while it ran is seen by the next one.
    """
    folder = state_dir(domain, target)
    previous = plan.state
    owed = set(previous.owed) if previous is not None and not plan.full else set()
    built = dict(previous.built) if previous is not None else {}
    for uid in products:
        if results.status_of(uid) == "success" and results.invocation_id:
            built[uid] = results.invocation_id
    for result in results.results:
        if result.status in _GOOD:
            owed.discard(result.unique_id)
        else:
            owed.add(result.unique_id)
    loaded_at = dict(previous.loaded_at) if previous is not None else {}
    for result in plan.fresh.results if plan.fresh is not None else ():
        if result.max_loaded_at:
            loaded_at[result.unique_id] = result.max_loaded_at
    landing = dict(previous.landing) if previous is not None else {}
    landing.update(plan.landing)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / f".manifest.json.{os.getpid()}.partial"
    try:
        shutil.copyfile(manifest_path, scratch)
        os.replace(scratch, folder / "manifest.json")
    finally:
        scratch.unlink(missing_ok=True)
    state = {
        "version": STATE_VERSION,
        "code": plan.code,
        "landing": landing,
        "owed": sorted(owed),
        "loaded_at": loaded_at,
        "built": built,
        "storage": previous.storage if previous is not None else None,
    }
    write_atomic(folder / "state.json", json.dumps(state, indent=1, sort_keys=True) + "\n")


def record_storage(domain: Domain, target: str, fingerprint: list[Any] | None) -> None:
    """The storage files as the domain's run left them: unchanged next time means no relation was dropped."""
    path = state_dir(domain, target) / "state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(state, dict) and state.get("storage") != fingerprint:
        state["storage"] = fingerprint
        write_atomic(path, json.dumps(state, indent=1, sort_keys=True) + "\n")
