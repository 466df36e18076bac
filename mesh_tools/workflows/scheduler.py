"""Run one dbt command over many domains in dependency order, independent domains in parallel.

Each domain runs in a worker process (dbt is not thread-safe). A domain starts once all its
selected upstreams succeeded; when one fails, everything downstream of it is skipped while
independent domains go on. Domains that read each other's models (a cycle between domains) are
planned before anything runs and built in stages (workflows/stages.py), one stage after the other,
while independent domains go on. A producer that would otherwise leave a core idle while its readers wait
builds and publishes its data products first and the rest of its models after, beside its readers
(pipelined: ``stages.products_first``). Every worker asks, as it starts (before it waits for work), to die with
the `mesh` process that forked it: a killed run leaves no worker behind.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh_tools.core.errors import ConfigError, DbtError, MeshError, display_path
from mesh_tools.core.graph import cycles
from mesh_tools.core.mesh import Mesh
from mesh_tools.dbt import engines
from mesh_tools.stitch.plan import check_pins, release_bodies, upstream_manifests
from mesh_tools.workflows.domain_run import (
    FAILED,
    SKIPPED,
    SUCCESS,
    DomainRun,
    StageSlice,
    die_with_parent,
    run_domain,
)

if TYPE_CHECKING:
    from mesh_tools.core.graph import Stage
    from mesh_tools.dbt.profiles import ProfileInfo
    from mesh_tools.exchange.publish import PublishOutcome
    from mesh_tools.workflows.stages import StagedGroup

Progress = Callable[[str, str, DomainRun | None], None]  # (event, domain, result)


@dataclass(frozen=True)
class RunPlan:
    command: str
    domains: list[str]
    target: str | None
    jobs: int
    verbose: bool = False
    publish: bool = True
    full: bool = False  # build every node, whatever changed (a state-aware build is the default)
    # a model-level selection (workflows/model_selection.py): domain -> the slice its `dbt build` runs; a domain
    # with a slice builds exactly those nodes, whatever changed, and owes the rest of it a run
    slices: dict[str, StageSlice] = field(default_factory=dict)


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Forked worker processes (they inherit the imported modules: dbt is imported once), each set at fork
    to die with this process, even one that never gets a task (an idle worker otherwise outlives a killed run)."""
    context = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent,
                               initargs=(os.getpid(),))  # fmt: skip


def preflight(mesh: Mesh, plan: RunPlan) -> None:
    """Fail before anything runs: a bad pin, or an upstream outside the selection with nothing to read."""
    selected = set(plan.domains)
    for name in plan.domains:
        domain = mesh.domains[name]
        outside = {up.name for up in domain.upstreams if up.name not in selected}
        if not outside and not domain.pins:
            continue
        manifests = upstream_manifests(mesh, domain, only=outside)
        check_pins(mesh, domain, manifests)
        if plan.command == "build":
            for manifest in manifests.values():
                release_bodies(mesh, domain, manifest, require=True)


def run_mesh(mesh: Mesh, plan: RunPlan, progress: Progress | None = None) -> list[DomainRun]:
    """Run ``plan`` and return one DomainRun per selected domain, in dependency order.

    A cycle of selected domains is parsed and split into stages before anything runs (ConfigError for a
    cycle between models); `mesh build` builds it stage by stage, `mesh stitch` parses it once more, each
    domain against the others' parses."""
    preflight(mesh, plan)
    notify = progress or (lambda *_: None)
    selected = set(plan.domains)
    ups = {n: {u for u in mesh.domains[n].upstream_names if u in selected} for n in plan.domains}
    groups = cycles(ups)
    results: dict[str, DomainRun] = {}
    for name, run in _quiescent(mesh, plan, ups, groups).items():
        results[name] = run
        notify("finished", name, run)
    if len(results) == len(plan.domains):  # nothing to do anywhere: neither dbt nor a worker is started
        return [results[n] for n in plan.domains]
    jobs = max(1, min(plan.jobs, len(plan.domains)))
    profiles, broken = _profiles(mesh, plan)
    refuse_unreachable_exchange(mesh, profiles)  # a cluster that cannot reach the releases: before its server
    down = engines.server_problems([(p.adapter, p.stored) for p in profiles.values()])
    if down:  # a cluster's server that does not answer fails every domain on it: one error, before any worker
        raise DbtError(" ".join(down))
    # fork: workers inherit the imported modules and dbt's warm caches, so both are paid once, not per worker
    from mesh_tools.dbt import runner as dbt_runner  # noqa: F401
    from mesh_tools.dbt.warm import warm_dbt

    warm_dbt()
    for name, problem in broken.items():
        results[name] = DomainRun(name, FAILED, problems=[problem])
        notify("finished", name, results[name])
    # An engine living in the worker (a Spark session's JVM, bound to one domain's warehouse and
    # metastore) must not serve a second domain: each domain then gets a process of its own.
    fresh = any(engines.owns_its_process(p.adapter, p.connection) for p in profiles.values())
    with worker_pool(jobs) as pool, ThreadPoolExecutor(max_workers=max(1, len(groups))) as conductor:
        under_way = _Run(mesh, plan, notify, ups, groups, results, profiles, fresh, jobs, pool, conductor)
        under_way.plan_cycles()  # planned before anything runs: a cycle between models stops the run here
        while len(results) < len(plan.domains):
            under_way.start_ready()
            under_way.collect()
    return [results[n] for n in plan.domains]


@dataclass
class _Run:
    """One `run_mesh` under way: what finished, what runs (domains in workers, cycles in the conductor)."""

    mesh: Mesh
    plan: RunPlan
    notify: Progress
    ups: dict[str, set[str]]
    groups: list[list[str]]
    results: dict[str, DomainRun]
    profiles: dict[str, ProfileInfo]
    fresh: bool  # each domain in a process of its own (an engine bound to its process)
    jobs: int
    pool: ProcessPoolExecutor
    conductor: ThreadPoolExecutor
    running: dict[Future[DomainRun], str] = field(default_factory=dict)
    single: dict[Future[DomainRun], ProcessPoolExecutor] = field(default_factory=dict)
    staged: dict[str, StagedGroup] = field(default_factory=dict)  # first domain of a cycle -> its stages
    groups_running: dict[Future[dict[str, DomainRun]], list[str]] = field(default_factory=dict)
    # a pipelined domain (products first): its stage running, the stages still to come, its finished parts
    piped: dict[Future[DomainRun], tuple[Stage, list[tuple[Stage, StageSlice]], list[DomainRun]]] = field(
        default_factory=dict
    )
    published: set[str] = field(default_factory=set)  # pipelined domains whose products are out: readers may start

    def submit(self, fn: Callable[..., DomainRun], *args: object) -> Future[DomainRun]:
        """A stage's worker: the shared pool, or a process of its own, shut down once its work is done."""
        if not self.fresh:
            return self.pool.submit(fn, *args)
        own = worker_pool(1)
        future = own.submit(fn, *args)
        future.add_done_callback(lambda _f: own.shutdown(wait=False))
        return future

    def plan_cycles(self) -> None:
        from mesh_tools.workflows.stages import prepare

        for group in self.groups:
            if self.plan.command in ("build", "parse") and not any(n in self.results for n in group):
                self.staged[group[0]] = prepare(self.mesh, group, self.plan.target, self.plan.verbose, self.submit)
                for name, run in self.staged[group[0]].stopped.items():
                    self.results[name] = run
                    self.notify("skipped" if run.status == SKIPPED else "finished", name, run)

    def start_ready(self) -> None:
        """Start every domain (or cycle) whose upstreams finished; skip those downstream of a failure."""
        busy = set(self.running.values()) | {n for g in self.groups_running.values() for n in g}
        ready: list[str] = []
        for name in self.plan.domains:
            if name not in self.results and name not in busy:
                self._consider(name, busy, ready)
        for name in ready:
            idle = self.jobs - len(self.running) - len(self.groups_running) - len(ready) > 0
            if not (self.fresh and len(self.running) >= self.jobs) and not _shares_storage(name, busy, self.profiles):
                self._start(name, busy, idle)  # (a domain sharing storage with a running one, a cycle's too, waits)

    def _consider(self, name: str, busy: set[str], ready: list[str]) -> None:
        group = next((g for g in self.groups if name in g), [name])
        outside = {u for n in group for u in self.ups[n]} - set(group)
        cycle = self.staged.get(group[0]) if self.plan.command == "build" else None
        if cycle is None:  # a cycle's stitch, or one not planned: one domain after the other
            outside |= set(group[: group.index(name)])
        outside -= self.published  # a pipelined upstream's products passed and are out: what its readers read
        failed_up = sorted(u for u in outside if u in self.results and self.results[u].status != SUCCESS)
        failed_up += sorted(n for n in group if n in self.results and self.results[n].status != SUCCESS)
        if failed_up:
            problem = f"upstream {', '.join(dict.fromkeys(failed_up))} did not succeed"
            self.results[name] = DomainRun(name, SKIPPED, problems=[problem])
            self.notify("skipped", name, self.results[name])
        elif not all(u in self.results for u in outside):
            return
        elif cycle is not None:
            self._start_cycle(name, group, cycle, busy)
        else:
            ready.append(name)

    def _start_cycle(self, name: str, group: list[str], cycle: StagedGroup, busy: set[str]) -> None:
        """A cycle's stages, one after the other, started by its first domain."""
        from mesh_tools.workflows.stages import run_stages

        if name != group[0] or any(_shares_storage(n, busy, self.profiles) for n in group):
            return
        plan = self.plan
        task = self.conductor.submit(run_stages, self.mesh, cycle, plan.command, plan.target, plan.verbose,
                                     plan.publish, plan.full, self.submit, self.notify)  # fmt: skip
        self.groups_running[task] = group
        busy |= set(group)

    def _start(self, name: str, busy: set[str], idle: bool = False) -> None:
        """Start ``name``'s build; pipelined (products first) when a core would idle while its readers wait."""
        plan = self.plan
        staged = self._products_first(name) if idle else None
        if staged is not None:
            from mesh_tools.workflows.stages import forget_stages

            forget_stages(self.mesh, [name])
            self._start_stage(name, staged[0], staged[1:], [])
            busy.add(name)
            return
        executor = worker_pool(1) if self.fresh else self.pool
        future = executor.submit(
            run_domain, self.mesh, name, plan.command, plan.target, plan.verbose, plan.publish,
            plan.full or name in plan.slices, plan.slices.get(name),
        )  # fmt: skip
        if self.fresh:
            self.single[future] = executor
        self.running[future] = name
        busy.add(name)
        self.notify("started", name, None)

    def _products_first(self, name: str) -> list[tuple[Stage, StageSlice]] | None:
        """The two stages of a pipelined build of ``name``, when it has readers in this run and may be split."""
        plan = self.plan
        if plan.command != "build" or not plan.publish or self.fresh or name in plan.slices:
            return None
        if any(name in g and len(g) > 1 for g in self.groups):
            return None
        if not any(name in self.ups[r] and r not in self.results for r in plan.domains):
            return None
        from mesh_tools.workflows.stages import products_first

        return products_first(self.mesh, name)

    def _start_stage(self, name: str, stage: tuple[Stage, StageSlice], later: list[tuple[Stage, StageSlice]],
                     parts: list[DomainRun]) -> None:  # fmt: skip
        plan = self.plan
        number, slice_ = stage[0].number, stage[1]
        # `--no-state` builds the first stage in full; the second compares with the state the first left, which
        # owes it every node the first left out (as a cycle's stages do)
        full = (plan.full or name in plan.slices) and number == 1
        future = self.pool.submit(run_domain, self.mesh, name, plan.command, plan.target, plan.verbose, plan.publish,
                                  full, slice_)  # fmt: skip
        self.running[future] = name
        self.piped[future] = (stage[0], later, parts)
        self.notify("started", f"{name} (stage {number} of {slice_.of}: "
                    f"{'its data products' if number == 1 else 'the rest'})", None)  # fmt: skip

    def _stage_done(self, future: Future[DomainRun], name: str, run: DomainRun) -> None:
        """A pipelined domain's stage finished: after its products, start the rest (readers may start too)."""
        from mesh_tools.workflows.stages import deferred_here, keep_stage_results, merge

        stage, later, parts = self.piped.pop(future)
        if stage.number > 1:
            deferred_here(run, name, list(stage.nodes))
        run.notes.insert(0, f"pipelined: stage {stage.number} of 2 built "
                         f"{'its data products and what they read' if stage.number == 1 else 'the rest'}")  # fmt: skip
        keep_stage_results(self.mesh.domains[name], stage, run)
        parts.append(run)
        self.notify("finished", f"{name} (stage {stage.number} of 2)", run)
        if run.status == SUCCESS and later:
            self.published.add(name)
            self._start_stage(name, later[0], later[1:], parts)
            return
        self.results[name] = merge(name, parts)

    def collect(self) -> None:
        """Wait for the next domain or cycle to finish and record it (a crash fails its domains, not the run)."""
        if not self.running and not self.groups_running:
            return
        waiting: list[Future[Any]] = [*self.running, *self.groups_running]
        done, _ = wait(waiting, return_when=FIRST_COMPLETED)
        for future in done:
            if future in self.groups_running:
                members = self.groups_running.pop(future)
                try:
                    finished = future.result()
                except Exception as exc:  # noqa: BLE001 - a crashed conductor fails its cycle, not the run
                    crashed = f"staged build crashed: {exc!r}"
                    finished = {n: DomainRun(n, FAILED, problems=[crashed]) for n in members}
                for name in members:  # each stage was shown as it finished
                    self.results[name] = finished[name]
                continue
            name = self.running.pop(future)
            try:
                finished = future.result()
            except Exception as exc:  # a crashed worker fails its domain, not the run
                finished = DomainRun(name, FAILED, problems=[f"worker crashed: {exc!r}"])
            if future in self.piped:
                self._stage_done(future, name, finished)
                continue
            self.results[name] = finished
            self.notify("finished", name, self.results[name])
            if future in self.single:
                self.single.pop(future).shutdown()


def _quiescent(mesh: Mesh, plan: RunPlan, ups: dict[str, set[str]], groups: list[list[str]]) -> dict[str, DomainRun]:
    """The domains a state-aware build skips from here, in dependency order: nothing they depend on
    changed since their last build (state/quiescence.py), and no selected upstream runs. The
    domains of a cycle are skipped together or not at all (their stages are one build)."""
    from mesh_tools.state.quiescence import quiescent

    quiet: dict[str, DomainRun] = {}
    if plan.command != "build" or plan.full or plan.slices:  # a model-level selection runs what it names
        return quiet
    peers = {name: set(group) for group in groups for name in group}
    for name in plan.domains:
        if any(u not in quiet for u in ups[name] - peers.get(name, set())):
            continue  # an upstream runs: it may publish, so this domain's worker decides
        start = time.perf_counter()
        try:
            why, models, unseen = quiescent(mesh, mesh.domains[name], plan.target, plan.publish)
        except Exception:  # noqa: BLE001 - a fast path only: what it cannot tell, the worker decides
            continue
        if why is None:
            note = "nothing changed since its last build: no dbt run"
            quiet[name] = DomainRun(name, SUCCESS, seconds=time.perf_counter() - start, models_total=models,
                                    notes=[note], unseen=unseen)  # fmt: skip
    changed = True
    while changed:  # a domain of a cycle runs: its stages build every one of its domains, and what reads them
        loud = {n for n in plan.domains if n not in quiet}
        drop = {m for n in loud for m in peers.get(n, ())} | {n for n in quiet if ups[n] & loud}
        changed = bool(drop & set(quiet))
        for name in drop:
            quiet.pop(name, None)
    return quiet


def _profiles(mesh: Mesh, plan: RunPlan) -> tuple[dict[str, ProfileInfo], dict[str, str]]:
    """Each selected domain's target as dbt reads it; the domains whose profile dbt cannot read, with why."""
    from mesh_tools.dbt import profiles as dbt_profiles

    profiles: dict[str, ProfileInfo] = {}
    broken: dict[str, str] = {}
    for name in plan.domains:
        try:
            profiles[name] = dbt_profiles.load_profile(mesh.domains[name].path, plan.target, mesh.profiles_dir)
        except MeshError as exc:
            broken[name] = str(exc)
    return profiles, broken


def refuse_unreachable_exchange(mesh: Mesh, profiles: dict[str, ProfileInfo]) -> None:
    """ConfigError (exit 2), before any dbt runs or any server is asked, when a domain's target cannot reach the
    exchange's files where its stubs read releases and its publish stages new ones (a Spark cluster on another
    machine: the exchange, or an object-store exchange's cache, below ``MESH_SPARK_SHARED_DIR``). Domains on one
    cluster with the same problem are named together, once."""
    exchange, object_store = mesh.exchange_path, mesh.exchange_url is not None
    found: dict[tuple[str, str], list[str]] = {}
    for name, profile in profiles.items():
        for problem in engines.exchange_reach_problems(profile.adapter, profile.stored, exchange, object_store):
            shown = f"{name} (target {profile.target} in {display_path(profile.profiles_file)})"
            found.setdefault((problem.message, problem.fix), []).append(shown)
    if found:
        raise ConfigError(" ".join(f"{', '.join(names)}: {message}. {fix}" for (message, fix), names in found.items()))


def _shares_storage(name: str, running: Iterable[str], profiles: dict[str, ProfileInfo]) -> bool:
    """Whether a running domain opens one of the files ``name`` opens (DuckDB allows one writer per file)."""
    mine = set(profiles[name].files) if name in profiles else set()
    return any(mine & set(profiles[other].files) for other in running if other in profiles)


def publish_each(mesh: Mesh, names: list[str], target: str | None) -> Iterator[tuple[str, PublishOutcome, list[str]]]:
    """`mesh publish`: each domain in a process of its own, in its folder (it is read through its own dbt
    connection), one after the other; (domain, outcome, lineage warnings) as each finishes."""
    from mesh_tools.dbt import profiles as dbt_profiles
    from mesh_tools.dbt import runner as dbt_runner  # noqa: F401  (imported once, before the workers fork)
    from mesh_tools.workflows.domain_run import publish_in_worker
    from mesh_tools.workflows.lineage import emit_publish

    profiles: dict[str, ProfileInfo] = {}
    for name in names:  # a profile dbt cannot read: the domain's worker says why
        try:
            profiles[name] = dbt_profiles.load_profile(mesh.domains[name].path, target, mesh.profiles_dir)
        except MeshError:
            continue
    refuse_unreachable_exchange(mesh, profiles)  # the cluster stages each release in the exchange (its cache)
    for name in names:
        with worker_pool(1) as pool:
            outcome = pool.submit(publish_in_worker, mesh, name, target).result()
        warnings = [] if outcome.refused else emit_publish(mesh, name, outcome.releases, target)
        yield name, outcome, warnings


def parse_outside(mesh: Mesh, scratch: dict[str, Path], target: str | None, jobs: int) -> dict[str, str | None]:
    """`dbt parse` of each domain into its scratch target path (``scratch[name]``), nothing written into the
    domain (no stitch, no deps, no target/, no logs/): what a reader needs to judge current files.

    Domain name -> None when it parsed, else what went wrong.
    """
    from mesh_tools.dbt import runner as dbt_runner  # noqa: F401  (imported once, before the workers fork)

    out: dict[str, str | None] = {}
    with worker_pool(max(1, min(jobs, len(scratch)))) as pool:
        futures = {name: pool.submit(_parse_into, mesh, name, target, dest) for name, dest in scratch.items()}
        for name, future in futures.items():
            try:
                out[name] = future.result()
            except Exception as exc:  # a crashed worker: that domain could not be parsed
                out[name] = f"worker crashed: {exc!r}"
    return out


def _parse_into(mesh: Mesh, name: str, target: str | None, dest: Path) -> str | None:
    """In a worker, in the domain's folder (as dbt resolves relative paths): `dbt parse --target-path dest`."""
    from mesh_tools.dbt import runner as dbt_runner
    from mesh_tools.dbt.packages import needs_deps

    domain = mesh.domains[name]
    if needs_deps(domain):
        return f"its packages are not installed: run `mesh stitch {name}`"
    os.chdir(domain.path)
    # a full parse: dbt's partial parsing trusts a YAML file whose modification time did not change
    args = ["parse", "--no-partial-parse", "--target-path", str(dest), "--log-path", str(dest / "logs")]
    try:
        parsed = dbt_runner.invoke(domain.path, args, target=target, profiles_dir=mesh.profiles_dir)
    except MeshError as exc:
        return str(exc)
    if parsed.success:
        return None
    return "; ".join(([parsed.exception] if parsed.exception else []) + parsed.errors[-3:]) or "dbt parse failed"
