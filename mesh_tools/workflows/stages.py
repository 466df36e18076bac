"""Build a cycle of domains whose models form no cycle in stages, each one domain's slice of the model graph.

Projects that read each other's models (A reads B's ``dim_customers``, B reads A's ``stg_orders``) form a
cycle between domains, but often none between models. Each domain of the cycle is parsed (as `mesh stitch`
parses it, against placeholders for the products of its peers that no manifest describes yet); the models,
seeds and snapshots of all of them then form one graph, split by ``core.graph.stages``: each stage is a
`dbt build` of one domain's slice, whose upstreams inside the cycle earlier stages built and published, and
it publishes what it built for the next stage, which stitches again and reads that release. A cycle between
models is refused before anything is built, naming the models and their files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ConfigError, MeshError, display_path
from mesh_tools.core.files import write_atomic
from mesh_tools.core.graph import ModelCycle, Stage, stages
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.model.manifest import Manifest, RunResults, read_json
from mesh_tools.model.nodes import Node, NodeId, ProductKey, local_name, package_of, resource_type_of
from mesh_tools.stitch.refs import scan_refs
from mesh_tools.workflows.domain_run import FAILED, SKIPPED, SUCCESS, DomainRun, StageSlice, run_domain

Submit = Callable[..., "Future[DomainRun]"]

BUILT = ("model", "seed", "snapshot")  # what a stage's `dbt build` builds, and a consumer may ref


def own_built(manifest: Manifest) -> list[Node]:
    """The project's own models, seeds and snapshots."""
    return [n for n in manifest.nodes.values() if n.resource_type in BUILT and n.package == manifest.project]


def product_of(manifest: Manifest, unique_id: str) -> Node | None:
    """The producer's node a consumer's stub ``unique_id`` stands for: a model keeps its id, a seed's or snapshot's
    stub is a model of the same name (``model.revenue.integers`` for ``seed.revenue.integers``), and an unversioned
    id of a versioned model (a planning parse's placeholder for an unversioned ref) is its latest version, as dbt
    resolves an unversioned ref."""
    read = NodeId.read(unique_id)
    if read is None:
        return manifest.nodes.get(unique_id)
    behind = [unique_id] + [str(replace(read, resource_type=kind)) for kind in ("seed", "snapshot")]
    found = next((manifest.nodes[u] for u in behind if u in manifest.nodes), None)
    if found is not None or read.resource_type != "model":
        return found
    versions = [n for n in own_built(manifest) if n.resource_type == "model" and n.package == read.package
                and read.version is None and n.name == read.name and n.version is not None]  # fmt: skip
    return next((n for n in versions if n.is_latest), None)


@dataclass
class StagedGroup:
    """A cycle of domains, ready to build: its stages, or the runs that stopped it (a domain did not parse)."""

    domains: list[str]
    stages: list[Stage] = field(default_factory=list)
    slices: dict[int, StageSlice] = field(default_factory=dict)  # stage number -> what its dbt run selects
    stopped: dict[str, DomainRun] = field(default_factory=dict)
    parsed: dict[str, DomainRun] = field(default_factory=dict)  # the parse each domain had for the plan


def placeholder_manifest(mesh: Mesh, consumer: Domain, upstream: str) -> Path | None:
    """The manifest ``consumer`` parses against for ``upstream``: its own (None) when it describes every product
    the consumer's code refs, else a copy with a placeholder model for each one it lacks (a peer in the cycle
    may not have been parsed since the product was written). Placeholders only let dbt parse: the build
    stitches against the real manifest, and refuses a ref to what the producer does not share."""
    wanted = {(ref.model, ref.version) for ref in scan_refs(consumer) if ref.project == upstream}
    path = mesh.domains[upstream].manifest_path
    data: dict[str, Any]
    try:
        data = read_json(path, "manifest", "") if path.is_file() else {}
    except MeshError:
        data = {}
    manifest = Manifest(data, path, upstream) if data else None
    have = {(n.name, n.version) for n in own_built(manifest)} if manifest else set()
    names = {name for name, _ in have}
    missing = sorted(w for w in wanted if w not in have and not (w[1] is None and w[0] in names))
    if data and not missing:
        return None
    data = data or {"metadata": {"project_name": upstream}, "nodes": {}, "sources": {}, "macros": {}}
    nodes = dict(data.get("nodes") or {})
    for name, version in missing:
        uid = str(NodeId.model(upstream, name, version or None))
        nodes[uid] = {
            "unique_id": uid, "resource_type": "model", "name": name, "package_name": upstream,
            "fqn": [upstream, name] + ([f"v{version}"] if version else []), "access": "public",
            "config": {"access": "public", "materialized": "view", "enabled": True}, "columns": {},
            "version": version, "latest_version": version, "original_file_path": "", "schema": "main",
            "alias": name, "depends_on": {"nodes": []},
        }  # fmt: skip
    data = {**data, "nodes": nodes, "metadata": {**(data.get("metadata") or {}), "project_name": upstream}}
    target = consumer.stages_dir / f"{upstream}.manifest.json"
    write_atomic(target, json.dumps(data), below=consumer.target_dir)
    return target


def _parse_mesh(mesh: Mesh, name: str) -> Mesh:
    """The mesh as ``name``'s planning parse sees it: each upstream of the mesh through a manifest that
    describes what ``name`` refs of it."""
    domain = mesh.domains[name]
    domains = dict(mesh.domains)
    for up in domain.upstreams:
        if up.name in mesh.domains:
            path = placeholder_manifest(mesh, domain, up.name)
            if path is not None:
                domains[up.name] = dataclasses.replace(mesh.domains[up.name], parsed_manifest=path)
    return dataclasses.replace(mesh, domains=domains)


def _current(mesh: Mesh, domain: Domain) -> bool:
    """Whether the domain's manifest describes its files as they are (dbt/staleness.py), so no parse is needed."""
    from mesh_tools.dbt.staleness import judge, others_of

    return domain.manifest_path.is_file() and judge(domain, others_of(mesh)).fresh


def prepare(mesh: Mesh, group: list[str], target: str | None, verbose: bool, submit: Submit) -> StagedGroup:
    """Parse each domain of the cycle whose manifest is not current (side by side, each against the placeholders
    its peers need), then split the models across them into stages. ConfigError naming the models and files
    of a cycle between models."""
    out = StagedGroup(list(group))
    # every placeholder is written before any parse starts, so the parses can run side by side
    views = {name: _parse_mesh(mesh, name) for name in group if not _current(mesh, mesh.domains[name])}
    parses = {name: submit(run_domain, view, name, "parse", target, verbose) for name, view in views.items()}
    for name, future in parses.items():
        out.parsed[name] = run = future.result()
        if run.status != SUCCESS:
            out.stopped[name] = run
    if out.stopped:
        failed = ", ".join(sorted(out.stopped))
        for name in group:
            out.stopped.setdefault(name, DomainRun(name, SKIPPED, problems=[
                f"{failed} of its cycle of domains ({', '.join(group)}) did not parse: the stages of the cycle "
                "cannot be planned"]))  # fmt: skip
        return out
    manifests = {name: Manifest.load(mesh.domains[name].manifest_path, name) for name in group}
    try:
        graph = model_graph(group, manifests)
    except UnknownProduct as unknown:
        raise ConfigError(unknown_product_message(mesh, unknown)) from None
    try:
        out.stages = stages(graph.owner, graph.parents, group)
    except ModelCycle as cycle:
        raise ConfigError(model_cycle_message(mesh, cycle.path, graph)) from None
    out.slices = slices(out.stages, graph.owner, manifests)
    return out


class UnknownProduct(ConfigError):
    """A node reads a stub of a peer's product that the peer's manifest has no model, seed or snapshot for (a
    ConfigError: `mesh doctor` says the stages cannot be read; a build names the files, unknown_product_message)."""

    def __init__(self, domain: str, node: Node, parent: str):
        peer, product = package_of(parent), local_name(parent)
        super().__init__(f"{domain}.{local_name(node.unique_id)} reads {peer}.{product}, which {peer}'s manifest "
                         "has no model, seed or snapshot of")  # fmt: skip
        self.domain, self.node, self.parent = domain, node, parent


@dataclass
class ModelGraph:
    """The models, seeds and snapshots of a cycle's domains, and what each must have built before it."""

    owner: dict[str, str] = field(default_factory=dict)  # node -> its domain
    parents: dict[str, set[str]] = field(default_factory=dict)  # node -> the nodes of the cycle built before it
    where: dict[str, str] = field(default_factory=dict)  # node -> its file in its project
    via: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (product, node) -> (test, file)


def model_graph(group: list[str], manifests: dict[str, Manifest]) -> ModelGraph:
    """The model graph across the cycle's domains: a stub of a peer's product stands for that product. A data test
    of a product that reads another domain's node puts that node before the product: the publish gate releases a
    product only with all its data tests run in the same build (workflows/release.py)."""
    graph = _built_nodes(group, manifests)
    for name in group:
        for node in own_built(manifests[name]):
            graph.parents[node.unique_id] = _parents(graph, manifests, name, node)
        for test in manifests[name].nodes.values():
            if test.resource_type == "test" and test.package == name:
                _place_test(graph, manifests, name, test)
    return graph


def _built_nodes(group: list[str], manifests: dict[str, Manifest]) -> ModelGraph:
    """A graph of the cycle's models, seeds and snapshots with their domains and files, no edges yet."""
    graph = ModelGraph()
    for name in group:
        for node in own_built(manifests[name]):
            graph.owner[node.unique_id] = name
            graph.where[node.unique_id] = node.file
    return graph


def _parents(graph: ModelGraph, manifests: dict[str, Manifest], name: str, node: Node) -> set[str]:
    """The nodes of the graph that ``node`` of domain ``name`` reads: a stub of a peer's product stands for the
    product (UnknownProduct when the peer has none: dropping it could hide a cycle)."""
    found: set[str] = set()
    for parent in node.depends_on:
        package = package_of(parent) or ""
        if package in manifests and package != name and resource_type_of(parent) == "model":  # a peer's stub
            product = product_of(manifests[package], parent)
            if product is None or product.unique_id not in graph.owner:
                raise UnknownProduct(name, node, parent)
            found.add(product.unique_id)
        elif parent in graph.owner:
            found.add(parent)
    return found


def _place_test(graph: ModelGraph, manifests: dict[str, Manifest], name: str, test: Node) -> None:
    """Place a data test of domain ``name`` that reads another domain of the cycle (one that does not runs with
    what it tests, in their stage): each public product it tests comes after what it reads of the other domains,
    and the test runs in the first stage of its domain after everything it reads (dbt leaves it out of an earlier
    one: a parent is excluded there)."""
    reads = _parents(graph, manifests, name, test)
    across = {r for r in reads if r in graph.owner and graph.owner[r] != name}
    if not across:
        return
    for product in sorted(reads):
        if graph.owner.get(product) == name and manifests[name].nodes[product].is_public:
            _put_after(graph, product, across, test)
    graph.owner[test.unique_id] = name
    graph.where[test.unique_id] = test.properties_file or test.file
    graph.parents[test.unique_id] = {r for r in reads if r in graph.owner}


def _put_after(graph: ModelGraph, product: str, across: set[str], test: Node) -> None:
    """Put ``product`` after the nodes of other domains its data ``test`` reads, noting the test that ties them."""
    for other in sorted(across):
        graph.parents[product].add(other)
        graph.via.setdefault((product, other), (test.name, test.properties_file or test.file))


def model_cycle_message(mesh: Mesh, path: list[str], graph: ModelGraph) -> str:
    """One located message: the models that read each other across projects, with their files (and the test that
    ties a product to what it does not read itself)."""
    owner = graph.owner

    def shown(uid: str) -> str:
        file = display_path(mesh.domains[owner[uid]].path / graph.where[uid])
        return f"{owner[uid]}.{local_name(uid)} ({file})"

    text = shown(path[0])
    for here, there in zip(path, path[1:], strict=False):
        test = graph.via.get((here, there))
        at = display_path(mesh.domains[owner[here]].path / test[1]) if test else ""
        arrow = f" -> (its data test {test[0]} in {at} reads) " if test else " -> "
        text += arrow + shown(there)
    domains = sorted({owner[uid] for uid in path})
    return (
        f"cycle between models across projects: {text} (each needs the next built first). "
        f"{' and '.join(domains)} may read each other's models, but no model may depend on itself through "
        "another project: no stage could build it first. Remove one of these refs (or tests)."
    )


def unknown_product_message(mesh: Mesh, unknown: UnknownProduct) -> str:
    """One located message: the node whose read of a peer's product the stages cannot place."""
    node, peer = unknown.node, package_of(unknown.parent) or unknown.parent
    own = (node.properties_file or node.file) if node.resource_type == "test" else node.file
    file = display_path(mesh.domains[unknown.domain].path / own)
    product = local_name(unknown.parent)
    where = display_path(mesh.domains[peer].manifest_path)
    return (
        f"{unknown.domain}.{local_name(node.unique_id)} ({file}) reads {peer}.{product}, which {peer}'s "
        f"manifest ({where}) has no model, seed or snapshot of: the stages of the cycle of projects cannot be "
        f"planned. Fix or remove the ref, or parse {peer} again (`mesh stitch {peer}`) if its files define it."
    )


def slices(plan: list[Stage], owner: dict[str, str], manifests: dict[str, Manifest]) -> dict[int, StageSlice]:
    """What each stage's `dbt build` leaves out: its domain's nodes of later stages, and the stubs of its peers'
    products a later stage builds (their release does not exist yet, or is the last build's). Its domain's
    nodes of earlier stages run only when its state-aware plan selects them (they changed)."""
    at = {uid: stage.number for stage in plan for uid in stage.nodes}
    out: dict[int, StageSlice] = {}
    for stage in plan:
        manifest = manifests[stage.domain]
        exclude: list[str] = []
        for uid, node in sorted(manifest.nodes.items()):
            if node.resource_type not in BUILT and uid not in owner:
                continue
            if owner.get(uid) == stage.domain:
                if at.get(uid, 0) > stage.number:  # not built yet: its own stage comes later
                    exclude.append(_selector(node))
                # what an earlier stage built is not excluded: dbt would leave out every test that reads it
                continue
            if node.package in manifests and node.package != stage.domain:  # a stub of a peer's product
                product = product_of(manifests[node.package], uid)
                if product is not None and at.get(product.unique_id, 0) > stage.number:
                    exclude.append(_selector(node))
        # the stage's stitch stubs every public product of the peers it reads, also those its planning parse did
        # not see (it parsed against placeholders for what it refs): a stub of one a later stage builds has no
        # release to read yet, so it is left out too
        read = {n.package for n in manifest.nodes.values() if n.package in manifests and n.package != stage.domain}
        for uid, number in sorted(at.items()):
            peer = owner[uid]
            built = manifests[peer].nodes.get(uid)
            if peer in read and number > stage.number and built is not None and built.is_public:
                exclude.append(f"fqn:{ProductKey(peer, built.name, built.version)}")  # the fqn of the peer's stub
        later = sorted(uid for uid, n in at.items() if owner[uid] == stage.domain and n > stage.number)
        out[stage.number] = StageSlice(stage.number, len(plan), tuple(stage.nodes), tuple(dict.fromkeys(exclude)),
                                       tuple(later), stage.final)  # fmt: skip
    return out


def _selector(node: Node) -> str:
    fqn = node.get("fqn")
    return "fqn:" + ".".join(str(p) for p in fqn) if isinstance(fqn, list) and fqn else node.name


def run_stages(
    mesh: Mesh, staged: StagedGroup, command: str, target: str | None, verbose: bool, publish: bool, full: bool,
    submit: Submit, notify: Callable[[str, str, DomainRun | None], None],
) -> dict[str, DomainRun]:  # fmt: skip
    """Run the stages in order, each in a worker; after a failed stage nothing more of the cycle runs. One
    DomainRun per domain, merged over its stages."""
    runs: dict[str, list[DomainRun]] = {name: [] for name in staged.domains}
    forget_stages(mesh, staged.domains)  # the last staged build's: collected into the health history after it
    stopped: str | None = None
    deferred: set[str] = set()  # nodes an earlier stage of this build left to a later one (owed a run by it)
    for stage in staged.stages:
        label = f"{stage.domain} (stage {stage.number} of {len(staged.stages)})"
        if stopped is not None:
            runs[stage.domain].append(DomainRun(stage.domain, SKIPPED, problems=[
                f"stage {stage.number} of its cycle was not built: {stopped} did not succeed"]))  # fmt: skip
            continue
        notify("started", label, None)
        stage_slice = staged.slices[stage.number]
        # `--full` builds a domain's first stage in full; its later stages compare with the state that one left
        # (a full plan there would forget what the earlier stages' nodes read), and owe nothing it left out
        again = full and not runs[stage.domain]
        run = submit(run_domain, mesh, stage.domain, command, target, verbose, publish, again, stage_slice).result()
        run.notes.insert(0, stage_lines([stage])[0])
        # a product the stage left out is not read by it: no note that it is read from a working copy
        unread = tuple(f"{stage.domain} reads {selector[4:]} from " for selector in stage_slice.exclude)
        run.stitched_from = [note for note in run.stitched_from if not note.startswith(unread)]
        deferred_here(run, stage.domain, [uid for uid in stage.nodes if uid in deferred])
        deferred |= set(stage_slice.later)
        notify("finished", label, run)
        runs[stage.domain].append(run)
        try:
            _keep_results(mesh.domains[stage.domain], stage, run)
        except (MeshError, OSError) as exc:
            run.warnings.append(f"the results of stage {stage.number} were not kept for health ({exc})")
        if run.status != SUCCESS:
            stopped = label
    return {name: merge(name, parts) for name, parts in runs.items()}


def _keep_results(domain: Domain, stage: Stage, run: DomainRun) -> None:
    """Keep an earlier stage's run results (its domain's last stage replaces run_results.json), and after the last
    stage, which run_results.json they go with: health collects them with it (health/inputs.stage_results)."""
    if not stage.final and run.invocation_id is not None:
        kept = domain.stages_dir / f"stage-{stage.number}.run_results.json"
        write_atomic(kept, domain.run_results_path.read_bytes(), below=domain.target_dir)
    if stage.final:
        results = RunResults.read(domain.run_results_path, missing_ok=True)
        invocation = results.invocation_id if results is not None else None
        write_atomic(domain.stages_dir / "stages.json", json.dumps({"invocation_id": invocation}) + "\n",
                     below=domain.target_dir)  # fmt: skip


_OWED = "its last run did not succeed"  # how state/plan.py explains a node owed a run
_DEFERRED = "an earlier stage of this build left it to this one (it reads what the stages between built)"


def deferred_here(run: DomainRun, domain: str, nodes: list[str]) -> None:
    """--explain of a later stage: its nodes an earlier stage of this build left to it are deferred, not owed."""
    mine = {f"{domain}.{local_name(uid)}" for uid in nodes}
    run.decisions = [(node, _DEFERRED if node in mine and why == _OWED else why) for node, why in run.decisions]


def stage_lines(staged: list[Stage]) -> list[str]:
    """The stages as `mesh doctor` and `mesh build --explain` show them: ``stage 1: project_a builds stg_orders``."""
    lines = []
    for stage in staged:
        ids = [NodeId.read(uid) for uid in stage.nodes]
        built = [local_name(uid) for uid in stage.nodes if resource_type_of(uid) != "test"]
        tests = [node.name for node in ids if node is not None and node.resource_type == "test"]
        what = (f"builds {', '.join(built)}" if built else "") + ("; " if built and tests else "") + (
            f"tests {', '.join(tests)}" if tests else "")  # fmt: skip
        tail = " (its last stage)" if stage.final else " (and publishes them for the stages after it)"
        lines.append(f"stage {stage.number}: {stage.domain} {what}{tail}")
    return lines


def merge(name: str, parts: list[DomainRun]) -> DomainRun:
    """One domain's runs over its stages as one: counts added, what was read and published kept."""
    if len(parts) == 1:
        return parts[0]
    status = FAILED if any(p.status == FAILED for p in parts) else SKIPPED if any(p.status == SKIPPED for p in parts) \
        else SUCCESS  # fmt: skip
    out = DomainRun(name, status, started_at=next((p.started_at for p in parts if p.started_at), None))
    for part in parts:
        for counter in ("seconds", "models", "models_failed", "tests_passed", "tests_failed", "tests_warned",
                        "upstream_views", "published", "published_rows"):  # fmt: skip
            setattr(out, counter, getattr(out, counter) + getattr(part, counter))
        out.notes += part.notes
        out.confirmed += part.confirmed
        out.problems += part.problems
        out.warnings += [w for w in part.warnings if w not in out.warnings]
        out.decisions += part.decisions
        out.unseen += [u for u in part.unseen if u not in out.unseen]
        out.stitched_from += [s for s in part.stitched_from if s not in out.stitched_from]
        out.consumed.update(part.consumed)
        out.released += part.released
        out.full_reason = out.full_reason or part.full_reason
        for kept in ("stitched", "findings", "invocation_id", "models_total", "ended_at"):
            value = getattr(part, kept)
            if value:
                setattr(out, kept, value)
    return out


def forget_stages(mesh: Mesh, names: list[str]) -> None:
    """Remove the stage results an earlier staged build kept (health would collect them with this build's)."""
    for name in names:
        folder = mesh.domains[name].stages_dir
        for old in [*folder.glob("stage-*.run_results.json"), folder / "stages.json"] if folder.is_dir() \
                and not folder.is_symlink() else ():  # fmt: skip
            old.unlink(missing_ok=True)


def products_first(mesh: Mesh, name: str) -> list[tuple[Stage, StageSlice]] | None:
    """A domain's build in two stages, so that its readers need not wait for the rest of it: stage 1 builds its
    data products, every node of the domain they read and every test on those, and publishes; stage 2 builds the
    rest. None when the split cannot be shown safe from a current manifest or would save little.

    A test that reads a node of both halves moves what it reads into stage 1 (dbt would otherwise leave it out
    of both stages, or run it before its other table is built): the publish gate needs every test of a product.
    """
    domain = mesh.domains[name]
    if not _current(mesh, domain):  # the graph of the files as they are: a stale one could split wrongly
        return None
    try:
        manifest = Manifest.load(domain.manifest_path, name)
    except MeshError:
        return None
    own = {node.unique_id: node for node in own_built(manifest)}
    head: set[str] = set()
    todo = [p.unique_id for p in manifest.products(name) if p.unique_id in own]
    tests = [n for n in manifest.nodes.values() if n.resource_type == "test" and n.package == name]
    while todo:
        while todo:
            uid = todo.pop()
            if uid in head or uid not in own:
                continue
            head.add(uid)
            todo.extend(own[uid].depends_on)
        for test in tests:
            parents = [p for p in test.depends_on if p in own]
            if any(p in head for p in parents):
                todo.extend(p for p in parents if p not in head)
    tail = sorted(set(own) - head)
    if not head or 2 * len(head) > len(own):  # the tail's own dbt run costs more than its readers would gain
        return None
    if _tail_seconds(domain, tail) < min_tail_seconds():  # a second dbt invocation costs more than the tail
        return None
    first = Stage(1, name, tuple(sorted(head)), False)
    second = Stage(2, name, tuple(tail), True)
    return [
        (first, StageSlice(1, 2, first.nodes, tuple(_selector(own[uid]) for uid in tail), tuple(tail), False)),
        (second, StageSlice(2, 2, second.nodes, (), (), True)),
    ]


PIPELINE_MIN_TAIL = "MESH_PIPELINE_MIN_TAIL_SECONDS"  # the tail's last run time worth a second dbt invocation
_MIN_TAIL_DEFAULT = 3.0  # about two dbt invocations' fixed cost on 2 cores (start, partial parse, artifacts)


def min_tail_seconds() -> float:
    """How long a domain's tail (what its products do not need) must have taken in its last build for a
    pipelined build to pay for its second dbt invocation (``MESH_PIPELINE_MIN_TAIL_SECONDS``, default 3)."""
    try:
        value = float(os.environ.get(PIPELINE_MIN_TAIL) or _MIN_TAIL_DEFAULT)
    except ValueError:
        return _MIN_TAIL_DEFAULT
    return value if value >= 0 else _MIN_TAIL_DEFAULT


def _tail_seconds(domain: Domain, tail: list[str]) -> float:
    """The summed execution time of the tail's nodes in the domain's last dbt run (a node it did not run counts
    nothing): the time readers would wait for beyond the products. Unreadable results: 0 (no split)."""
    wanted = set(tail)
    try:
        results = RunResults.read(domain.run_results_path, missing_ok=True)
    except MeshError:
        return 0.0
    return sum(r.execution_time for r in results.results if r.unique_id in wanted) if results else 0.0


def keep_stage_results(domain: Domain, stage: Stage, run: DomainRun) -> None:
    """``_keep_results`` for a stage run outside ``run_stages``; a problem is the run's warning."""
    try:
        _keep_results(domain, stage, run)
    except (MeshError, OSError) as exc:
        run.warnings.append(f"the results of stage {stage.number} were not kept for health ({exc})")
