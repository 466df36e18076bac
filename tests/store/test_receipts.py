"""Receipts and leases hold each product's key structured (domain, model, version as fields), so `mesh sync` and
`mesh status` parse no dotted key back; one written by the previous version (dotted keys only) reads the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh_tools.core.errors import ArtifactError
from mesh_tools.model.nodes import ProductKey
from mesh_tools.store.exchange import Exchange
from mesh_tools.store.receipts import Receipt, every_hold, read_lease, read_receipt, write_lease, write_receipt

V15, ORDERS, CUSTOMERS = "sales.fct_orders.v1.5", "sales.fct_orders.v2", "crm.dim_customers"
READ = {V15: "r-1", ORDERS: "r-2", CUSTOMERS: "r-3"}
EXPECTED = Receipt(
    "reporting",
    releases={
        ProductKey("sales", "fct_orders", "1.5"): "r-1",
        ProductKey("sales", "fct_orders", "2"): "r-2",
        ProductKey("crm", "dim_customers"): "r-3",
    },  # fmt: skip
    channels={ProductKey("sales", "fct_orders", "1.5"): "dev", ProductKey("crm", "dim_customers"): "prod"},
    used=[ProductKey("crm", "dim_customers"), ProductKey("sales", "fct_orders", "1.5")],
)


def test_a_receipt_holds_its_keys_structured_and_reads_back(tmp_path: Path) -> None:
    exchange = Exchange(tmp_path / "exchange")
    write_lease(exchange, "reporting", READ, {V15: "dev", CUSTOMERS: "prod"})
    write_receipt(exchange, "reporting", READ, [V15, CUSTOMERS], "inv-1")
    data = json.loads((tmp_path / "exchange/receipts/reporting.json").read_text())
    assert data["holder_version"] == 2
    assert data["reads"] == [
        {"domain": "crm", "model": "dim_customers", "version": None, "release_id": "r-3", "channel": "prod"},
        {"domain": "sales", "model": "fct_orders", "version": "1.5", "release_id": "r-1", "channel": "dev"},
        {"domain": "sales", "model": "fct_orders", "version": "2", "release_id": "r-2"},
    ]
    assert data["used_products"] == [{"domain": "crm", "model": "dim_customers", "version": None},
                                     {"domain": "sales", "model": "fct_orders", "version": "1.5"}]  # fmt: skip
    assert data["releases"] == READ and data["used"] == sorted([V15, CUSTOMERS])  # what the previous version reads
    assert read_receipt(exchange, "reporting") == EXPECTED
    lease = json.loads((tmp_path / "exchange/leases/reporting.json").read_text())
    assert [r["version"] for r in lease["reads"]] == [None, "1.5", "2"]
    assert read_lease(exchange, "reporting") == READ
    assert every_hold(exchange) == set(READ.items())


def test_a_receipt_or_lease_of_the_previous_version_reads_the_same(tmp_path: Path) -> None:
    """As the previous version wrote them: dotted keys in ``releases``, ``channels`` and ``used``, no ``reads``."""
    exchange = Exchange(tmp_path / "exchange")
    old = {"consumer": "reporting", "env": "prod", "built_at": "2026-12-01T00:00:00+00:00", "invocation_id": "i",
           "releases": READ, "channels": {V15: "dev", CUSTOMERS: "prod"}, "used": [CUSTOMERS, V15]}  # fmt: skip
    exchange.backend.write(exchange.receipt_key("reporting"), json.dumps(old).encode())
    assert read_receipt(exchange, "reporting") == EXPECTED
    exchange.backend.write(exchange.lease_key("reporting"), json.dumps({"releases": READ}).encode())
    assert read_lease(exchange, "reporting") == READ
    # an older receipt still, without ``used``: every product it read counts as used
    exchange.backend.write(exchange.receipt_key("reporting"), json.dumps({"releases": {V15: "r-1"}}).encode())
    assert read_receipt(exchange, "reporting") == Receipt(
        "reporting", {ProductKey("sales", "fct_orders", "1.5"): "r-1"}, {}, [ProductKey("sales", "fct_orders", "1.5")]
    )
    assert read_receipt(exchange, "nobody") is None


@pytest.mark.parametrize(
    ("reads", "said"),
    [
        ({"reads": {"x": 1}}, "'reads' is not a list of products"),
        ({"reads": [{"domain": "sales", "model": 5, "release_id": "r"}]}, "an entry of 'reads' is no product"),
        ({"reads": [], "used_products": "all"}, "'used_products' is not a list of products"),
    ],
)
def test_a_corrupt_receipt_is_one_error_naming_it(tmp_path: Path, reads: dict[str, object], said: str) -> None:
    exchange = Exchange(tmp_path / "exchange")
    exchange.backend.write(exchange.receipt_key("reporting"), json.dumps({"releases": {}, **reads}).encode())
    with pytest.raises(ArtifactError) as refused:
        read_receipt(exchange, "reporting")
    message = str(refused.value)
    assert f"receipts/reporting.json: receipt is corrupt ({said}" in message
    assert message.endswith("). Rebuild reporting.")
