"""Privacy policy, without dbt: who may read a product, and which columns leave a domain masked.

Each test plants the mistake a careless producer makes (a policy written as a string or with no value,
a PII column named in another case than the model makes it) and proves the mesh fails closed.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mesh_tools.exchange.access import readers_of
from mesh_tools.exchange.publish import CLEAR_FILE, mask_pii
from mesh_tools.governance.testing import MeshSpec, check_fails, check_passes
from mesh_tools.model.nodes import Node
from mesh_tools.model.release import ReleaseColumn


def _node(meta: dict) -> Node:
    return Node("model.shop.orders", {"name": "orders", "package_name": "shop", "access": "public", "meta": meta})


@pytest.mark.parametrize(
    ("meta", "finance_reads", "marketing_reads"),
    [
        ({}, True, True),  # no policy: every domain that declares shop
        ({"allowed_consumers": ["finance"]}, True, False),
        ({"allowed_consumers": []}, False, False),  # an empty list: nobody, never everybody
        ({"allowed_consumers": "finance"}, False, False),  # a string is no list: nobody, and GOV402 says so
        ({"allowed_consumers": None}, False, False),  # `allowed_consumers:` written with no value
        ({"allowed_consumers": [{"name": "finance"}]}, False, False),  # a list of something else
    ],
)
def test_a_restriction_written_wrong_lets_no_one_read_never_everyone(
    meta: dict, finance_reads: bool, marketing_reads: bool
) -> None:
    node = _node(meta)
    assert node.readable_by("finance") is finance_reads
    assert node.readable_by("marketing") is marketing_reads
    spec = MeshSpec()
    spec.domain("shop").product("orders", meta=meta)
    spec.domain("finance", upstreams=["shop"])
    spec.domain("marketing", upstreams=["shop"])
    readers = readers_of(spec.mesh(), "shop", node)  # what the warehouse grants and the stitch offers
    assert readers.consumers == tuple(d for d, ok in (("finance", finance_reads), ("marketing", marketing_reads)) if ok)
    # the consumer's stub offers only what it may read
    manifest = spec.domains["shop"].manifest()
    offered = {n.name for n in manifest.for_consumer("marketing").public()}
    assert offered == ({"orders"} if marketing_reads else set())


def test_a_restriction_written_wrong_is_a_governance_finding() -> None:
    spec = MeshSpec()
    shop = spec.domain("shop")
    shop.product("orders", meta={"allowed_consumers": "finance"})
    shop.product("refunds", meta={"allowed_consumers": None})
    shop.product("stock", meta={"allowed_consumers": ["finance"]})
    shop.product("customers", columns={"id": "integer", "email": {"data_type": "text", "pii": True}},
                 meta={"pii_allowed_consumers": "finance"})  # fmt: skip
    spec.domain("finance", upstreams=["shop"]).model("x", refs=["shop.stock"])
    findings = [f.message for f in check_fails(spec, "GOV402")]
    assert findings == [
        "public model 'orders': meta.allowed_consumers is a str ('finance'), not a list, so no other domain may "
        "read it (it fails closed). Write a list of domain names: [finance, marketing]",
        "public model 'refunds': meta.allowed_consumers is written with no value, so no other domain may read it "
        "(it fails closed). Write a list of domain names: [finance, marketing]",
    ]
    pii = [f.message for f in check_fails(spec, "GOV401")]
    assert pii == [
        "public model 'customers': meta.pii_allowed_consumers is a str ('finance'), not a list, so no domain reads "
        "its PII (email) in clear. Write a list of domain names: [marketing] (or [] for none)"
    ]
    fixed = MeshSpec()
    fixed.domain("shop").product("orders", meta={"allowed_consumers": ["finance"]})
    fixed.domain("finance", upstreams=["shop"]).model("x", refs=["shop.orders"])
    check_passes(fixed, "GOV402")


def _release(path: Path, columns: dict[str, str]) -> list[ReleaseColumn]:
    con = duckdb.connect()
    select = ", ".join(f'{value} as "{name}"' for name, value in columns.items())
    con.execute(f"copy (select {select} from range(3)) to '{path}' (format parquet)")
    described = con.execute(f"describe select * from read_parquet('{path}')").fetchall()
    con.close()
    return [ReleaseColumn(name=n, type=t, parquet_type=t) for n, t, *_ in described]


def _values(path: Path, column: str) -> list[object]:
    con = duckdb.connect()
    try:
        return [r[0] for r in con.execute(f"select \"{column}\" from read_parquet('{path}')").fetchall()]
    finally:
        con.close()


@pytest.mark.parametrize("declared", ["EMAIL", "Email", "email"])
def test_pii_columns_are_masked_whatever_the_case_they_are_declared_in(tmp_path: Path, declared: str) -> None:
    """The properties may say `EMAIL` for the column `Email` the model makes: it is masked all the same,
    and its clear copy kept only for the readers the policy names."""
    data = tmp_path / "data.parquet"
    columns = _release(data, {"id": "range", "Email": "'a' || range || '@example.com'"})
    assert mask_pii(data, columns, [declared], ["marketing"]) == ["Email"]
    assert _values(data, "Email") == [None, None, None]
    assert _values(data, "id") == [0, 1, 2]
    assert _values(data.with_name(CLEAR_FILE), "Email") == ["a0@example.com", "a1@example.com", "a2@example.com"]
    # with no reader, nothing in clear is kept at all
    (tmp_path / "again").mkdir()
    again = tmp_path / "again" / "data.parquet"
    columns = _release(again, {"id": "range", "Email": "'a' || range || '@example.com'"})
    assert mask_pii(again, columns, [declared.swapcase()], []) == ["Email"]
    assert _values(again, "Email") == [None, None, None]
    assert not again.with_name(CLEAR_FILE).exists()


def test_a_producer_never_grants_to_its_own_role_or_a_superuser() -> None:
    """Roles are compared without case: `Sales` is the producer's `sales` to a person, and refused."""
    from mesh_tools.exchange.access import consumer_roles

    roles = {"sales": "sales", "finance": "Sales", "marketing": "marketing", "ops": "postgres"}
    accepted = consumer_roles("sales", roles, superusers=frozenset({"postgres"}))
    assert dict(accepted) == {"marketing": "marketing"}
    assert set(accepted.refused) == {"finance", "ops"}
    assert "names the role 'Sales', sales's own role" in accepted.refused["finance"]
    assert "names the role 'postgres', a superuser" in accepted.refused["ops"]
