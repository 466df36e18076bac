"""dbt's selection grammar (core/selection.py), over domains (Mesh.select) and over models across domains
(workflows/model_selection.py): pure Python, on hand-made graphs, meshes and manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mesh_tools.core.errors import ConfigError
from mesh_tools.core.mesh import Mesh, load_mesh
from mesh_tools.core.selection import SelectionError, evaluate, parse_criterion, parse_selection
from mesh_tools.model.manifest import Manifest
from mesh_tools.workflows.model_selection import select_models

# a -> b -> c -> d (each reads the one before), e reads a, x stands alone
CHAIN = {"a": set(), "b": {"a"}, "c": {"b"}, "d": {"c"}, "e": {"a"}, "x": set()}


def chosen(*select: str, exclude: tuple[str, ...] = ()) -> set[str]:
    def named(criterion: Any) -> set[str]:
        found = {n for n in CHAIN if criterion.matches(n)}
        if not found:
            raise SelectionError(f"unknown '{criterion.value}'")
        return found

    return evaluate(parse_selection(select, exclude), CHAIN, named)


def test_criteria_parse_as_dbt_writes_them() -> None:
    c = parse_criterion("2+domain:sales+1")
    assert (c.method, c.value, c.parents, c.parents_depth, c.children, c.children_depth) == (
        "domain", "sales", True, 2, True, 1)  # fmt: skip
    assert parse_criterion("@sales").at and not parse_criterion("@sales").parents
    assert parse_criterion("sales.fct_orders+").model_level and not parse_criterion("sales+").model_level
    assert parse_criterion("tag:nightly").model_level and parse_criterion("owner:Ops").method == "owner"
    assert parse_criterion("sales.orders.v1.5").value == "sales.orders.v1.5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo:x", "unknown selector method 'foo:' in 'foo:x'."),
        ("tga:x", "Did you mean 'tag'?"),
        ("@+a", "has both '@' and a leading '+'"),
        ("++a", "cannot read the selector '++a'"),
        ("domain:", "names nothing after 'domain:'"),
        ("a,,b", "has an empty part between commas"),
    ],
)
def test_bad_selectors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SelectionError) as caught:
        parse_selection([text])
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError)  # exit 2, as every usage error


def test_plus_and_depth() -> None:
    assert chosen("b+") == {"b", "c", "d"}
    assert chosen("b+1") == {"b", "c"}
    assert chosen("+c") == {"a", "b", "c"}
    assert chosen("1+c") == {"b", "c"}
    assert chosen("2+d+") == {"b", "c", "d"}


def test_at_adds_the_ancestors_of_the_descendants() -> None:
    assert chosen("@b") == {"a", "b", "c", "d"}
    assert chosen("@e") == {"a", "e"}


def test_space_is_a_union_comma_an_intersection_exclude_a_difference() -> None:
    assert chosen("c x") == {"c", "x"} == chosen("c", "x")
    assert chosen("a+,+c") == {"a", "b", "c"}
    assert chosen("a+", exclude=("c+",)) == {"a", "b", "e"}
    assert chosen(exclude=("a+",)) == {"x"}  # nothing selected: everything, minus what --exclude names
    assert chosen("b*") == {"b"} and chosen("[de]") == {"d", "e"}


def write_mesh(root: Path, domains: dict[str, tuple[list[str], str]]) -> Mesh:
    """A mesh of dbt projects that are only files (no dbt): name -> (its upstreams, its owner)."""
    lines = ["name: tiny", "domains:"]
    for name, (ups, owner) in domains.items():
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "dbt_project.yml").write_text(f"name: {name}\nprofile: {name}\nversion: '1.0'\nconfig-version: 2\n")
        if ups:
            (folder / "dependencies.yml").write_text("projects:\n" + "".join(f"  - name: {u}\n" for u in ups))
        lines += [f"  {name}:", f"    path: {name}", f"    owner: {{name: {owner}, email: {owner.lower()}@t.test}}"]
    (root / "mesh.yml").write_text("\n".join(lines) + "\n")
    return load_mesh(root)


@pytest.fixture
def tiny(tmp_path: Path) -> Mesh:
    return write_mesh(tmp_path, {
        "customers": ([], "Crm"), "sales": (["customers"], "Shop"), "marketing": (["sales", "customers"], "Growth"),
        "finance": (["sales"], "Money"), "ops": ([], "Shop"),
    })  # fmt: skip


def test_domains_in_build_order(tiny: Mesh) -> None:
    assert tiny.select(["sales+"]) == ["sales", "finance", "marketing"]
    assert tiny.select(["+marketing"]) == ["customers", "sales", "marketing"]
    assert tiny.select(["sales+1"], ["marketing"]) == ["sales", "finance"]
    assert set(tiny.select(["owner:Shop"])) == {"sales", "ops"}
    assert tiny.select(["customers+,owner:Shop"]) == ["sales"]
    assert tiny.select(["domain:finance"]) == ["finance"]
    assert tiny.select([]) == tiny.order


def test_unknown_domain_names_the_closest(tiny: Mesh) -> None:
    with pytest.raises(SelectionError) as caught:
        tiny.select(["salse+"])
    assert str(caught.value).startswith("unknown domain 'salse' in selection 'salse+'. Did you mean 'sales'?")


def test_a_comma_between_two_domains_selects_nothing_and_says_why(tiny: Mesh) -> None:
    with pytest.raises(SelectionError) as caught:
        tiny.select(["sales,finance"])
    assert "selects no domain" in str(caught.value) and "A comma intersects" in str(caught.value)


def test_a_domain_level_command_refuses_a_model(tiny: Mesh) -> None:
    with pytest.raises(SelectionError) as caught:
        tiny.select(["sales.orders+"], command="`mesh check`")
    assert "'sales.orders+' names models; `mesh check` selects whole domains" in str(caught.value)


def node(
    project: str, name: str, reads: tuple[str, ...] | list[str] = (), version: str | None = None, **extra: Any
) -> dict[str, Any]:
    uid = f"model.{project}.{name}" + (f".v{version}" if version else "")
    return {"unique_id": uid, "resource_type": "model", "name": name, "package_name": project, "version": version,
            "fqn": [project, name] + ([f"v{version}"] if version else []), "depends_on": {"nodes": list(reads)},
            "config": {"access": extra.pop("access", "protected")}, "original_file_path": f"models/{name}.sql",
            **extra}  # fmt: skip


def manifests_of(**nodes: list[dict[str, Any]]) -> dict[str, Manifest]:
    return {
        project: Manifest.of({"metadata": {"project_name": project}, "nodes": {n["unique_id"]: n for n in found}})
        for project, found in nodes.items()
    }


@pytest.fixture
def models() -> dict[str, Manifest]:
    stub = node("sales", "orders", access="public")  # the consumers' stub of sales's product
    return manifests_of(
        customers=[node("customers", "dim_customers", access="public")],
        sales=[node("sales", "stg_orders", tags=["nightly"]), node("sales", "orders", ["model.sales.stg_orders"],
               access="public"), node("sales", "refunds", ["model.sales.stg_orders"])],
        marketing=[stub, node("marketing", "touches", ["model.sales.orders"], group="growth"),
                   node("marketing", "segments", ["model.marketing.touches"])],
        finance=[stub, node("finance", "revenue", ["model.sales.orders"]), node("finance", "costs")],
        ops=[node("ops", "tickets")],
    )  # fmt: skip


def test_a_model_and_its_downstream_in_every_domain(tiny: Mesh, models: dict[str, Manifest]) -> None:
    slices = select_models(tiny, parse_selection(["sales.orders+"]), models)
    assert list(slices) == ["sales", "finance", "marketing"]  # build order
    assert slices["sales"].nodes == ("model.sales.orders",)
    assert slices["sales"].later == ("model.sales.refunds", "model.sales.stg_orders")  # owed a run
    assert slices["marketing"].nodes == ("model.marketing.segments", "model.marketing.touches")
    assert slices["finance"].nodes == ("model.finance.revenue",)
    # a consumer's slice also runs the stub it reads, so its view points at the release this build publishes
    assert slices["finance"].dbt_args() == ["--select", "fqn:finance.revenue", "fqn:sales.orders"]


def test_a_model_alone_depth_and_exclude(tiny: Mesh, models: dict[str, Manifest]) -> None:
    assert list(select_models(tiny, parse_selection(["sales.orders"]), models)) == ["sales"]
    one = select_models(tiny, parse_selection(["sales.orders+1"]), models)
    assert one["marketing"].nodes == ("model.marketing.touches",)
    cut = select_models(tiny, parse_selection(["sales.stg_orders+"], ["marketing"]), models)
    assert list(cut) == ["sales", "finance"]
    assert cut["sales"].nodes == ("model.sales.orders", "model.sales.refunds", "model.sales.stg_orders")
    up = select_models(tiny, parse_selection(["+marketing.touches"]), models)
    assert {d: s.nodes for d, s in up.items()} == {
        "sales": ("model.sales.orders", "model.sales.stg_orders"), "marketing": ("model.marketing.touches",)}  # fmt: skip


def test_tags_groups_and_whole_domains_at_model_level(tiny: Mesh, models: dict[str, Manifest]) -> None:
    tagged = select_models(tiny, parse_selection(["tag:nightly+1"]), models)
    assert tagged["sales"].nodes == ("model.sales.orders", "model.sales.refunds", "model.sales.stg_orders")
    assert list(select_models(tiny, parse_selection(["group:growth"]), models)) == ["marketing"]
    whole = select_models(tiny, parse_selection(["ops", "sales.refunds"]), models)  # a domain: each of its models
    assert {d: s.nodes for d, s in whole.items()} == {"sales": ("model.sales.refunds",), "ops": ("model.ops.tickets",)}


def test_an_unknown_model_names_the_closest(tiny: Mesh, models: dict[str, Manifest]) -> None:
    with pytest.raises(SelectionError) as caught:
        select_models(tiny, parse_selection(["sales.ordres+"]), models)
    assert "no model, seed or snapshot 'sales.ordres' in the mesh (selection 'sales.ordres+'). " \
        "Did you mean 'sales.orders'?" in str(caught.value)  # fmt: skip
    with pytest.raises(SelectionError, match="unknown domain 'slaes'"):
        select_models(tiny, parse_selection(["slaes.orders"]), models)
    with pytest.raises(SelectionError, match="no model has tag 'daily'"):
        select_models(tiny, parse_selection(["tag:daily"]), models)
