"""Right or full (issue 28): what a state-aware build cannot fingerprint makes the affected models run.

The first tests decide plans on hand-built manifests and state files, with no dbt run (milliseconds):
each guards one line of the decision. The tests after them build real copies of the state_mesh
fixture and compare every product's rows with figures computed from the raw data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.helpers import copy_fixture, mesh_env, run_command, run_dbt, run_mesh


def _shop(tmp_path: Path) -> Any:
    from mesh_tools.core.mesh import load_mesh

    return load_mesh(copy_fixture("state_mesh", tmp_path)).domains["shop"]


def _manifest(
    nodes: dict[str, Any], sources: dict[str, Any] | None = None, macros: dict[str, Any] | None = None
) -> Any:
    from mesh_tools.model.manifest import Manifest

    data = {"metadata": {"project_name": "shop", "adapter_type": "duckdb"}, "nodes": nodes,
            "sources": sources or {}, "macros": macros or {}}  # fmt: skip
    return Manifest.of(data, "shop")


def _model(name: str, code: str = "select 1", **extra: Any) -> dict[str, Any]:
    return {"resource_type": "model", "package_name": "shop", "name": name, "fqn": ["shop", name], "raw_code": code,
            "config": {"materialized": "table"}, "database": "shop", "schema": "main", "alias": name, **extra}  # fmt: skip


def _source(name: str, **extra: Any) -> dict[str, Any]:
    return {"resource_type": "source", "package_name": "shop", "name": name, "source_name": "raw",
            "database": "shop", "schema": "raw", "identifier": name, "config": {}, "meta": {}, **extra}  # fmt: skip


def _state(domain: Any, manifest: Any, **recorded: Any) -> Any:
    from mesh_tools.state.file import STATE_VERSION, BuildState, StateFile
    from mesh_tools.state.inputs import project_digest

    file = StateFile(version=STATE_VERSION, code="c", **recorded)
    return BuildState(folder=domain.path, manifest=manifest, code="c", landing=dict(file.landing), owed=set(file.owed),
                      storage=None,
                      loaded_at=dict(file.loaded_at), built={}, project=project_digest(domain), file=file,
                      seeds=dict(file.seeds))  # fmt: skip


def _plan(domain: Any, state: Any, **observed: Any) -> Any:
    from mesh_tools.state.inputs import project_digest
    from mesh_tools.state.plan import Observed, plan_build

    return plan_build(domain, state, "c", None, set(), set(), project_digest(domain), {}, Observed(**observed))


def test_a_model_owed_a_good_run_runs_when_nothing_else_changed(tmp_path: Path) -> None:
    shop = _shop(tmp_path)
    manifest = _manifest({"model.shop.a": _model("a")})
    assert _plan(shop, _state(shop, manifest)).empty
    plan = _plan(shop, _state(shop, manifest, owed=["model.shop.a"]))
    assert plan.reasons == {"model.shop.a": "its last run did not succeed"} and plan.selectors == ["fqn:shop.a+"]


def test_what_cannot_be_fingerprinted_builds_in_full(tmp_path: Path) -> None:
    shop = _shop(tmp_path)
    manifest = _manifest({"model.shop.a": _model("a")})
    # the target resolves elsewhere (a profile, a target or a variable it reads changed)
    plan = _plan(shop, _state(shop, manifest, target="t1"), target="t2")
    assert plan.full and plan.why_full.startswith("its target resolves to other storage")
    # an environment variable whose name is computed, an on-run-start hook that writes
    plan = _plan(shop, _state(shop, manifest), env_computed="macros/x.sql:3")
    assert plan.full and "whose name is computed (macros/x.sql:3)" in plan.why_full
    plan = _plan(shop, _state(shop, manifest, hooks=["create table fx as select 2.2 as rate"]))
    assert plan.full and "on-run-start hooks write" in plan.why_full
    # dbt wrote a relation outside the mesh (a run file rewritten, written or gone since the mesh's record)
    record = {"shop/models/a.sql": [10, 1]}
    assert _plan(shop, _state(shop, manifest, footprint=record), footprint=dict(record)).empty
    for now in ({"shop/models/a.sql": [10, 2]}, {"shop/models/a.sql": [10, 1], "shop/models/b.sql": [1, 1]}, {}):
        plan = _plan(shop, _state(shop, manifest, footprint=record), footprint=now)
        assert plan.full and plan.why_full.startswith("dbt wrote its relations outside the mesh"), now


def test_a_seed_of_a_package_is_compared_by_its_content(tmp_path: Path) -> None:
    """dbt compares only the path of a seed over 1 MB: the mesh hashes every seed it loads, a package's too."""
    from mesh_tools.state.inputs import seed_digests

    shop = _shop(tmp_path)
    seed = {"resource_type": "seed", "package_name": "shared", "name": "zips", "fqn": ["shared", "zips"],
            "original_file_path": "seeds/zips.csv"}  # fmt: skip
    manifest = _manifest({"seed.shared.zips": seed})
    path = shop.packages_dir / "shared/seeds/zips.csv"
    path.parent.mkdir(parents=True)
    path.write_text("zip,region\n1000,R1\n")
    state = _state(shop, manifest, seeds=seed_digests(shop, manifest))
    assert _plan(shop, state).empty
    path.write_text("zip,region\n1000,R1\n2000,R9\n")
    plan = _plan(shop, state)
    assert plan.reasons == {"seed.shared.zips": "its file changed"} and plan.selectors == ["fqn:shared.zips+"]


def test_the_variables_code_reads_are_found_where_dbt_reads_code(tmp_path: Path) -> None:
    from mesh_tools.state.inputs import env_names

    shop = _shop(tmp_path)
    (shop.path / "models/.hidden").mkdir()
    (shop.path / "models/.hidden/x.yml").write_text(
        "models:\n  - name: orders\n    description: \"{{ env_var('HIDDEN') }}\"\n"
    )
    (shop.path / "models/computed.sql").write_text("select '{{ env_var('PREFIX_' ~ target.name) }}' as x\n")
    names, computed = env_names(shop)
    assert "HIDDEN" in names
    assert computed == "models/computed.sql:1"


def test_a_variable_dbt_project_yml_reads_builds_in_full(tmp_path: Path) -> None:
    """vars set from env_var() in dbt_project.yml reach any model through var(): no model reads the name."""
    from mesh_tools.state.inputs import project_env_names

    shop = _shop(tmp_path)
    project = shop.path / "dbt_project.yml"
    project.write_text(project.read_text() + "\nvars:\n  min_order: \"{{ env_var('MIN_ORDER', '0') }}\"\n")
    assert project_env_names(shop) == {"MIN_ORDER"}
    manifest = _manifest({"model.shop.a": _model("a", "select * from t where id > {{ var('min_order') }}")})
    state = _state(shop, manifest, env={"MIN_ORDER": "was"})
    assert _plan(shop, state, env={"MIN_ORDER": "was"}, project_env={"MIN_ORDER"}).empty
    plan = _plan(shop, state, env={"MIN_ORDER": "now"}, project_env={"MIN_ORDER"})
    assert plan.full and plan.why_full.startswith("environment variable MIN_ORDER, which its dbt_project.yml reads")


def test_environment_variables_select_what_reads_them(tmp_path: Path) -> None:
    shop = _shop(tmp_path)
    macro = {
        "resource_type": "macro",
        "package_name": "shop",
        "name": "region",
        "macro_sql": "{% macro region() %}'{{ env_var(\"REGION\") }}'{% endmacro %}",
        "depends_on": {"macros": []},
    }
    nodes = {
        "model.shop.direct": _model("direct", "select '{{ env_var(\"SCALE\") }}' as s"),
        "model.shop.via_macro": _model("via_macro", "select {{ region() }} as r",
                                       depends_on={"macros": ["macro.shop.region"], "nodes": []}),
        "model.shop.other": _model("other"),
    }  # fmt: skip
    manifest = _manifest(nodes, macros={"macro.shop.region": macro})
    state = _state(shop, manifest, env={"SCALE": "a", "REGION": "b"})
    assert _plan(shop, state, env={"SCALE": "a", "REGION": "b"}).empty
    plan = _plan(shop, state, env={"SCALE": "changed", "REGION": "b"}, current=manifest)
    assert set(plan.reasons) == {"model.shop.direct"} and not plan.modified
    assert plan.reasons["model.shop.direct"].startswith("environment variable SCALE changed")
    plan = _plan(shop, state, env={"SCALE": "a", "REGION": "changed"}, current=manifest)
    assert set(plan.reasons) == {"model.shop.via_macro"}
    # without a parse of the code as it is now, dbt's own comparison decides what else it renders
    assert _plan(shop, state, env={"SCALE": "a", "REGION": "changed"}).modified
    # a config rendered from a variable (a parse shows it): that model runs
    renamed = _manifest({**nodes, "model.shop.other": _model("other", alias="other_eu")},
                        macros={"macro.shop.region": macro})  # fmt: skip
    plan = _plan(shop, state, env={"SCALE": "a", "REGION": "changed"}, current=renamed)
    assert plan.reasons["model.shop.other"] == "its alias changed (an environment variable it reads changed)"
    assert not plan.modified


def test_sources_say_how_their_changes_are_seen(tmp_path: Path) -> None:
    from mesh_tools.model.freshness import FreshnessResults, SourceResult
    from mesh_tools.state.inputs import project_digest
    from mesh_tools.state.plan import Observed, plan_build

    shop = _shop(tmp_path)
    sources = {
        "source.shop.raw.events": _source("events", loaded_at_field="at"),
        "source.shop.raw.always": _source("always", meta={"change_detection": "always"}),
        "source.shop.raw.counted": _source("counted", meta={"change_detection": "row_count"}),
        "source.shop.raw.attached": _source("attached", database="crm"),
    }
    manifest = _manifest({}, sources)
    state = _state(shop, manifest, loaded_at={"source.shop.raw.events": "t1"}, counts={"source.shop.raw.counted": 10})
    fresh = FreshnessResults(tmp_path, {}, (SourceResult("source.shop.raw.events", "pass", "t1", None, None, None,
                                                         None, None),))  # fmt: skip
    plan = plan_build(shop, state, "c", fresh, set(), set(), project_digest(shop), {},
                      Observed(counts={"source.shop.raw.counted": 10}, watched={"crm"},
                               kinds={"source.shop.raw.attached": "table"}))  # fmt: skip
    assert set(plan.reasons) == {"source.shop.raw.always"}
    assert plan.reasons["source.shop.raw.always"] == "source raw.always declares meta.change_detection: always"
    assert plan.unseen == [
        "source raw.events is observed through its loaded_at only: rows deleted or corrected in place are not seen "
        "(declare `meta: {change_detection: row_count}` or `always` on it)"
    ]
    plan = plan_build(shop, state, "c", fresh, set(), set(), project_digest(shop), {},
                      Observed(counts={"source.shop.raw.counted": 7}, databases={"crm"}, watched={"crm"}))  # fmt: skip
    assert plan.reasons["source.shop.raw.counted"] == "source raw.counted has 7 rows (was 10)"
    assert plan.reasons["source.shop.raw.attached"] == "the database file of source raw.attached (crm) changed"
    # a source in no database file the mesh fingerprints, with no landing file and no loaded_at, or a view in
    # one (its rows change with what it reads, the file staying the same): its readers always run
    for observed in (Observed(), Observed(watched={"crm"}, kinds={"source.shop.raw.attached": "view"})):
        plan = plan_build(shop, state, "c", fresh, set(), set(), project_digest(shop), {}, observed)
        assert plan.reasons["source.shop.raw.attached"].startswith("source raw.attached cannot be observed")


def test_a_damaged_manifest_means_a_full_build(tmp_path: Path) -> None:
    from mesh_tools.state.observe import _unreadable_artifacts

    shop = _shop(tmp_path)
    shop.manifest_path.parent.mkdir(parents=True)
    shop.manifest_path.write_text(json.dumps({"metadata": {"project_name": "shop"}, "nodes": {}}))
    assert _unreadable_artifacts(shop) is None
    for damaged in ('{"metadata": {"project_name": "sh', "[" * 100_000 + "]" * 100_000, ""):
        shop.manifest_path.write_text(damaged)
        assert _unreadable_artifacts(shop) == "its manifest.json is missing or cannot be read: a build writes it again"
    shop.manifest_path.unlink()
    assert _unreadable_artifacts(shop) is not None


def test_a_source_moved_is_judged_by_the_data_where_it_now_is(tmp_path: Path) -> None:
    """A location rendered from a variable moves: the same data elsewhere rebuilds nothing, other data does."""
    from mesh_tools.state.inputs import landing_fingerprint

    shop = _shop(tmp_path)
    for name, rows in (("a", "id\n1\n"), ("b", "id\n1\n"), ("c", "id\n1\n2\n")):
        (shop.path / name).mkdir()
        (shop.path / name / "events.csv").write_text(rows)

    def located(folder: str) -> Any:
        meta = {"external_location": f"read_csv('{folder}/events.csv')"}
        return _manifest({}, {"source.shop.raw.events": _source("events", meta=meta)})

    before = located("a")
    state = _state(shop, before, landing={"source.shop.raw.events": landing_fingerprint(shop, "read_csv('a/events.csv')")},
                   loaded_at={})  # fmt: skip
    assert _plan(shop, state, current=located("b")).empty
    plan = _plan(shop, state, current=located("c"))
    assert plan.reasons == {"source.shop.raw.events": "the landing files of source raw.events changed"}


def test_a_state_file_of_another_shape_means_a_full_build(tmp_path: Path) -> None:
    from mesh_tools.state.file import STATE_VERSION, load_state, state_dir

    shop = _shop(tmp_path)
    folder = state_dir(shop, "dev")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"metadata": {"project_name": "shop"}, "nodes": {}}))
    for body, why in (
        ([], "is not a JSON object"),
        ({"version": STATE_VERSION, "code": 5}, "has an unexpected shape (code: Input should be a valid string)"),
        ({"version": STATE_VERSION, "code": "c", "owed": {"a": 1}}, "has an unexpected shape (owed:"),
        ({"version": STATE_VERSION, "code": "c", "reads": []}, "has an unexpected shape (reads:"),
        ({"version": STATE_VERSION, "code": "c", "reads": {"m": {"files": 5}}}, "unexpected shape (reads.m.files:"),
        ({"version": STATE_VERSION, "code": "c", "storage": [[]]}, "has an unexpected shape (storage.0:"),
        ({"version": STATE_VERSION, "code": "c", "quiet": {"upstreams": 5}}, "unexpected shape (quiet.upstreams:"),
        ({"version": STATE_VERSION, "code": "c", "quiet": {"products": [[1]]}}, "unexpected shape (quiet.products.0"),
        ("[" * 100_000 + "]" * 100_000, "cannot be read (RecursionError)"),
        ("{", "cannot be read (JSONDecodeError)"),
    ):
        (folder / "state.json").write_text(body if isinstance(body, str) else json.dumps(body))
        found = load_state(shop, "dev")
        assert isinstance(found, str) and why in found, (body, found)


def test_what_compiled_sql_reads_beyond_refs_and_sources() -> None:
    from mesh_tools.dbt.engines.sqlreads import known_tails, relation_key, sql_reads

    known = known_tails([relation_key("shop", "main", "stg_orders")])
    cases = {
        "select * from read_csv('lookup/fx.csv', header = true)": (["lookup/fx.csv"], None),
        "select * from 'lookup/fx.parquet' join shop.main.stg_orders on true": (["lookup/fx.parquet"], None),
        "select * from read_parquet(['a.parquet', 'b.parquet'])": (["a.parquet", "b.parquet"], None),
        "with x as (select 1) select * from x, range(3), main.stg_orders": ([], None),
        "select * from read_csv(getenv('LOOKUP'))": ([], "whose path is computed"),
        "select * from read_csv('s3://bucket/fx.csv')": ([], "a remote location"),
        "select * from main.fx": ([], "main.fx, a relation no ref() or source() of the project names"),
        "select * from information_schema.tables": ([], "reads the catalog"),
        "select * from duckdb_tables()": ([], "a table function the mesh cannot observe"),
        "select * from (((": ([], "cannot be parsed"),
        # the clock in what a model computes changes its rows with no input changing; a stamp does not
        "select * from main.stg_orders where ordered_at > current_date - 7": ([], "computes with CURRENT_DATE"),
        "select *, cast(now() as timestamp) as _built_at from main.stg_orders": ([], None),
    }
    for sql, (files, opaque) in cases.items():
        reads = sql_reads(sql, "duckdb", known)
        assert reads.files == files, sql
        assert (reads.opaque is None) if opaque is None else (opaque in str(reads.opaque)), (sql, reads.opaque)
    assert sql_reads("select * from parquet.`/data/fx.parquet`", "spark", known).files == ["/data/fx.parquet"]


def test_what_a_model_reads_while_it_compiles(tmp_path: Path) -> None:
    """run_query and statement blocks run SQL at compile time; the compiled SQL holds only the values they read."""
    from mesh_tools.state.inputs import node_reads

    shop = _shop(tmp_path)

    def model(name: str, code: str, macros: list[str] | None = None) -> dict[str, Any]:
        return _model(name, code, compiled=True, compiled_code="select 1.1 as rate",
                      depends_on={"macros": macros or [], "nodes": []})  # fmt: skip

    lookup = "{% set r = run_query(\"select rate from read_csv('lookup/fx.csv', header=true)\") %}select 1"
    helper = {"resource_type": "macro", "package_name": "dbt_utils", "name": "values",
              "macro_sql": "{% macro values(t) %}{% do run_query('select distinct x from ' ~ t) %}{% endmacro %}",
              "depends_on": {"macros": []}}  # fmt: skip
    manifest = _manifest(
        {
            "model.shop.literal": model("literal", lookup),
            "model.shop.computed": model("computed", "{% set r = run_query('select * from ' ~ var('t')) %}select 1"),
            "model.shop.clock": model("clock", "select '{{ run_started_at.strftime(\"%Y\") }}' as y"),
            "model.shop.package": model("package", "{{ dbt_utils.values(ref('x')) }}", ["macro.dbt_utils.values"]),
            "model.shop.block": model("block", "{% call statement('x', fetch_result=True) %}"
                                      "select * from 'lookup/other.csv'{% endcall %}select 1"),
        },
        macros={"macro.dbt_utils.values": helper},
    )  # fmt: skip
    reads = node_reads(shop, manifest)
    assert reads["model.shop.literal"] == {"files": ["lookup/fx.csv"], "opaque": None}
    assert "SQL built at run time while it compiles" in reads["model.shop.computed"]["opaque"]
    assert reads["model.shop.clock"]["opaque"] == "it reads the clock while it compiles (run_started_at)"
    assert reads["model.shop.package"] == {"files": [], "opaque": None}  # an installed package's query of its ref
    assert reads["model.shop.block"] == {"files": ["lookup/other.csv"], "opaque": None}


def test_what_hooks_write_beyond_their_sources() -> None:
    from mesh_tools.state.inputs import hook_writes

    landed = {"external_location": "read_parquet('/landing/orders.parquet')"}
    manifest = _manifest({}, {"source.shop.raw.orders": _source("orders", database=None, meta=landed),
                              "source.shop.raw.fx": _source("fx", database=None)})  # fmt: skip
    statements = [
        '/* {"app": "dbt"} */ create schema if not exists raw',
        "create or replace view raw.orders as select * from read_parquet('/landing/orders.parquet')",
        "select 1",
        "create or replace table main.fx as select 2.20 as rate",
        "insert into audit.log values (1)",
        "create or replace table raw.fx as select 2.20 as rate",  # a source with no landing file: not seen
    ]
    assert hook_writes(statements, manifest, "duckdb") == [
        "create or replace table main.fx as select 2.20 as rate",
        "insert into audit.log values (1)",
        "create or replace table raw.fx as select 2.20 as rate",
    ]
    # Spark's hook of the demo (a view over a source's landing file) writes only that source
    spark = "create or replace view raw.orders as select * from parquet.`/landing/orders.parquet`"
    assert hook_writes([spark], manifest, "spark") == []
    # a statement sqlglot does not model may write anything
    assert hook_writes([spark], manifest, "duckdb") == [spark]


# -- end to end, on real builds


def _rows(root: Path, project: str, model: str) -> list[tuple[Any, ...]]:
    from mesh_tools.store.exchange import Exchange

    release = Exchange(root / "exchange").current(project, model, None)
    assert release is not None, f"{project}.{model} has no current release"
    con = duckdb.connect()
    try:
        path = str(release.data_path).replace("'", "''")
        return sorted(con.execute(f"select * from read_parquet('{path}')").fetchall(), key=str)
    finally:
        con.close()


def _mesh(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = run_command(["mesh", *args], root, {**mesh_env(), **(env or {})})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _reason(output: str, domain: str) -> str:
    line = next((x for x in output.splitlines() if x.startswith(f"{domain}: ")), "")
    return line.removeprefix(f"{domain}: ")


def test_hand_runs_and_damaged_artifacts_never_serve_stale_rows(tmp_path: Path) -> None:
    root = copy_fixture("state_mesh", tmp_path)
    shop = root / "shop"
    _mesh(root, "build")
    assert [r[0] for r in _rows(root, "shop", "orders")] == [1, 2, 3]
    stg = shop / "models/stg_orders.sql"
    original = stg.read_text()

    # a hand run from temporary code with --no-write-json (run_results.json is not rewritten), the code undone,
    # then a dbt command that writes no relation (it replaces run_results.json)
    stg.write_text(original + "where order_id <> 1\n")
    assert run_dbt("run", "-s", "stg_orders", "--no-write-json", cwd=shop).returncode == 0
    stg.write_text(original)
    assert run_dbt("compile", cwd=shop).returncode == 0
    (shop / "models/orders.sql").write_text((shop / "models/orders.sql").read_text() + "-- touched\n")
    out = _mesh(root, "build", "--explain")
    assert _reason(out, "shop").startswith("every model ran: dbt wrote its relations outside the mesh"), out
    assert [r[0] for r in _rows(root, "shop", "orders")] == [1, 2, 3]

    # a write into the domain's database by another tool: its storage changed outside the mesh
    con = duckdb.connect(str(shop / "shop.duckdb"))
    con.execute("delete from main.stg_orders where order_id = 2")
    con.close()
    out = _mesh(root, "build", "--explain")
    assert _reason(out, "shop").startswith("every model ran: its storage changed since the mesh's last build"), out
    assert [r[0] for r in _rows(root, "shop", "orders")] == [1, 2, 3]

    # a state file of another shape and a damaged manifest: a full build that says why (never an internal
    # error), and `mesh build shop` writes the manifest whole again (its consumer then stitches from it)
    state = shop / "target/mesh-state/dev/state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "owed": {"x": 1}}))
    manifest = shop / "target/manifest.json"
    manifest.write_text(manifest.read_text()[:500])
    out = _mesh(root, "build", "shop", "--explain")
    assert "every model ran: its recorded build state has an unexpected shape (owed:" in _reason(out, "shop"), out
    assert json.loads(manifest.read_text())["metadata"]["project_name"] == "shop"

    # the gate: rows written after the mesh's build never become a release, even where run_results.json still
    # names that build (an --empty build into another target path; a hand run with --no-write-json)
    before = _rows(root, "shop", "orders")
    assert run_dbt("run", "-s", "orders", "--empty", "--target-path", str(tmp_path / "else"), cwd=shop).returncode == 0
    refused = run_mesh("publish", "shop", cwd=root)
    assert refused.returncode == 1 and "its database file changed since" in refused.stdout + refused.stderr
    assert run_dbt("run", "-s", "orders", "--no-write-json", cwd=shop).returncode == 0
    refused = run_mesh("publish", "shop", cwd=root)
    text = refused.stdout + refused.stderr
    assert refused.returncode == 1 and "dbt wrote target/run/shop/models/orders.sql after it" in text, text
    # a sample, or an empty build under a later partial one, never becomes a release
    assert run_dbt("build", "-s", "orders", "--sample=1 day", cwd=shop).returncode == 0
    refused = run_mesh("publish", "shop", cwd=root)
    assert refused.returncode == 1 and "ran with --sample" in refused.stdout + refused.stderr
    assert run_dbt("run", "-s", "stg_orders", "--empty", cwd=shop).returncode == 0
    assert run_dbt("build", "-s", "orders+", cwd=shop).returncode == 0
    refused = run_mesh("publish", "shop", cwd=root)
    text = refused.stdout + refused.stderr
    assert refused.returncode == 1 and "orders reads stg_orders, which this build did not build" in text, text
    assert _rows(root, "shop", "orders") == before
    # after a `dbt parse`, the manifest is not the build's: its rows would be published as the new code's
    assert run_dbt("build", cwd=shop).returncode == 0
    assert run_dbt("parse", cwd=shop).returncode == 0
    refused = run_mesh("publish", "shop", cwd=root)
    assert refused.returncode == 1 and "come from different dbt runs" in refused.stdout + refused.stderr

    # the mesh's own write is no outside write: a product report may no longer read loses its stub view, and
    # report's next build is no full build for it
    (shop / "models/extra.sql").write_text("select 1 as id\n")
    with (shop / "models/schema.yml").open("a") as schema:
        schema.write("  - name: extra\n    config: {access: public}\n")
    _mesh(root, "build")
    schema_text = (shop / "models/schema.yml").read_text()
    (shop / "models/schema.yml").write_text(
        schema_text.replace("  - name: extra\n    config: {access: public}\n",
                            "  - name: extra\n    config: {access: public, meta: {allowed_consumers: [audit]}}\n")
    )  # fmt: skip
    out = _mesh(root, "build", "--explain")
    assert "dropped the stub views upstream_shop.extra" in out, out
    assert "report: every model ran" not in out, out


def test_inputs_beyond_refs_and_sources_are_fingerprinted(tmp_path: Path) -> None:
    """The target chosen by a variable, variables read by SQL, a source located by a variable, a lookup file a
    model reads, an attached source database, an on-run-start hook that writes: each change is seen."""
    root = copy_fixture("state_mesh", tmp_path)
    shop, report = root / "shop", root / "report"
    (shop / "profiles.yml").write_text(
        "shop:\n  target: \"{{ env_var('SHOP_TARGET', 'dev') }}\"\n  outputs:\n"
        "    dev: {type: duckdb, path: shop.duckdb, threads: 1}\n    prod: {type: duckdb, path: shop_prod.duckdb, threads: 1}\n"
    )
    (shop / "models/orders.sql").write_text(
        (shop / "models/orders.sql").read_text() + "{% if target.name == 'dev' %}where order_id < 3{% endif %}\n"
    )
    sources = shop / "models/sources.yml"
    sources.write_text(
        sources.read_text().replace("'landing/{name}.csv'", "'{{ env_var('LANDING', 'landing') }}/{name}.csv'")
    )
    (report / "lookup").mkdir()
    (report / "lookup/rates.csv").write_text("rate\n2\n")
    (report / "models/revenue.sql").write_text(
        "select customer_id, sum(amount_cents) * max(r.rate) as revenue_cents, count(*) as orders\n"
        "from {{ ref('shop', 'orders') }} cross join read_csv('lookup/rates.csv', header = true) r\ngroup by customer_id\n"
    )
    (report / "models/refund_totals.sql").write_text(
        "select count(*) as refunds, sum(amount) * {{ env_var('REFUND_SCALE', '1') }} as refunded\n"
        "from {{ ref('shop', 'refunds') }}\n"
    )
    crm = duckdb.connect(str(report / "crm.duckdb"))
    crm.execute(
        "create table customers as select * from (values (10, now()), (11, now()), (12, now())) t(id, loaded_at)"
    )
    crm.close()
    (report / "profiles.yml").write_text(
        "report:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: report.duckdb\n      threads: 1\n"
        "      attach: [{path: crm.duckdb, alias: crm, read_only: true}]\n"
    )
    (report / "models/sources.yml").write_text(
        "sources:\n  - name: crm\n    database: crm\n    schema: main\n    config:\n      loaded_at_field: loaded_at\n"
        "      freshness: {warn_after: {count: 1000, period: day}}\n    tables: [{name: customers}]\n"
    )
    (report / "models/customer_count.sql").write_text(
        "select count(*) as customers from {{ source('crm', 'customers') }}\n"
    )
    with (report / "models/schema.yml").open("a") as schema:
        schema.write("  - name: customer_count\n    config: {access: public}\n")

    _mesh(root, "build")
    assert len(_rows(root, "shop", "orders")) == 2  # dev: two orders
    assert _rows(root, "report", "customer_count") == [(3,)]

    # the profile's target chosen by a variable: prod is another storage and another result
    out = _mesh(root, "build", "--explain", env={"SHOP_TARGET": "prod"})
    assert "shop: every model ran: no earlier mesh build of this target is recorded" in out, out
    assert len(_rows(root, "shop", "orders")) == 3
    prod = {"SHOP_TARGET": "prod"}

    # a variable a model's SQL reads, a file it reads, a deleted row in an attached source database; and shop's
    # source moved by a variable to a copy of the same data: shop rebuilds nothing
    for name, extra in (("landing2", ""), ("landing3", "4,12,20.00,2026-11-05 08:00:00\n")):
        (shop / name).mkdir()
        for csv in (shop / "landing").iterdir():
            (shop / name / csv.name).write_text(csv.read_text() + (extra if csv.name == "orders.csv" else ""))
    (report / "lookup/rates.csv").write_text("rate\n3\n")
    crm = duckdb.connect(str(report / "crm.duckdb"))
    crm.execute("delete from customers where id = 12")  # a GDPR delete: loaded_at unchanged
    crm.close()
    env = {**prod, "REFUND_SCALE": "10"}
    out = _mesh(root, "build", "--explain", env={**env, "LANDING": "landing2"})
    assert "shop: nothing changed" in out or "shop: ran 0 of" in out, out
    assert "report.refund_totals: environment variable REFUND_SCALE changed" in out, out
    assert "report.revenue: a file its SQL reads changed (lookup/rates.csv)" in out, out
    assert "the database file of source crm.customers (crm) changed" in out, out
    assert _rows(root, "report", "refund_totals")[0][1] == 30  # 3.00 * 10
    assert _rows(root, "report", "customer_count") == [(2,)]
    assert sorted(r[1] for r in _rows(root, "report", "revenue")) == [3 * 725, 3 * (1250 + 300)]

    # the source moved to other data, and an on-run-start hook that writes a table a model reads (added with
    # dbt_project.yml, so built in full once); then the hook writes something else: built in full, every time
    (shop / "macros").mkdir()
    (shop / "macros/fx.sql").write_text(
        "{% macro load_fx() %}{% do run_query('create or replace table main.fx as select 1.10 as rate') %}"
        "{% endmacro %}\n"
    )
    project = shop / "dbt_project.yml"
    project.write_text(project.read_text() + '\non-run-start: ["{{ load_fx() }}"]\n')
    (shop / "models/fx_rate.sql").write_text("select rate from main.fx\n")
    with (shop / "models/schema.yml").open("a") as schema:
        schema.write("  - name: fx_rate\n    config: {access: public}\n")
    env = {**env, "LANDING": "landing3"}
    _mesh(root, "build", env=env)
    assert len(_rows(root, "shop", "orders")) == 4
    assert float(_rows(root, "shop", "fx_rate")[0][0]) == pytest.approx(1.10)
    (shop / "macros/fx.sql").write_text((shop / "macros/fx.sql").read_text().replace("1.10", "2.20"))
    out = _mesh(root, "build", "--explain", env=env)
    assert "shop: every model ran: its on-run-start hooks write what its models may read" in out, out
    assert float(_rows(root, "shop", "fx_rate")[0][0]) == pytest.approx(2.20)
    assert os.environ.get("REFUND_SCALE") is None  # the test's variables never leaked into this process
