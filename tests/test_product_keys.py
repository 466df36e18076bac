"""A product key (``project.model.vN``) is written in one place and read back in one place, for every version
dbt accepts (``v: 2``, ``v: 1.5``, ``v: "beta"``): `mesh sync` and `mesh status` compare a consumer's receipts by
these keys, and the state-aware build its recorded reads."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from mesh_tools.exchange.sync import split_key
from mesh_tools.model.nodes import product_key, split_product_key

# dbt's names: letters, digits, underscores (no dot: dbt refuses a dot in a project or model name)
NAME = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=12)
# what dbt keeps as a version: an integer, a decimal (v: 1.5), or a string (v: "beta", v: "2.0.1")
VERSION = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=10_000).map(str),
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False).map(str),
    st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=8),
)


@given(NAME, NAME, VERSION)
def test_a_key_reads_back_as_what_wrote_it(project: str, model: str, version: str | None) -> None:
    key = product_key(project, model, version)
    assert split_product_key(key) == (project, model, version)
    assert split_key(key) == (project, model, version)  # what `mesh sync` and `mesh status` read


def test_a_version_with_a_dot_is_one_version() -> None:
    """The finding: `sales.fct_orders.v1.5` was read as the unversioned model 'fct_orders.v1.5', so a consumer
    behind on it was never seen."""
    assert split_key("sales.fct_orders.v1.5") == ("sales", "fct_orders", "1.5")
    assert split_key("sales.fct_orders.v2") == ("sales", "fct_orders", "2")
    assert split_key("customers.dim_customers") == ("customers", "dim_customers", None)
