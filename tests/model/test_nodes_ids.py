"""Node ids and product keys are written in one place and read back in one place (``model.nodes``), for every
version dbt accepts (``v: 2``, ``v: 1.5``, ``v: "beta"``) and every resource type: `mesh sync` and `mesh status`
compare a consumer's receipts by product keys, the state-aware build its recorded reads, and every feature reads
a node's project and name out of its unique_id."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_tools.exchange.sync import split_key
from mesh_tools.model.nodes import Node, NodeId, ProductKey, product_key, split_product_key, stub_id

# dbt's names: letters, digits, underscores (no dot: dbt refuses a dot in a project or model name)
NAME = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=12)
# what dbt keeps as a version: an integer, a decimal (v: 1.5), or a string (v: "beta", v: "2.0.1")
SOME_VERSION = st.one_of(
    st.integers(min_value=0, max_value=10_000).map(str),
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False).map(str),
    st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=8),
)
VERSION = st.one_of(st.none(), SOME_VERSION)
HASH = st.text("0123456789abcdef", min_size=10, max_size=10)


@given(NAME, NAME, VERSION)
def test_a_key_reads_back_as_what_wrote_it(project: str, model: str, version: str | None) -> None:
    key = product_key(project, model, version)
    assert split_product_key(key) == (project, model, version)
    assert split_key(key) == (project, model, version)  # what `mesh sync` and `mesh status` read
    parsed = ProductKey.parse(key)
    assert parsed == ProductKey(project, model, version) and str(parsed) == key
    assert ProductKey.parse(str(ProductKey(project, model, version))) == ProductKey(project, model, version)


def test_a_version_with_a_dot_is_one_version() -> None:
    """The finding: `sales.fct_orders.v1.5` was read as the unversioned model 'fct_orders.v1.5', so a consumer
    behind on it was never seen."""
    assert split_key("sales.fct_orders.v1.5") == ("sales", "fct_orders", "1.5")
    assert split_key("sales.fct_orders.v2") == ("sales", "fct_orders", "2")
    assert split_key("customers.dim_customers") == ("customers", "dim_customers", None)


def _node_ids() -> st.SearchStrategy[NodeId]:
    """A unique_id of every resource type dbt 1.11 writes, in the shape dbt writes it."""
    plain = st.sampled_from(["seed", "snapshot", "function", "macro", "analysis", "exposure", "metric"])
    return st.one_of(
        st.builds(NodeId.model, NAME, NAME, VERSION),
        st.builds(NodeId, plain, NAME, NAME),
        st.builds(lambda p, s, n: NodeId("source", p, n, scope=s), NAME, NAME, NAME),
        st.builds(lambda p, m, n: NodeId("unit_test", p, n, scope=m), NAME, NAME, NAME),
        st.builds(lambda p, n, h: NodeId("test", p, n, suffix=h), NAME, NAME, st.one_of(st.none(), HASH)),
    )


@given(_node_ids())
def test_a_node_id_reads_back_as_what_wrote_it(node: NodeId) -> None:
    assert NodeId.parse(str(node)) == node
    assert str(NodeId.parse(str(node))) == str(node)


@given(NAME, NAME, VERSION)
def test_a_model_id_and_its_product_key_are_one_product(project: str, model: str, version: str | None) -> None:
    node = NodeId.model(project, model, version)
    assert node.product == ProductKey(project, model, version)
    assert ProductKey(project, model, version).node_id == node
    assert node.local == str(node).split(".", 2)[2]


@pytest.mark.parametrize(
    ("unique_id", "parts"),
    [
        ("model.sales.fct_orders.v1.5", ("model", "sales", "fct_orders", "1.5", None, None)),
        ("model.sales.fct_orders", ("model", "sales", "fct_orders", None, None, None)),
        ("source.sales.raw.orders", ("source", "sales", "orders", None, "raw", None)),
        (
            "test.sales.not_null_fct_orders_id.5fb22c2710",
            ("test", "sales", "not_null_fct_orders_id", None, None, "5fb22c2710"),
        ),  # fmt: skip
        ("test.sales.assert_positive", ("test", "sales", "assert_positive", None, None, None)),
        ("unit_test.sales.fct_orders.test_totals", ("unit_test", "sales", "test_totals", None, "fct_orders", None)),
        ("function.sales.is_positive", ("function", "sales", "is_positive", None, None, None)),
        ("seed.revenue.integers", ("seed", "revenue", "integers", None, None, None)),
    ],
)
def test_every_resource_type_reads_as_dbt_writes_it(unique_id: str, parts: tuple[str | None, ...]) -> None:
    node = NodeId.parse(unique_id)
    assert (node.resource_type, node.package, node.name, node.version, node.scope, node.suffix) == parts


def test_what_is_no_unique_id_is_refused_or_none() -> None:
    for text in ("", "model", "model.sales", "model..x", ".sales.x"):
        with pytest.raises(ValueError, match="no dbt unique_id"):
            NodeId.parse(text)
        assert NodeId.read(text) is None
    # a node whose raw mapping lacks its name still has one (the versioned model's, not "v2")
    assert Node("model.sales.fct_orders.v2", {}).name == "fct_orders"
    assert Node("nonsense", {}).name == "nonsense"


def test_a_seed_or_snapshot_is_a_model_in_its_consumers() -> None:
    assert stub_id("seed.revenue.integers") == "model.revenue.integers"
    assert stub_id("snapshot.sales.orders_history") == "model.sales.orders_history"
    assert stub_id("model.sales.fct_orders.v2") == "model.sales.fct_orders.v2"
    assert stub_id("source.sales.raw.orders") == "source.sales.raw.orders"
    assert stub_id("nonsense") == "nonsense"
