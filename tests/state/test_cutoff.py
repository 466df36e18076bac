"""Early cutoff in real builds of the state_mesh fixture (shop publishes orders and refunds, report reads both): a
product rebuilt with the same rows confirms its current release and its reader runs nothing; new rows, an
undeclared always-changing column or `--new-release` make a new release."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import copy_fixture, mesh_env, run_command

STAMP = "cast(current_timestamp as varchar) as _stamp"  # a run fact: different in every build


def _mesh(root: Path, *args: str) -> str:
    done = run_command(["mesh", *args], root, mesh_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _current(root: Path, model: str = "orders") -> str:
    return json.loads((root / f"exchange/products/shop/{model}/unversioned/current.json").read_text())["release_id"]


def _line(output: str, domain: str) -> str:
    return next((x for x in output.splitlines() if x.startswith(f"{domain}: ")), "")


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_a_rebuild_with_the_same_rows_confirms_the_release_and_its_reader_runs_nothing(tmp_path: Path) -> None:
    root = copy_fixture("state_mesh", tmp_path)
    orders, refunds, schema = (root / "shop/models" / n for n in ("orders.sql", "refunds.sql", "schema.yml"))
    orders.write_text(orders.read_text().replace(" as amount_cents\n", f" as amount_cents, {STAMP}\n"))
    refunds.write_text(refunds.read_text().replace("amount\n", f"amount, {STAMP}\n"))
    # orders declares its run-fact column; refunds does not (its _stamp is rows that change in every build)
    schema.write_text(schema.read_text().replace(
        "    config: {access: public}\n    columns:\n      - name: order_id",
        "    config: {access: public, meta: {audit_columns: [_stamp]}}\n    columns:\n      - name: order_id", 1))  # fmt: skip
    _mesh(root, "build")
    first, refunds_first = _current(root), _current(root, "refunds")

    # a comment in both: orders reruns with the same rows but _stamp: confirmed, its reader revenue runs nothing;
    # refunds' undeclared _stamp changed: a new release, and refund_totals rebuilds on it
    _append(orders, "-- a comment\n")
    _append(refunds, "-- a comment\n")
    out = _mesh(root, "build", "--explain")
    assert _current(root) == first, out
    assert _current(root, "refunds") != refunds_first, out
    assert "    shop.orders: its code changed" in out, out
    assert "    shop.orders: rows unchanged: readers reused (its current release confirmed)" in out, out
    # refund_totals (a count and a sum) rebuilt on refunds' new release has the same rows: confirmed in turn
    assert "    report.refund_totals: rows unchanged: readers reused (its current release confirmed)" in out, out
    assert "2 products rebuilt with unchanged rows: current release confirmed, readers reused" in out, out
    assert _line(out, "report").startswith("report: ran 1 of 2 models"), out
    assert "report.refund_totals: upstream shop.refunds ran" in out and "report.revenue" not in out, out
    folder = root / "exchange/products/shop/orders/unversioned"
    record = json.loads((folder / "confirmed/prod.json").read_text())
    descriptor = json.loads((folder / f"releases/{first}/release.json").read_text())
    assert record["release_id"] == first and record["confirmed_at"] > descriptor["produced_at"]
    assert descriptor["audit_columns"] == ["_stamp"] and descriptor["content_hash"].startswith("sum2x64-duckdb-")
    assert len(list((folder / "releases").iterdir())) == 1  # nothing of the confirmed rebuild was kept
    log = [json.loads(x) for x in (root / "exchange/log.jsonl").read_text().splitlines()]
    assert [(e["event"], e["release_id"]) for e in log if e.get("product") == "shop.orders"][-1] == ("confirm", first)
    assert "nothing changed" in _line(_mesh(root, "build", "--explain"), "shop")  # the confirmation vouches
    assert "every consumer is up to date" in _mesh(root, "sync")
    assert "confirmed at " + record["confirmed_at"] in _mesh(root, "status")

    # new rows: a new release, and revenue rebuilds on it
    orders.write_text(orders.read_text() + "where order_id <> 1\n")
    out = _mesh(root, "build", "--explain")
    second = _current(root)
    assert second != first, out
    assert "report.revenue: upstream shop.orders ran" in out, out

    # --new-release: a release although nothing changed
    out = _mesh(root, "publish", "shop", "--new-release")
    assert _current(root) != second and "published shop.orders" in out, out
