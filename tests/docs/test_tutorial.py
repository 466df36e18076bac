"""The tutorial (docs/tutorial.md), followed as written in an empty folder: it must end with two domains built and
the consumer reading the producer's release, and print what the page shows."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import duckdb
import pytest

from tests.helpers import REPO, run_command

pytestmark = [pytest.mark.slow, pytest.mark.docs_lane]


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

    def forked(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
        # `mesh` and `dbt` forked from the tests' warm interpreter (the subprocess lane's tests start new ones)
        done = run_command(argv, cwd, env, merge=True)
        return done.returncode, done.stdout

    # fails naming the page line of a command that exits unexpectedly
    followed = tutorial.follow(page, tmp_path, runner=forked)
    stale = tutorial.differences(page, followed)
    assert stale == [], "the page's output is stale: run `python scripts/tutorial.py`\n" + "\n".join(stale)

    root = followed.root
    products = root / "exchange" / "products" / "orders" / "fct_orders"

    def current(version: str) -> dict:
        release = json.loads((products / version / "current.json").read_text())["release_id"]
        return json.loads((products / version / "releases" / release / "release.json").read_text())

    v1, v2 = current("v1"), current("v2")
    receipt = json.loads((root / "exchange" / "receipts" / "billing.json").read_text())
    assert receipt["releases"]["orders.fct_orders.v1"] == v1["release_id"]  # billing read the current release
    assert receipt["used"] == ["orders.fct_orders.v1"]  # an unpinned ref reads latest_version: 1
    # version 1 kept the released shape (the gate refused the rename as an unversioned change), version 2 has it
    assert sorted(c["name"] for c in v1["contract"]["columns"]) == ["amount", "customer", "order_id", "ordered_at"]
    assert sorted(c["name"] for c in v2["contract"]["columns"]) == ["amount", "customer_name", "order_id", "ordered_at"]
    refused = json.loads((products / "unversioned" / "current.json").read_text())["release_id"]
    before = json.loads((products / "unversioned" / "releases" / refused / "release.json").read_text())
    assert "customer" in [c["name"] for c in before["contract"]["columns"]]  # what stayed current after the refusal
    with duckdb.connect(str(root / "projects" / "billing" / "billing.duckdb"), read_only=True) as db:
        rows = db.sql("select customer, orders, total from main_marts.monthly_invoices order by customer").fetchall()
    assert [(c, n, float(t)) for c, n, t in rows] == [("alice", 2, 162.0), ("bob", 1, 80.5), ("carol", 1, 99.9)]
