"""Projects that read each other's models (a cycle between domains, none between models) build in stages.

The corpus mesh ``bidirectional`` (project_a <-> project_b, written as dbt's docs and Cosmos' dbt-loom
examples write them) is built once by the corpus fixture; tests that change it work on a copy.
"""

from __future__ import annotations

import csv
import re
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest

from mesh_tools.core.graph import ModelCycle, Stage, components, cycles, stages, topological_order
from mesh_tools.core.mesh import load_mesh
from mesh_tools.model.manifest import Manifest
from mesh_tools.workflows.domain_run import SUCCESS, DomainRun, StageSlice
from mesh_tools.workflows.stages import (
    StagedGroup,
    UnknownProduct,
    model_cycle_message,
    model_graph,
    run_stages,
    slices,
    stage_lines,
)
from tests.foreign.corpus import CORPUS, BuiltForeign, run_foreign
from tests.helpers import copy_tree

FIXTURE = CORPUS / "bidirectional"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def expected_segments(root: Path) -> list[tuple[str, int, int]]:
    """segment_revenue computed in Python from the two projects' raw seeds: (segment, customers, revenue)."""
    segment = {r["customer_id"]: r["segment"] for r in _csv(root / "project_b/seeds/raw_customers.csv")}
    customers: dict[str, set[str]] = {}
    revenue: dict[str, int] = {}
    for order in _csv(root / "project_a/seeds/raw_orders.csv"):
        if order["customer_id"] not in segment:
            continue  # an inner join: orders of unknown customers count nowhere
        name = segment[order["customer_id"]]
        customers.setdefault(name, set()).add(order["customer_id"])
        revenue[name] = revenue.get(name, 0) + int(order["amount"])
    return sorted((name, len(customers[name]), revenue[name]) for name in revenue)


def one_project(root: Path, relation: str) -> list[tuple]:
    """The same models built as one project would build them: the seeds and every model's SQL run in one DuckDB
    database, each ref (one or two arguments) naming a table of that database."""
    import duckdb

    con = duckdb.connect()
    ref = re.compile(r"\{\{\s*ref\(\s*(?:'[\w]+'\s*,\s*)?'(\w+)'\s*\)\s*\}\}")
    for seed in sorted(root.glob("project_*/seeds/*.csv")):
        con.execute(f"create table {seed.stem} as select * from read_csv_auto('{seed}')")
    for model in ("stg_orders", "dim_customers", "segment_revenue"):  # one project's order: its own DAG
        sql = next(root.glob(f"project_*/models/{model}.sql")).read_text()
        con.execute(f"create table {model} as {ref.sub(lambda m: m[1], sql)}")
    return sorted(con.execute(f"select * from {relation}").fetchall())


def table(database: Path, relation: str) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(database), read_only=True)
    try:
        return sorted(con.execute(f"select * from {relation}").fetchall())
    finally:
        con.close()


def releases(root: Path) -> dict[str, list[str]]:
    """Every product's release folders in the exchange."""
    found = {}
    for folder in sorted((root / "exchange/products").glob("*/*/unversioned/releases")):
        found[f"{folder.parts[-4]}.{folder.parts[-3]}"] = sorted(p.name for p in folder.iterdir())
    return found


def test_stages_split_the_model_graph_and_refuse_a_model_cycle() -> None:
    """Pure graph logic: levels count domain boundaries; a same-domain run of levels is one stage."""
    owner = {"a.seed": "a", "a.stg": "a", "b.dim": "b", "b.raw": "b", "a.rev": "a", "a.other": "a"}
    parents = {"a.stg": {"a.seed"}, "b.dim": {"b.raw", "a.stg"}, "a.rev": {"b.dim", "a.stg"}, "a.other": {"a.seed"}}
    found = [(s.number, s.domain, s.nodes, s.final) for s in stages(owner, parents, ["a", "b"])]
    assert found == [
        (1, "a", ("a.other", "a.seed", "a.stg"), False),
        (2, "b", ("b.dim", "b.raw"), True),
        (3, "a", ("a.rev",), True),
    ]
    with pytest.raises(ModelCycle) as refused:
        stages({"x": "a", "y": "b"}, {"x": {"y"}, "y": {"x"}}, ["a", "b"])
    assert refused.value.path in (["x", "y", "x"], ["y", "x", "y"])
    # a cycle of domains comes together in the order, upstreams of it first, readers of it after
    ups = {"a": {"b", "core"}, "b": {"a"}, "core": set(), "report": {"b"}}
    assert components(ups) == [["core"], ["a", "b"], ["report"]]
    assert topological_order(ups) == ["core", "a", "b", "report"]


def _node(kind: str, project: str, name: str, parents: tuple[str, ...] = (), public: bool = False) -> dict:
    folder = "tests" if kind == "test" else "models"
    return {
        "unique_id": f"{kind}.{project}.{name}", "resource_type": kind, "name": name, "package_name": project,
        "depends_on": {"nodes": list(parents)}, "access": "public" if public else "protected",
        "original_file_path": f"{folder}/{name}.sql", "patch_path": f"{project}://models/schema.yml",
        "fqn": [project, name],
    }  # fmt: skip


def _pair(a: dict) -> dict[str, Manifest]:
    """project_a's manifest of nodes ``a``, and project_b's: dim_customers reading project_a's stg_orders (a stub)."""
    b = {
        "model.project_b.dim_customers": _node(
            "model", "project_b", "dim_customers", ("model.project_a.stg_orders",), public=True
        ),
        "model.project_a.stg_orders": _node("model", "project_a", "stg_orders", public=True),  # its stub
    }  # fmt: skip
    return {
        n: Manifest.of({"metadata": {"project_name": n}, "nodes": d}, n)
        for n, d in (("project_a", a), ("project_b", b))
    }


def test_a_products_test_that_reads_the_other_project_counts_as_a_read() -> None:
    """A relationships test of project_a's product stg_orders against project_b's dim_customers, which reads
    stg_orders: the publish gate releases stg_orders only with that test run in its build, which cannot run
    before dim_customers exists. A cycle, named with the test, instead of a stage refused at its publish."""
    a = {
        "model.project_a.stg_orders": _node("model", "project_a", "stg_orders", public=True),
        "test.project_a.rel": _node(
            "test", "project_a", "rel", ("model.project_a.stg_orders", "model.project_b.dim_customers")
        ),  # fmt: skip
        "model.project_b.dim_customers": _node("model", "project_b", "dim_customers", public=True),  # its stub
    }
    manifests = _pair(a)
    graph = model_graph(["project_a", "project_b"], manifests)
    assert graph.parents["model.project_a.stg_orders"] == {"model.project_b.dim_customers"}
    with pytest.raises(ModelCycle) as refused:
        stages(graph.owner, graph.parents, ["project_a", "project_b"])
    mesh = SimpleNamespace(domains={n: SimpleNamespace(path=Path(n)) for n in manifests})
    message = model_cycle_message(mesh, refused.value.path, graph)  # type: ignore[arg-type]
    assert "project_a.stg_orders (project_a/models/stg_orders.sql) -> (its data test rel in " in message
    assert "project_a/models/schema.yml reads) project_b.dim_customers (project_b/models/dim_customers.sql)" in message
    # without the test, the same models build in stages
    del a["test.project_a.rel"]
    manifests = _pair(a)
    graph = model_graph(["project_a", "project_b"], manifests)
    assert [s.domain for s in stages(graph.owner, graph.parents, ["project_a", "project_b"])] == [
        "project_a",
        "project_b",
    ]


def test_a_test_that_reads_a_later_stage_runs_in_its_domains_next_stage() -> None:
    """A relationships test of project_a's (protected) orders_copy against project_b's dim_customers: dbt leaves it
    out of stage 1 (dim_customers is not built yet), so stage 1 owes it and stage 3 runs it; what stage 1 built is
    not excluded there (dbt would leave out every test that reads it)."""
    a = {
        "model.project_a.stg_orders": _node("model", "project_a", "stg_orders", public=True),
        "model.project_a.orders_copy": _node("model", "project_a", "orders_copy", ("model.project_a.stg_orders",)),
        "test.project_a.rel.abc": _node(
            "test", "project_a", "rel", ("model.project_a.orders_copy", "model.project_b.dim_customers")
        ),  # fmt: skip
        "model.project_a.segment_revenue": _node(
            "model", "project_a", "segment_revenue", ("model.project_b.dim_customers",)
        ),  # fmt: skip
        "model.project_b.dim_customers": _node("model", "project_b", "dim_customers", public=True),  # its stub
    }
    manifests = _pair(a)
    graph = model_graph(["project_a", "project_b"], manifests)
    plan = stages(graph.owner, graph.parents, ["project_a", "project_b"])
    assert [(s.domain, s.nodes) for s in plan] == [
        ("project_a", ("model.project_a.orders_copy", "model.project_a.stg_orders")),
        ("project_b", ("model.project_b.dim_customers",)),
        ("project_a", ("model.project_a.segment_revenue", "test.project_a.rel.abc")),
    ]
    cut = slices(plan, graph.owner, manifests)
    assert cut[1].later == ("model.project_a.segment_revenue", "test.project_a.rel.abc")
    assert set(cut[1].exclude) == {"fqn:project_a.segment_revenue", "fqn:project_a.rel", "fqn:project_b.dim_customers"}
    assert cut[3].exclude == () and cut[3].later == ()
    assert stage_lines(plan)[2] == "stage 3: project_a builds segment_revenue; tests rel (its last stage)"


def test_a_cycle_between_projects_loads(plain_mesh: Path) -> None:
    """shop now declares reporting, which reads shop: no model of shop reads reporting, so the mesh loads (a build
    plans the stages; a cycle between models is refused there), the cycle's domains side by side in the order."""
    (plain_mesh / "shop" / "dependencies.yml").write_text("projects:\n  - name: reporting\n")
    mesh = load_mesh(plain_mesh)
    assert mesh.domains["shop"].upstream_names == ("reporting",)
    assert "shop" in mesh.domains["reporting"].upstream_names
    order = mesh.order
    assert abs(order.index("shop") - order.index("reporting")) == 1
    assert cycles(mesh.upstream_graph()) == [["reporting", "shop"]]


def test_bidirectional_projects_build_in_stages_as_one_project(corpus: dict[str, BuiltForeign]) -> None:
    """The staged build equals the same models built as one project; a second build reuses everything; a change in
    stage 1 rebuilds what reads it in the later stages. The builds run in the session's built copy (a state-aware
    build needs the copy its state was recorded in): every figure other tests read is taken from its seeds."""
    built = corpus["bidirectional"]
    root = built.root
    assert built.result.returncode == 0, built.output
    out = built.result.stdout
    started = re.findall(r"\] (\S+ \(stage \d of \d\)): started", out)
    assert started == ["project_a (stage 1 of 3)", "project_b (stage 2 of 3)", "project_a (stage 3 of 3)"], out
    assert expected_segments(FIXTURE) == [("online", 1, 4), ("retail", 2, 37), ("wholesale", 1, 13)]
    # the figures from the raw seeds, the same models run as one project, and the mesh's staged build agree
    figures = expected_segments(root)
    assert table(root / "project_a/project_a.duckdb", "main.segment_revenue") == figures
    assert one_project(root, "segment_revenue") == figures
    assert table(root / "project_b/project_b.duckdb", "main.dim_customers") == one_project(root, "dim_customers")
    # each public product published by the stage that built it; the protected one not at all
    first = releases(root)
    assert sorted(first) == ["project_a.stg_orders", "project_b.dim_customers"]
    # the earlier stage's results reach the health history: stg_orders was built, by stage 1
    assert "never built successfully" not in (root / "health/report.md").read_text()

    # a new order in project_a's raw data: stage 1 rebuilds it, project_b reads the new release, stage 3 follows
    with (root / "project_a/seeds/raw_orders.csv").open("a") as handle:
        handle.write(f"{100 + len(_csv(root / 'project_a/seeds/raw_orders.csv'))},4,6\n")
    changed = run_foreign(built.mesh, root, "build", "--explain")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "ran 3 of 3 models, reused 0" in changed.stdout, changed.stdout
    explained = changed.stdout
    assert "    project_a.stg_orders (upstream view): upstream project_a.stg_orders has a new release\n" in explained
    assert "    project_b.dim_customers: upstream project_a.stg_orders ran\n" in explained
    assert "    project_a.segment_revenue: an earlier stage of this build left it to this one" in explained
    changed_releases = releases(root)
    assert {k: len(v) - len(first[k]) for k, v in changed_releases.items()} == {"project_a.stg_orders": 1,
                                                                                "project_b.dim_customers": 1}  # fmt: skip
    assert table(root / "project_a/project_a.duckdb", "main.segment_revenue") == expected_segments(root)
    assert table(root / "project_b/project_b.duckdb", "main.dim_customers") == one_project(root, "dim_customers")

    # nothing changed since: the next build runs no model and publishes nothing
    again = run_foreign(built.mesh, root, "build")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ran 0 of 3 models, reused 3" in again.stdout, again.stdout
    assert releases(root) == changed_releases


def test_full_builds_each_domains_first_stage_in_full_only(tmp_path: Path) -> None:
    """`--full`: a domain's later stages compare with the state its first stage left (a full plan there would forget
    what the earlier stages' nodes read, and the next build would run them again). The stages' worker is replaced
    by a recorder: what is checked is the order and the flags the conductor gives each stage."""
    plan = [Stage(1, "a", ("a.x",), False), Stage(2, "b", ("b.y",), True), Stage(3, "a", ("a.z",), True)]
    staged = StagedGroup(["a", "b"], plan, {s.number: StageSlice(s.number, 3, s.nodes, (), (), s.final) for s in plan})
    calls: list[tuple[str, bool, int]] = []

    def submit(fn: object, mesh: object, name: str, command: str, target: object, verbose: bool, publish: bool,
               full: bool, stage: StageSlice) -> Future[DomainRun]:  # fmt: skip
        calls.append((name, full, stage.number))
        done: Future[DomainRun] = Future()
        done.set_result(DomainRun(name, SUCCESS))
        return done

    mesh = SimpleNamespace(
        domains={
            n: SimpleNamespace(
                target_dir=tmp_path / n,
                stages_dir=tmp_path / n / "mesh-stages",
                run_results_path=tmp_path / n / "run_results.json",
            )
            for n in "ab"
        }
    )
    runs = run_stages(mesh, staged, "build", None, False, True, True, submit, lambda *_: None)  # type: ignore[arg-type]
    assert calls == [("a", True, 1), ("b", True, 2), ("a", False, 3)]
    assert runs["a"].notes == ["stage 1: a builds x (and publishes them for the stages after it)",
                               "stage 3: a builds z (its last stage)"]  # fmt: skip


def test_doctor_shows_the_stages(corpus: dict[str, BuiltForeign]) -> None:
    built = corpus["bidirectional"]
    doctor = run_foreign(built.mesh, built.root, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert (
        "stages:\n"
        "  project_a, project_b form a cycle of projects: `mesh build` builds them in 3 stages\n"
        "    stage 1: project_a builds stg_orders, raw_orders (and publishes them for the stages after it)\n"
        "    stage 2: project_b builds dim_customers, raw_customers (its last stage)\n"
        "    stage 3: project_a builds segment_revenue (its last stage)\n"
    ) in doctor.stdout


def test_a_cycle_between_models_is_refused_before_anything_runs(
    corpus: dict[str, BuiltForeign], tmp_path: Path
) -> None:
    built = corpus["bidirectional"]
    root = copy_tree(built.root, tmp_path / "bidirectional")
    (root / "project_a/models/a_loop.sql").write_text(
        "{{ config(access='public') }}\nselect * from {{ ref('project_b', 'b_loop') }}\n"
    )
    (root / "project_b/models/b_loop.sql").write_text(
        "{{ config(access='public') }}\nselect * from {{ ref('project_a', 'a_loop') }}\n"
    )
    storage = {p: p.stat().st_mtime_ns for p in root.glob("project_*/*.duckdb")}
    before = releases(root)
    result = run_foreign(built.mesh, root, "build")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cycle between models across projects: "), result.stderr
    assert (
        "project_a.a_loop (project_a/models/a_loop.sql) -> project_b.b_loop (project_b/models/b_loop.sql) -> "
        "project_a.a_loop (project_a/models/a_loop.sql) (each needs the next built first)" in lines[0]
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert "started" not in result.stdout  # no stage ran
    assert {p: p.stat().st_mtime_ns for p in storage} == storage and releases(root) == before
    doctor = run_foreign(built.mesh, root, "doctor")  # doctor reads the parses the refused build made
    assert doctor.returncode == 1 and "[blocking] project_a, project_b: cycle between models" in doctor.stdout


def test_a_staged_build_takes_every_lock_of_its_cycle_before_its_first_stage(
    corpus: dict[str, BuiltForeign],
) -> None:
    """No other writer between stages: the build holds project_b's lock from before stage 1 (which builds only
    project_a) to its end, so while another run writes project_b, the staged build does not start at all."""
    from mesh_tools.core import lock

    built = corpus["bidirectional"]
    before = releases(built.root)
    with lock.hold(built.root, [lock.domain("project_b")], "mesh build project_b"):
        busy = run_foreign(built.mesh, built.root, "build")
    assert busy.returncode == 2, busy.stdout + busy.stderr
    assert (
        "domain project_b is busy: `mesh build project_b`" in busy.stderr and "`mesh build` did nothing" in busy.stderr
    )
    assert "started" not in busy.stdout and releases(built.root) == before


def test_an_unversioned_ref_to_a_versioned_product_is_its_latest_version(tmp_path: Path) -> None:
    """A first build parses project_b against a placeholder for its unversioned ref('project_a', 'stg_orders')
    (``model.project_a.stg_orders``), while project_a has stg_orders v1 and v2, v2 reading dim_customers. The
    ref is the latest version, as dbt resolves it: latest v2 is a cycle, refused before anything runs; latest v1
    builds in stages, stage 2 leaving out the stub of v2 (its planning parse never saw it; stage 3 builds it) and
    stage 1 not saying it reads dim_customers, which it leaves out. A read of what the peer lacks is refused,
    never dropped (a dropped edge could hide a cycle)."""

    def versions(latest: int) -> dict[str, Manifest]:
        a = {"seed.project_a.raw_orders": _node("seed", "project_a", "raw_orders")}
        for v, parents in ((1, ()), (2, ("model.project_b.dim_customers",))):
            uid = f"model.project_a.stg_orders.v{v}"
            a[uid] = {
                **_node("model", "project_a", "stg_orders", ("seed.project_a.raw_orders", *parents), True),
                "unique_id": uid,
                "version": v,
                "latest_version": latest,
                "fqn": ["project_a", "stg_orders", f"v{v}"],
                "original_file_path": f"models/stg_orders_v{v}.sql",
            }
        a["model.project_b.dim_customers"] = _node("model", "project_b", "dim_customers", public=True)  # its stub
        return _pair(a)  # project_b parsed against the placeholder for the unversioned ref

    group = ["project_a", "project_b"]
    graph = model_graph(group, versions(2))
    assert graph.parents["model.project_b.dim_customers"] == {"model.project_a.stg_orders.v2"}
    with pytest.raises(ModelCycle) as refused:
        stages(graph.owner, graph.parents, group)
    assert set(refused.value.path) == {"model.project_a.stg_orders.v2", "model.project_b.dim_customers"}

    manifests = versions(1)
    graph = model_graph(group, manifests)
    plan = stages(graph.owner, graph.parents, group)
    assert [(s.domain, s.nodes) for s in plan] == [
        ("project_a", ("model.project_a.stg_orders.v1", "seed.project_a.raw_orders")),
        ("project_b", ("model.project_b.dim_customers",)),
        ("project_a", ("model.project_a.stg_orders.v2",)),
    ]
    cut = slices(plan, graph.owner, manifests)
    assert "fqn:project_b.dim_customers" in cut[1].exclude
    assert cut[2].exclude == ("fqn:project_a.stg_orders.v2",)

    # the stages' notes of products read from a working copy (kept in the merged run): none of one a stage leaves out
    def submit(fn: object, mesh: object, name: str, *args: object) -> Future[DomainRun]:
        peer = {"project_a": "project_b.dim_customers", "project_b": "project_a.stg_orders.v1"}[name]
        number = args[-1].number  # type: ignore[attr-defined]
        done: Future[DomainRun] = Future()
        done.set_result(DomainRun(name, SUCCESS, stitched_from=[f"{name} reads {peer} from a working copy ({number})"]))
        return done

    mesh = SimpleNamespace(domains={n: SimpleNamespace(target_dir=tmp_path / n, stages_dir=tmp_path / n / "s",
                                                       run_results_path=tmp_path / n / "rr.json") for n in group})  # fmt: skip
    runs = run_stages(mesh, StagedGroup(group, plan, cut), "build", None, False, True, False, submit, lambda *_: None)  # type: ignore[arg-type]
    assert runs["project_a"].stitched_from == ["project_a reads project_b.dim_customers from a working copy (3)"]
    assert runs["project_b"].stitched_from == ["project_b reads project_a.stg_orders.v1 from a working copy (2)"]

    # a read of a product the peer's manifest lacks is a located error, not a dropped edge
    manifests["project_b"].nodes["model.project_b.dim_customers"].raw["depends_on"]["nodes"] = ["model.project_a.gone"]
    with pytest.raises(UnknownProduct) as unknown:
        model_graph(group, manifests)
    assert unknown.value.parent == "model.project_a.gone" and unknown.value.domain == "project_b"
