"""The tutorial (docs/tutorial.md), followed as written in an empty folder: it must end with two domains built and
the consumer reading the producer's release, and print what the page shows."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import duckdb
import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow


def _tutorial_script():
    spec = importlib.util.spec_from_file_location("tutorial_script", REPO / "scripts" / "tutorial.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_tutorial_builds_two_domains_that_exchange_a_product(tmp_path: Path) -> None:
    tutorial = _tutorial_script()
    page = (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
    kinds = [b.kind for b in tutorial.blocks(page)]
    assert kinds.count("run") >= 8 and kinds.count("file") >= 4 and kinds.count("output") >= 8  # the page's marks

    followed = tutorial.follow(page, tmp_path)  # fails naming the page line of a command that exits unexpectedly
    stale = tutorial.differences(page, followed)
    assert stale == [], "the page's output is stale: run `python scripts/tutorial.py`\n" + "\n".join(stale)

    root = followed.root
    current = root / "exchange" / "products" / "orders" / "fct_orders" / "unversioned"
    release = json.loads((current / "current.json").read_text())["release_id"]
    receipt = json.loads((root / "exchange" / "receipts" / "billing.json").read_text())
    assert receipt["releases"]["orders.fct_orders"] == release  # billing read the producer's current release
    assert receipt["used"] == ["orders.fct_orders"]
    # the release the gate kept current is the one before the breaking change: it still has `customer`
    descriptor = json.loads((current / "releases" / release / "release.json").read_text())
    assert [c["name"] for c in descriptor["contract"]["columns"]] == ["order_id", "customer", "ordered_at", "amount"]
    with duckdb.connect(str(root / "projects" / "billing" / "billing.duckdb"), read_only=True) as db:
        rows = db.sql("select customer, orders, total from main_marts.monthly_invoices order by customer").fetchall()
    assert [(c, n, float(t)) for c, n, t in rows] == [("alice", 2, 162.0), ("bob", 1, 80.5), ("carol", 1, 99.9)]
