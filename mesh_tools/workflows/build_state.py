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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh_tools.core.errors import MeshError
from mesh_tools.core.files import copy_into, create_partial, file_sha256, write_atomic
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.model.freshness import FreshnessResults
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import Node, split_product_key
from mesh_tools.workflows.build_inputs import (
    env_digests,
    fingerprint_reads,
    footprint_changes,
    landing_fingerprint,
    landing_location,
    profile_env_digest,
    readers_of_env,
    rendered_changes,
    run_footprint,
    tree_stat,
)

# 3: a model's recorded reads include those of the user-defined functions it calls (a state of 2 lacks them)
STATE_VERSION = 3
BUILT = ("model", "seed", "snapshot")
_GOOD = {"success", "pass", "warn"}


_STATE_MAX_BYTES = 64 * 2**20


def state_dir(domain: Domain, target: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", target) or "default"
    return domain.target_dir / "mesh-state" / safe


_Strict = ConfigDict(extra="ignore", strict=True)
_Stat = Annotated[list[int], Field(min_length=2, max_length=2)]  # [size, mtime_ns]


class ReadRecord(BaseModel):
    """What a model's compiled SQL reads beyond its refs and sources (workflows/build_inputs.node_reads)."""

    model_config = _Strict
    files: list[str] = []
    opaque: str | None = None


class QuietFacts(BaseModel):
    """What must stay the same for the next build to skip the domain without dbt (``quiescent``)."""

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
    target: str | None = None  # digest of what the target builds into (build_inputs.target_identity)
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
    file: StateFile | None = None  # everything else the state file records (build_inputs)


def read_state_file(path: Path) -> StateFile | str:
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


def load_state(domain: Domain, target: str) -> BuildState | str:
    """The last build's state, or why there is none (then everything is built)."""
    folder = state_dir(domain, target)
    state_file, manifest_file = folder / "state.json", folder / "manifest.json"
    if not state_file.is_file() or not manifest_file.is_file():
        return "no earlier mesh build of this target is recorded"
    data = read_state_file(state_file)
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


# -- what can be observed of the outside: storage files


def storage_fingerprint(files: Iterable[Path], remote: Iterable[str], identity: str | None = None) -> list[Any] | None:
    """Size and modification time of the storage a target opens: a DuckDB file and its WAL, or every
    file below a local Spark warehouse folder (a dropped table removes its files).

    A warehouse (``identity``: its server, database, schema and role) has no files to observe: its
    identity alone is recorded, so a profile pointed elsewhere means a full build, and its relations
    are checked through dbt every time. None when the storage is otherwise not only local (s3://).
    """
    files = list(files)
    if identity and not files:
        return [[identity, "warehouse"]]
    if list(remote) or not files:
        return None
    found: list[Any] = []
    for path in files:
        if path.is_dir():
            found.append([str(path), "tree", tree_stat(path)])
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
class Observed:
    """What the worker observed before planning, beyond code and sources (workflows/build_inputs.py)."""

    target: str | None = None  # digest of what the resolved target builds into
    env: dict[str, str] = field(default_factory=dict)  # variables the code reads now -> digest
    env_computed: str | None = None  # where the code reads a variable whose name is computed
    footprint: dict[str, list[int]] | None = None  # target/run now
    current: Manifest | None = None  # a parse of the code as it is now, when one was made
    counts: dict[str, int] = field(default_factory=dict)  # row counts of meta.change_detection: row_count sources
    databases: set[str] = field(default_factory=set)  # attached databases (catalog names) whose file changed
    watched: set[str] = field(default_factory=set)  # catalogs whose files the storage fingerprint observes
    kinds: dict[str, str] = field(default_factory=dict)  # source -> "table", "view", ... where it was looked up
    project_env: set[str] = field(default_factory=set)  # variables the dbt_project.yml files read


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
    project: str | None = None  # digest of the dbt_project.yml files when the build was planned
    own: str | None = None  # the domain's own code fingerprint when the build was planned
    observed: Observed = field(default_factory=Observed)
    unseen: list[str] = field(default_factory=list)  # changes this build cannot see (for --explain)
    read_prints: dict[str, str] = field(default_factory=dict)  # node -> digest of the files it read, before

    @property
    def empty(self) -> bool:
        return not self.full and not self.modified and not self.selectors

    def as_full(self, why: str) -> BuildPlan:
        """This plan, building everything instead (what was measured and fingerprinted is kept)."""
        return BuildPlan(full=True, why_full=why, state=self.state, code=self.code, landing=self.landing,
                         fresh=self.fresh, project=self.project, own=self.own, observed=self.observed,
                         unseen=self.unseen)  # fmt: skip

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


def change_detection(source: Node) -> str | None:
    """How a source declares its changes are seen (``meta.change_detection``): "always", "row_count" or None."""
    value = source.meta.get("change_detection")
    return str(value).strip().lower() if value else None


def _stored(source: Node, observed: Observed) -> bool:
    """Whether a source is a table in a database file the storage fingerprint observes (a view is not: its rows
    change with whatever it reads, the file staying the same)."""
    database = str(source.get("database") or "").lower()
    return bool(database) and database in observed.watched and observed.kinds.get(source.unique_id) == "table"


def why_full(state: BuildState, project: str | None, observed: Observed) -> str | None:
    """Why this build cannot trust its last build's state at all (it then builds everything), or None."""
    recorded = state.file or StateFile(version=STATE_VERSION, code=state.code)
    if state.project is not None and project != state.project:
        return "dbt_project.yml changed (its vars and hooks are beyond dbt's state comparison)"
    if observed.target is not None and recorded.target is not None and observed.target != recorded.target:
        return (
            "its target resolves to other storage than its last build (the profile, the target or a variable it "
            "reads changed)"
        )
    read_by_project = sorted(
        n for n in observed.project_env if recorded.env.get(n, observed.env.get(n)) != observed.env.get(n)
    )
    if read_by_project:
        return (
            f"environment variable {read_by_project[0]}, which its dbt_project.yml reads (vars, hooks, configs "
            "beyond dbt's state comparison), changed"
        )
    if observed.env_computed:
        return (
            f"its code reads an environment variable whose name is computed ({observed.env_computed}): the mesh "
            "cannot tell when it changes, so the domain is built in full every time"
        )
    if recorded.hooks:
        return (
            f"its on-run-start hooks write what its models may read ({recorded.hooks[0][:100]}): the mesh cannot "
            "fingerprint that, so the domain is built in full every time"
        )
    if observed.footprint is not None:
        changed = footprint_changes(recorded.footprint, observed.footprint)
        if changed:
            return (
                f"dbt wrote its relations outside the mesh since its last build (target/run/{changed[0]} changed: "
                "a hand-run `dbt run` or `dbt build`, maybe from code since undone)"
            )
    return None


def plan_build(
    domain: Domain,
    state: BuildState | str,
    code: str,
    fresh: FreshnessResults | None,
    missing: set[str],
    unreleased: set[str],
    project: str | None = None,
    metadata: dict[str, str] | None = None,
    observed: Observed | None = None,
) -> BuildPlan:
    """Decide what runs, from the state of the last build and what is observed now.

    ``fresh``: source freshness measured now (None when not measured); ``missing``: nodes whose
    relation is gone; ``unreleased``: products without a current release from their last build;
    ``project``: digest of the dbt_project.yml files now; ``metadata``: products whose documentation
    or metadata changed (unique_id -> why), which dbt's state comparison does not select;
    ``observed``: the environment, target, run footprint and current parse (build_inputs).
    """
    observed = observed or Observed()
    if not isinstance(state, str):
        state = why_full(state, project, observed) or state
    if isinstance(state, str):
        plan = BuildPlan(full=True, why_full=state, code=code, fresh=fresh, project=project, observed=observed)
        for source in state_sources(domain):
            plan.landing[source[0]] = source[1]
        return plan
    recorded = state.file or StateFile(version=STATE_VERSION, code=state.code)
    plan = BuildPlan(full=False, state=state, code=code, modified=code != state.code, fresh=fresh, project=project,
                     observed=observed)  # fmt: skip
    manifest = state.manifest
    changed_env = {n for n, v in observed.env.items() if recorded.env.get(n, v) != v}
    changed_env |= {n for n in recorded.env if n not in observed.env and recorded.env[n] != "unset"}
    if changed_env:
        for uid, why in readers_of_env(observed.current or manifest, domain.name, changed_env).items():
            plan.reasons.setdefault(uid, why)
        rendered = rendered_changes(manifest, observed.current, domain.name) if observed.current else None
        if rendered is None:
            plan.modified = True  # what the variables change at parse: dbt's own comparison, on a new parse
        for uid, why in (rendered or {}).items():
            plan.reasons.setdefault(uid, why)
    measured = {r.unique_id: r for r in fresh.results} if fresh is not None else {}
    sources = (observed.current or manifest).own_sources()
    for source in sources:
        uid = source.unique_id
        fingerprint = landing_fingerprint(domain, source)
        plan.landing[uid] = fingerprint
        result = measured.get(uid)
        newer = result is not None and result.max_loaded_at and result.max_loaded_at != state.loaded_at.get(uid)
        label = ".".join(uid.split(".")[2:])
        mode = change_detection(source)
        database = str(source.get("database") or "").lower()
        if database and database in observed.databases:
            why = f"the database file of source {label} ({database}) changed"
        elif mode == "always":
            why = f"source {label} declares meta.change_detection: always"
        elif fingerprint is not None and fingerprint != state.landing.get(uid):
            why = f"the landing files of source {label} changed"
        elif mode == "row_count" and observed.counts.get(uid) != recorded.counts.get(uid):
            now, was = observed.counts.get(uid, "an unknown number of"), recorded.counts.get(uid, "unknown")
            why = f"source {label} has {now} rows (was {was})"
        elif newer:
            why = f"source {label} has newer rows (loaded_at {result.max_loaded_at})"  # type: ignore[union-attr]
        elif fingerprint is None and mode is None and _stored(source, observed):
            continue  # a table in a database file the mesh fingerprints, unchanged since its last build
        elif fingerprint is None and mode != "row_count" and (result is None or not result.max_loaded_at):
            why = (
                f"source {label} cannot be observed (no landing file, no loaded_at_field freshness): "
                "what reads it runs every time"
            )
        else:
            if fingerprint is None and mode is None:
                plan.unseen.append(
                    f"source {label} is observed through its loaded_at only: rows deleted or corrected in place "
                    "are not seen (declare `meta: {change_detection: row_count}` or `always` on it)"
                )
            continue
        plan.reasons[uid] = why
        plan.selectors.append(_selector(source))
    for seed in _seeds(manifest):
        if _sha(seed_file(domain, seed)) != state.seeds.get(seed.unique_id):
            plan.reasons.setdefault(seed.unique_id, "its file changed")
            plan.selectors.append(_selector(seed))
    reads = {uid: r.model_dump() for uid, r in recorded.reads.items()}
    prints = plan.read_prints = fingerprint_reads(domain, reads)
    for uid, read in sorted(reads.items()):
        if read["opaque"]:
            plan.reasons.setdefault(uid, f"{read['opaque']}: it runs every time")
        elif uid in prints and prints[uid] != recorded.read_prints.get(uid):
            files = ", ".join(read["files"])[:120]
            plan.reasons.setdefault(uid, f"a file its SQL reads changed ({files})")
    for uid, why in (
        *((u, "its last run did not succeed") for u in sorted(state.owed)),
        *sorted((metadata or {}).items()),
        *((u, "its relation is missing from the warehouse") for u in sorted(missing)),
        *((u, "its current release is not from its last build") for u in sorted(unreleased)),
    ):
        plan.reasons.setdefault(uid, why)
    known = [m for m in (observed.current, manifest) if m is not None]
    for uid in list(plan.reasons):
        node = next((m.node(uid) for m in known if m.node(uid) is not None), None)
        if node is None:
            del plan.reasons[uid]  # gone from the project: nothing to run
        elif _selector(node) not in plan.selectors:
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
    known: set[str] | None = None,
    seeds: dict[str, str | None] | None = None,
    inputs: dict[str, Any] | None = None,
    owe: Iterable[str] = (),
) -> None:
    """Write the state the next build compares with, after a dbt build wrote ``results`` (or ran nothing).

    Nodes that did not succeed stay owed; the code and landing fingerprints are those taken before
    the build, so a change made while it ran is seen by the next one. ``inputs``: what
    workflows/build_inputs.py observed (StateFile's fields: env, target, reads, hooks, footprint ...).
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
    owed |= set(owe)  # a stage of a staged build left them to a later stage (workflows/stages.py)
    if known is not None:  # a node gone from the project is owed nothing
        owed &= known
    loaded_at = dict(previous.loaded_at) if previous is not None else {}
    for result in plan.fresh.results if plan.fresh is not None else ():
        if result.max_loaded_at:
            loaded_at[result.unique_id] = result.max_loaded_at
    landing = dict(previous.landing) if previous is not None else {}
    landing.update(plan.landing)
    folder.mkdir(parents=True, exist_ok=True)
    scratch, fd = create_partial(folder / "manifest.json")  # a new file: never through a planted link
    try:
        copy_into(fd, manifest_path)
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
        "project": plan.project,
        "own": plan.own,
        "invocation": results.invocation_id,
        "seeds": seeds or {},
        "storage": previous.storage if previous is not None else None,
        **(inputs or {}),
    }
    StateFile.model_validate(state)  # what is written is what the next build accepts
    write_atomic(folder / "state.json", json.dumps(state, indent=1, sort_keys=True) + "\n")


def record_storage(domain: Domain, target: str, fingerprint: list[Any] | None) -> None:
    """The storage files as the domain's run left them: unchanged next time means no relation was dropped."""
    path = state_dir(domain, target) / "state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return
    if isinstance(state, dict) and state.get("storage") != fingerprint:
        state["storage"] = fingerprint
        write_atomic(path, json.dumps(state, indent=1, sort_keys=True) + "\n")


def project_digest(domain: Domain) -> str:
    """A digest of the dbt_project.yml of the domain and of its local packages (vars, hooks, configs)."""
    import hashlib

    digest = hashlib.sha256()
    for folder in (domain.path, *domain.local_packages):
        digest.update(f"{folder.name}:{_sha(folder / 'dbt_project.yml')}\n".encode())
    return digest.hexdigest()


def _seeds(manifest: Manifest) -> list[Node]:
    """Every seed the domain's build loads: its own and its packages' (dbt compares only the path of one over 1 MB)."""
    return [n for n in manifest.nodes.values() if n.resource_type == "seed"]


def seed_file(domain: Domain, seed: Node) -> Path:
    """Where a seed's CSV file is: in the domain's folder, or in the installed package that holds it."""
    if seed.package == domain.name:
        return domain.path / seed.file
    return domain.packages_dir / seed.package / seed.file


def seed_digests(domain: Domain, manifest: Manifest) -> dict[str, str | None]:
    return {seed.unique_id: _sha(seed_file(domain, seed)) for seed in _seeds(manifest)}


def changed_metadata(before: Manifest, after: Manifest, domain: str) -> dict[str, str]:
    """Products whose release descriptor would say something else (description, columns, owner, meta,
    versions, contract), which dbt's state comparison does not select: unique_id -> why."""
    keys = ("description", "columns", "meta", "tags", "group", "access", "deprecation_date", "latest_version",
            "contract", "constraints")  # fmt: skip
    found = {}
    for product in after.products(domain):
        old = before.nodes.get(product.unique_id)
        if old is None:
            continue  # new: dbt's state comparison selects it
        if any(product.get(k) != old.get(k) for k in keys) or after.owner(product) != before.owner(old):
            found[product.unique_id] = "its documentation or metadata changed (its release must say so)"
    return found


# -- quiescence: a domain the mesh can skip without starting dbt at all


def _sha(path: Path) -> str | None:
    try:
        return file_sha256(path) if path.is_file() else None
    except OSError:
        return None


def _stat(path: Path | None) -> list[int] | None:
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns] if stat is not None else None


def _upstream_manifest(mesh: Mesh, upstream: Any, consumer: Domain) -> Path | None:
    if upstream.name in mesh.domains:
        return mesh.domains[upstream.name].manifest_path
    if upstream.remote:  # the interface stitching fetched from the object store, in this run's channel
        from mesh_tools.store.exchange import interface_channels, open_exchange

        exchange = open_exchange(mesh)
        for channel in interface_channels(consumer, upstream.name, exchange.env):
            path = exchange.interface_cache(upstream.name, channel)
            if path.is_file():
                return path
        return None
    return upstream.manifest_path


def _profiles_file(mesh: Mesh, domain: Domain) -> Path:
    from mesh_tools.dbt.profiles import profiles_dir_for

    return profiles_dir_for(domain.path, mesh.profiles_dir) / "profiles.yml"


def quiet_facts(
    mesh: Mesh, domain: Domain, consumed: dict[str, str], manifest: Manifest, stored: set[str] | None = None
) -> dict[str, Any]:
    """What must stay the same for the next build to skip this domain without dbt (see ``quiescent``).

    ``stored``: the sources that are tables in a database file the storage fingerprint observes."""
    return {
        "mesh_yml": _sha(mesh.root / "mesh.yml"),
        "profiles": _sha(_profiles_file(mesh, domain)),
        "upstreams": {up.name: _stat(_upstream_manifest(mesh, up, domain)) for up in domain.upstreams},
        "consumed": dict(consumed),
        "locations": {s.unique_id: landing_location(s) for s in manifest.own_sources()},
        "models": sum(1 for _ in manifest.own("model")),
        "products": [[p.unique_id, p.name, p.version] for p in manifest.products(domain.name)],
        "profile_env": _profile_env(mesh, domain),
        "detect": sorted(s.unique_id for s in manifest.own_sources() if change_detection(s) in ("always", "row_count")),
        # the artifacts as this build left them: replaced or damaged since, the worker looks again
        "artifacts": [_stat(domain.manifest_path), _stat(domain.run_results_path)],
        "stored": sorted(stored or ()),
    }


def _profile_env(mesh: Mesh, domain: Domain) -> str:
    return profile_env_digest(_profiles_file(mesh, domain))


def record_quiet(domain: Domain, target: str, explicit: bool, facts: dict[str, Any], profiles_sha: str | None) -> None:
    """Add ``facts`` to the recorded state; remember which target a build without ``--target`` built."""
    path = state_dir(domain, target) / "state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return
    if not isinstance(state, dict):
        return
    state["quiet"] = QuietFacts.model_validate(facts).model_dump()  # what is written is what the next build reads
    write_atomic(path, json.dumps(state, indent=1, sort_keys=True) + "\n")
    if not explicit:
        pointer = {"profiles": profiles_sha, "target": target, "profile_env": facts.get("profile_env")}
        write_atomic(domain.target_dir / "mesh-state" / "default-target.json", json.dumps(pointer) + "\n")


def quiescent(mesh: Mesh, domain: Domain, target: str | None, publish: bool) -> tuple[str | None, int, list[str]]:
    """Whether the domain can be skipped with no dbt at all: (None, its models) when nothing it depends on
    changed since its last build, else (the first thing that did, 0); then what its last build could not see
    change (for --explain). Python only: no dbt, no profile
    rendering; anything it cannot tell without dbt sends the domain to its worker, which decides again.
    """
    from mesh_tools.dbt.packages import needs_deps
    from mesh_tools.dbt.staleness import code_fingerprint
    from mesh_tools.store.exchange import open_exchange, wanted_release

    profiles_sha = _sha(_profiles_file(mesh, domain))
    profile_env = _profile_env(mesh, domain)
    if target is None:
        try:
            pointer = json.loads((domain.target_dir / "mesh-state" / "default-target.json").read_text("utf-8"))
        except (OSError, ValueError, RecursionError):
            return "no recorded build", 0, []
        if not isinstance(pointer, dict) or pointer.get("profiles") != profiles_sha:
            return "its profiles.yml changed", 0, []
        if pointer.get("profile_env") != profile_env:
            return "an environment variable its profile reads changed (the target may be another)", 0, []
        target = str(pointer.get("target"))
    data = read_state_file(state_dir(domain, target) / "state.json")
    if isinstance(data, str) or data.quiet is None:
        return "no usable recorded build", 0, []
    quiet = data.quiet
    reads = {uid: r.model_dump() for uid, r in data.reads.items()}
    opaque = next((f"{uid.split('.')[-1]}: {r['opaque']}" for uid, r in sorted(reads.items()) if r["opaque"]), None)
    checks = (
        (data.owed, "a node is owed a good run"),
        (quiet.profiles != profiles_sha, "its profiles.yml changed"),
        (quiet.profile_env != profile_env, "an environment variable its profile reads changed"),
        (quiet.mesh_yml != _sha(mesh.root / "mesh.yml"), "mesh.yml changed"),
        (data.env_computed, "its code reads an environment variable whose name is computed"),
        (data.hooks, "its on-run-start hooks write what its models may read"),
        (opaque, opaque),
        (quiet.detect, "a source declares meta.change_detection (dbt counts or runs it)"),
    )
    for failed, why in checks:
        if failed:
            return str(why), 0, []
    now = env_digests(data.env)
    changed = next((n for n, v in now.items() if data.env.get(n) != v), None)
    if changed:
        return f"environment variable {changed} changed", 0, []
    if quiet.artifacts != [_stat(domain.manifest_path), _stat(domain.run_results_path)]:
        return "its manifest.json or run_results.json changed since its last build", 0, []
    if footprint_changes(data.footprint or {}, run_footprint(domain, data.footprint_skip)):
        return "dbt wrote its relations outside the mesh since its last build", 0, []
    if fingerprint_reads(domain, reads) != data.read_prints:
        return "a file its SQL reads changed", 0, []
    upstreams = quiet.upstreams
    if set(upstreams) != set(domain.upstream_names):
        return "its upstreams changed", 0, []
    for up in domain.upstreams:
        if upstreams.get(up.name) != _stat(_upstream_manifest(mesh, up, domain)):
            return f"upstream {up.name} was parsed or built", 0, []
    exchange = open_exchange(mesh)
    for key, release in quiet.consumed.items():
        project, model, version = split_product_key(str(key))
        try:
            if wanted_release(exchange, domain, project, model, version) != release:
                return f"{key} has another current release", 0, []
        except (MeshError, OSError):
            return f"{key}: its current release cannot be read", 0, []
    stored = set(quiet.stored)  # sources in a database file: the storage check below sees them
    for uid, location in quiet.locations.items():
        fingerprint = landing_fingerprint(domain, location)
        if fingerprint is None and uid in stored:
            continue
        if fingerprint is None and uid not in data.loaded_at:
            return f"source {uid} cannot be observed", 0, []
        if fingerprint is None or fingerprint != data.landing.get(uid):
            return f"source {uid} may have new data", 0, []
    if needs_deps(domain):
        return "its packages are not installed", 0, []
    if code_fingerprint(domain) != data.code:
        return "its code changed", 0, []
    storage = data.storage
    if not storage:
        return "its storage cannot be observed without dbt", 0, []
    for entry in storage:
        if len(entry) == 2 and entry[1] == "warehouse":
            return "its storage cannot be observed without dbt", 0, []
        path = Path(str(entry[0]))
        now = [str(path), "tree", tree_stat(path)] if len(entry) == 3 and entry[1] == "tree" else None
        if now is None:
            stat = _stat(path)
            now = [str(path), *stat] if stat is not None else [str(path), None]
        if now != list(entry):
            return "its storage changed", 0, []
    if publish:
        built = data.built
        for uid, name, version in quiet.products:
            try:
                current = exchange.current(domain.name, name, version, verify=False)
            except (MeshError, OSError):
                current = None
            if current is None or current.descriptor.build.invocation_id != built.get(uid):
                return f"{name} is not published from its last build", 0, []
    return None, quiet.models, list(data.unseen)
