"""Planning a state-aware build: what must run in a domain and why, from its last state and what is seen now.

A node runs when (reasons in `--explain`):
- dbt's own state comparison selects it (``state:modified+`` against that manifest): its code,
  config or macros changed, or an upstream product it reads has a new release (the stitched stub
  names another release folder, so only that product's readers are modified);
- a source it reads has new data (landing files changed, or a newer ``loaded_at`` in source
  freshness), or a source cannot be observed at all (then it always runs: correctness first);
- its last run did not succeed, its relation is missing, or (when publishing) its product has no
  current release;
- anything upstream of it runs (dbt's ``+``).
Nothing selected: no dbt command at all. Whatever makes the last state untrustworthy (``why_full``)
builds everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Domain
from mesh_tools.model.freshness import FreshnessResults, SourceResult
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node, local_name
from mesh_tools.state.file import STATE_VERSION, BuildState, StateFile
from mesh_tools.state.inputs import (
    BUILT,
    change_detection,
    file_digest,
    fingerprint_reads,
    footprint_changes,
    landing_fingerprint,
    readers_of_env,
    rendered_changes,
    seed_file,
    seeds_of,
)


@dataclass
class Observed:
    """What the worker observed before planning, beyond code and sources (state/inputs.py)."""

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
        return f"source:{node.package}.{local_name(node.unique_id)}+"
    fqn = node.get("fqn")
    if isinstance(fqn, list) and fqn:
        return "fqn:" + ".".join(str(p) for p in fqn) + "+"
    return node.name + "+"


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
    ``observed``: the environment, target, run footprint and current parse (state/inputs.py).
    """
    observed = observed or Observed()
    if not isinstance(state, str):
        state = why_full(state, project, observed) or state
    if isinstance(state, str):
        plan = BuildPlan(full=True, why_full=state, code=code, fresh=fresh, project=project, observed=observed)
        for uid, landing in state_sources(domain):
            plan.landing[uid] = landing
        return plan
    recorded = state.file or StateFile(version=STATE_VERSION, code=state.code)
    plan = BuildPlan(full=False, state=state, code=code, modified=code != state.code, fresh=fresh, project=project,
                     observed=observed)  # fmt: skip
    _env_reasons(plan, domain, state, recorded)
    measured = {r.unique_id: r for r in fresh.results} if fresh is not None else {}
    for source in (observed.current or state.manifest).own_sources():
        fingerprint = plan.landing[source.unique_id] = landing_fingerprint(domain, source)
        why = _source_reason(source, fingerprint, measured.get(source.unique_id), state, recorded, plan)
        if why is not None:
            plan.reasons[source.unique_id] = why
            plan.selectors.append(_selector(source))
    for seed in seeds_of(state.manifest):
        if file_digest(seed_file(domain, seed)) != state.seeds.get(seed.unique_id):
            plan.reasons.setdefault(seed.unique_id, "its file changed")
            plan.selectors.append(_selector(seed))
    _read_reasons(plan, domain, recorded)
    for uid, why in (
        *((u, "its last run did not succeed") for u in sorted(state.owed)),
        *sorted((metadata or {}).items()),
        *((u, "its relation is missing from the warehouse") for u in sorted(missing)),
        *((u, "its current release is not from its last build") for u in sorted(unreleased)),
    ):
        plan.reasons.setdefault(uid, why)
    _select(plan, [m for m in (observed.current, state.manifest) if m is not None])
    return plan


def _env_reasons(plan: BuildPlan, domain: Domain, state: BuildState, recorded: StateFile) -> None:
    """The nodes that read an environment variable changed since the last build (their SQL, or as dbt renders
    them); dbt's state comparison on a new parse when what they change cannot be told node by node."""
    observed, manifest = plan.observed, state.manifest
    changed_env = {n for n, v in observed.env.items() if recorded.env.get(n, v) != v}
    changed_env |= {n for n in recorded.env if n not in observed.env and recorded.env[n] != "unset"}
    if not changed_env:
        return
    for uid, why in readers_of_env(observed.current or manifest, domain.name, changed_env).items():
        plan.reasons.setdefault(uid, why)
    rendered = rendered_changes(manifest, observed.current, domain.name) if observed.current else None
    if rendered is None:
        plan.modified = True  # what the variables change at parse: dbt's own comparison, on a new parse
    for uid, why in (rendered or {}).items():
        plan.reasons.setdefault(uid, why)


def _source_reason(
    source: Node, fingerprint: str | None, result: SourceResult | None, state: BuildState, recorded: StateFile,
    plan: BuildPlan,
) -> str | None:  # fmt: skip
    """Why what reads ``source`` runs (new data, or data that cannot be observed), or None; what it cannot see
    change goes to ``plan.unseen``."""
    uid, observed = source.unique_id, plan.observed
    newer = result is not None and result.max_loaded_at and result.max_loaded_at != state.loaded_at.get(uid)
    label = local_name(uid)
    mode = change_detection(source)
    database = str(source.get("database") or "").lower()
    if database and database in observed.databases:
        return f"the database file of source {label} ({database}) changed"
    if mode == "always":
        return f"source {label} declares meta.change_detection: always"
    if fingerprint is not None and fingerprint != state.landing.get(uid):
        return f"the landing files of source {label} changed"
    if mode == "row_count" and observed.counts.get(uid) != recorded.counts.get(uid):
        now, was = observed.counts.get(uid, "an unknown number of"), recorded.counts.get(uid, "unknown")
        return f"source {label} has {now} rows (was {was})"
    if newer:
        return f"source {label} has newer rows (loaded_at {result.max_loaded_at})"  # type: ignore[union-attr]
    if fingerprint is None and mode is None and _stored(source, observed):
        return None  # a table in a database file the mesh fingerprints, unchanged since its last build
    if fingerprint is None and mode != "row_count" and (result is None or not result.max_loaded_at):
        return (
            f"source {label} cannot be observed (no landing file, no loaded_at_field freshness): "
            "what reads it runs every time"
        )
    if fingerprint is None and mode is None:
        plan.unseen.append(
            f"source {label} is observed through its loaded_at only: rows deleted or corrected in place "
            "are not seen (declare `meta: {change_detection: row_count}` or `always` on it)"
        )
    return None


def _read_reasons(plan: BuildPlan, domain: Domain, recorded: StateFile) -> None:
    """The models whose SQL reads a file that changed, or reads what cannot be observed (they run every time)."""
    reads = {uid: r.model_dump() for uid, r in recorded.reads.items()}
    prints = plan.read_prints = fingerprint_reads(domain, reads)
    for uid, read in sorted(reads.items()):
        if read["opaque"]:
            plan.reasons.setdefault(uid, f"{read['opaque']}: it runs every time")
        elif uid in prints and prints[uid] != recorded.read_prints.get(uid):
            files = ", ".join(read["files"])[:120]
            plan.reasons.setdefault(uid, f"a file its SQL reads changed ({files})")


def _select(plan: BuildPlan, known: list[Manifest]) -> None:
    """A selector for every node with a reason; a node gone from the project loses its reason (nothing to run)."""
    for uid in list(plan.reasons):
        node = next((m.node(uid) for m in known if m.node(uid) is not None), None)
        if node is None:
            del plan.reasons[uid]
        elif _selector(node) not in plan.selectors:
            plan.selectors.append(_selector(node))


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
