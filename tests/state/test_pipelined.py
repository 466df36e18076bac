"""Pipelined domains (issue 33): a producer that would leave a core idle while its readers wait builds and
publishes its data products first (stage 1) and the rest of its models beside its readers (stage 2).

The state_mesh's shop gets a tail of four private models that no product reads, so its products and what they
read are half of it. A state-aware build after new landing rows pipelines shop; its products must equal a
`--no-state` build of the same code and data, and a failure in shop's tail leaves its reader built (it reads
only products, which passed), while a failing product skips the reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mesh_tools.core.mesh import load_mesh
from mesh_tools.workflows.stages import PIPELINE_MIN_TAIL, products_first
from tests.helpers import copy_fixture, mesh_env, run_command, run_mesh
from tests.state.test_state_aware import product_rows

TAIL = [f"tail_{n}" for n in range(4)]


def _with_tail(root: Path, more: int = 0) -> Path:
    for name in TAIL + [f"tail_{n}" for n in range(len(TAIL), len(TAIL) + more)]:
        (root / "shop/models" / f"{name}.sql").write_text("select order_id, amount from {{ ref('stg_orders') }}\n")
    # a tail model that fails on order 5 (its code unchanged: the manifest stays current, so the build is split)
    (root / "shop/models/tail_0.sql").write_text(
        "select order_id, cast(case when order_id = 5 then 'x' else '1' end as integer) as one\n"
        "from {{ ref('stg_orders') }}\n"
    )
    return root


def _new_order(root: Path, order_id: int) -> None:
    with open(root / "shop/landing/orders.csv", "a") as landing:
        landing.write(f"{order_id},12,20.00,2026-11-05 08:00:00\n")


def _build(root: Path, *args: str) -> str:
    # the fixture's tail takes milliseconds: below the default threshold no build would be split
    done = run_command(["mesh", "build", "--jobs", "2", *args], root, {**mesh_env(), PIPELINE_MIN_TAIL: "0"})
    return done.stdout + done.stderr


def _at(output: str, line: str) -> float:
    found = re.search(r"^\[\s*([\d.]+)s\] " + re.escape(line), output, re.M)
    assert found, (line, output[-3000:])
    return float(found.group(1))


def test_a_pipelined_build_publishes_products_first_and_equals_a_full_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PIPELINE_MIN_TAIL, "0")
    a = _with_tail(copy_fixture("state_mesh", tmp_path / "a"))
    b = _with_tail(copy_fixture("state_mesh", tmp_path / "b"))
    first = _build(a)
    assert "2 of 2 domains succeeded" in first and "stage 1 of 2" not in first, first  # no manifest yet: one run

    # the split, from shop's manifest: products and what they read first, the tail after (pure Python)
    stages = products_first(load_mesh(a), "shop")
    assert stages is not None
    (head, head_slice), (tail, tail_slice) = stages
    assert sorted(uid.split(".")[-1] for uid in head.nodes) == ["orders", "refunds", "stg_orders", "stg_refunds"]
    assert sorted(uid.split(".")[-1] for uid in tail.nodes) == TAIL
    assert head_slice.later == tail.nodes and tail_slice.final and not head.final

    for root, order in ((a, 4), (b, 4)):
        _new_order(root, order)
    out = _build(a, "--explain")
    assert "shop (stage 1 of 2: its data products): started" in out, out
    # report reads shop's products: it starts as soon as stage 1 published them, beside shop's tail
    assert _at(out, "report: started") < _at(out, "shop (stage 2 of 2): ok")
    assert "2 of 2 domains succeeded" in out, out
    full = _build(b, "--no-state")
    assert "2 of 2 domains succeeded" in full, full
    assert product_rows(a) == product_rows(b)

    # a failure in the tail fails shop, not its reader, which read only products that passed their tests
    _new_order(a, 5)
    out = _build(a)
    assert re.search(r"shop\s+failed", out) and re.search(r"report\s+success", out), out
    assert _at(out, "report: started") < _at(out, "shop (stage 2 of 2): FAILED")

    # a failing product (a duplicate order id) fails stage 1: nothing published, its reader skipped
    before = product_rows(a)
    _new_order(a, 5)
    out = _build(a)
    assert "shop (stage 1 of 2): FAILED" in out and "report: skipped (upstream shop did not succeed)" in out, out
    assert "shop (stage 2 of 2" not in out
    assert product_rows(a) == before


def test_a_test_across_the_split_moves_what_it_reads_into_the_first_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relationships test from a product to a tail model: the tail model (and what it reads) go first, so the
    publish gate sees every test of the product in the stage that publishes it. Pure Python on a parsed mesh.
    A tail whose last run took less than MESH_PIPELINE_MIN_TAIL_SECONDS (default 3; never run: 0 s) is not
    worth a second dbt invocation: no split."""
    root = _with_tail(copy_fixture("state_mesh", tmp_path), more=2)  # products and what they read: half of shop
    schema = root / "shop/models/schema.yml"
    schema.write_text(schema.read_text().replace(
        "        data_tests: [unique, not_null]\n",
        "        data_tests:\n          - unique\n          - not_null\n"
        "          - relationships: {arguments: {to: ref('tail_0'), field: order_id}}\n", 1))  # fmt: skip
    assert run_mesh("stitch", cwd=root).returncode == 0
    monkeypatch.delenv(PIPELINE_MIN_TAIL, raising=False)
    assert products_first(load_mesh(root), "shop") is None  # the tail never ran: nothing to gain
    monkeypatch.setenv(PIPELINE_MIN_TAIL, "0")
    stages = products_first(load_mesh(root), "shop")
    assert stages is not None
    (head, _), (tail, _) = stages
    assert "model.shop.tail_0" in head.nodes and "model.shop.tail_0" not in tail.nodes
    assert sorted(uid.split(".")[-1] for uid in tail.nodes) == ["tail_1", "tail_2", "tail_3", "tail_4", "tail_5"]
