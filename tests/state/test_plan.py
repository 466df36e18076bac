"""Planning a state-aware build (mesh_tools/state/plan.py, explain.py) on manifests written in Python.

No dbt: each test decides a plan in milliseconds; one reason of the plan, or one way it refuses the last
build's state (``why_full``), per test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mesh_tools.core.mesh import Domain, load_mesh
from mesh_tools.model.manifest import Manifest, NodeResult, RunResults
from mesh_tools.state.explain import explain
from mesh_tools.state.file import STATE_VERSION, BuildState, StateFile
from mesh_tools.state.inputs import landing_fingerprint, project_digest, seed_digests
from mesh_tools.state.plan import BuildPlan, Observed, plan_build, why_full


@pytest.fixture
def shop(tmp_path: Path) -> Domain:
    folder = tmp_path / "shop"
    (folder / "landing").mkdir(parents=True)
    (folder / "seeds").mkdir()
    (folder / "dbt_project.yml").write_text("name: shop\nprofile: shop\nversion: '1'\n")
    (folder / "landing/orders.csv").write_text("id\n1\n")
    (folder / "seeds/zips.csv").write_text("zip\n1000\n")
    return load_mesh(tmp_path).domains["shop"]


def _manifest(**nodes: dict[str, Any]) -> Manifest:
    source = {"resource_type": "source", "package_name": "shop", "name": "orders", "source_name": "raw",
              "database": "shop", "schema": "raw", "identifier": "orders", "config": {},
              "meta": {"external_location": "landing/orders.csv"}}  # fmt: skip
    built = {
        "model.shop.a": {"resource_type": "model", "package_name": "shop", "name": "a", "fqn": ["shop", "a"],
                         "raw_code": "select * from {{ source('raw', 'orders') }}", "config": {},
                         "depends_on": {"nodes": ["source.shop.raw.orders"], "macros": []}},
        "seed.shop.zips": {"resource_type": "seed", "package_name": "shop", "name": "zips", "fqn": ["shop", "zips"],
                           "original_file_path": "seeds/zips.csv", "config": {}},
        **nodes,
    }  # fmt: skip
    data = {"metadata": {"project_name": "shop", "adapter_type": "duckdb", "invocation_id": "inv"}, "nodes": built,
            "sources": {"source.shop.raw.orders": source}, "macros": {}}  # fmt: skip
    return Manifest.of(data, "shop")


def _state(shop: Domain, manifest: Manifest, **recorded: Any) -> BuildState:
    landing = {"source.shop.raw.orders": landing_fingerprint(shop, "landing/orders.csv")}
    file = StateFile.model_validate({"version": STATE_VERSION, "code": "c", "landing": landing, **recorded})
    return BuildState(folder=shop.path, manifest=manifest, code="c", landing=dict(file.landing), owed=set(file.owed),
                      storage=None, loaded_at={}, built={}, project=project_digest(shop),
                      seeds=seed_digests(shop, manifest), file=file)  # fmt: skip


def _plan(shop: Domain, state: BuildState | str, code: str = "c", **kwargs: Any) -> BuildPlan:
    observed = kwargs.pop("observed", Observed())
    return plan_build(shop, state, code, None, kwargs.pop("missing", set()), kwargs.pop("unreleased", set()),
                      project_digest(shop), kwargs.pop("metadata", {}), observed)  # fmt: skip


def test_nothing_changed_nothing_runs(shop: Domain) -> None:
    plan = _plan(shop, _state(shop, _manifest()))
    assert plan.empty and plan.dbt_args() == ["--select"] and not plan.reasons


def test_no_state_builds_everything_and_says_why(shop: Domain) -> None:
    plan = _plan(shop, "no earlier mesh build of this target is recorded")
    assert plan.full and plan.why_full == "no earlier mesh build of this target is recorded" and plan.dbt_args() == []


def test_changed_code_is_dbts_state_comparison(shop: Domain) -> None:
    state = _state(shop, _manifest())
    plan = _plan(shop, state, code="other")
    assert plan.modified and plan.dbt_args() == ["--select", "state:modified+", "--state", str(shop.path)]


def test_a_changed_landing_file_runs_its_readers(shop: Domain) -> None:
    state = _state(shop, _manifest())
    (shop.path / "landing/orders.csv").write_text("id\n1\n2\n")
    plan = _plan(shop, state)
    assert plan.reasons == {"source.shop.raw.orders": "the landing files of source raw.orders changed"}
    assert plan.selectors == ["source:shop.raw.orders+"]


def test_a_changed_seed_file_runs_the_seed(shop: Domain) -> None:
    state = _state(shop, _manifest())
    (shop.path / "seeds/zips.csv").write_text("zip\n2000\n")
    plan = _plan(shop, state)
    assert plan.reasons == {"seed.shop.zips": "its file changed"} and plan.selectors == ["fqn:shop.zips+"]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"missing": {"model.shop.a"}}, "its relation is missing from the warehouse"),
        ({"unreleased": {"model.shop.a"}}, "its current release is not from its last build"),
        ({"metadata": {"model.shop.a": "its documentation changed"}}, "its documentation changed"),
    ],
)
def test_what_is_observed_before_dbt_runs_the_node(shop: Domain, kwargs: dict[str, Any], reason: str) -> None:
    plan = _plan(shop, _state(shop, _manifest()), **kwargs)
    assert plan.reasons == {"model.shop.a": reason} and plan.selectors == ["fqn:shop.a+"]


def test_a_node_gone_from_the_project_is_not_run(shop: Domain) -> None:
    plan = _plan(shop, _state(shop, _manifest(), owed=["model.shop.gone"]))
    assert plan.empty


def test_a_source_that_cannot_be_observed_runs_its_readers_every_time(shop: Domain) -> None:
    (shop.path / "landing/orders.csv").unlink()
    plan = _plan(shop, _state(shop, _manifest()))
    assert plan.reasons["source.shop.raw.orders"].startswith("source raw.orders cannot be observed")


def test_an_opaque_model_runs_every_time(shop: Domain) -> None:
    reads = {"model.shop.a": {"files": [], "opaque": "it is a Python model"}}
    plan = _plan(shop, _state(shop, _manifest(), reads=reads))
    assert plan.reasons == {"model.shop.a": "it is a Python model: it runs every time"}


@pytest.mark.parametrize(
    ("recorded", "observed", "reason"),
    [
        ({"target": "t1"}, Observed(target="t2"), "its target resolves to other storage than its last build"),
        ({"env": {"X": "1"}}, Observed(env={"X": "2"}, project_env={"X"}), "environment variable X, which its dbt_"),
        ({}, Observed(env_computed="macros/m.sql:3"), "its code reads an environment variable whose name is computed"),
        ({"hooks": ["create table t as select 1"]}, Observed(), "its on-run-start hooks write what its models may"),
        ({"footprint": {"shop/models/a.sql": [1, 1]}}, Observed(footprint={}), "dbt wrote its relations outside"),
    ],
)
def test_why_full(shop: Domain, recorded: dict[str, Any], observed: Observed, reason: str) -> None:
    assert why_full(_state(shop, _manifest()), project_digest(shop), Observed()) is None
    state = _state(shop, _manifest(), **recorded)
    found = why_full(state, project_digest(shop), observed)
    assert found is not None and found.startswith(reason), found
    plan = _plan(shop, state, observed=observed)
    assert plan.full and plan.why_full == found


def test_a_changed_dbt_project_yml_builds_in_full(shop: Domain) -> None:
    state = _state(shop, _manifest())
    (shop.path / "dbt_project.yml").write_text("name: shop\nprofile: shop\nversion: '2'\n")
    assert _plan(shop, state).why_full.startswith("dbt_project.yml changed")


def test_explain_says_why_each_node_ran(shop: Domain) -> None:
    state = _state(shop, _manifest())
    (shop.path / "landing/orders.csv").write_text("id\n1\n2\n")
    plan = _plan(shop, state)
    results = RunResults(Path("run_results.json"), {}, {}, (NodeResult("model.shop.a", "success", None, 0.1),))
    assert explain(plan, "shop", _manifest(), results) == [("shop.a", "the landing files of source raw.orders changed")]
    full = BuildPlan(full=True, why_full="--full was given")
    assert explain(full, "shop", _manifest(), results) == [("shop.a", "full build (--full was given)")]
