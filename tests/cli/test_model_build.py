"""`mesh build -s shop.orders.v1+`: a model and everything downstream of it, across domains, and only those;
the product it rebuilt is published, the other keeps its release, and the result is what a full build gives."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from tests.helpers import run_mesh


def results(root: Path, domain: str) -> list[str]:
    data = json.loads((root / domain / "target/run_results.json").read_text())
    return sorted(r["unique_id"] for r in data["results"] if r["unique_id"].split(".")[0] in ("model", "seed"))


def releases(root: Path) -> dict[str, tuple[str, int]]:
    status = run_mesh("status", "--format", "json", "-s", "shop", cwd=root)
    assert status.returncode == 0, status.stderr
    return {
        r["product"]: (r["release_id"], r["rows"]) for r in json.loads(status.stdout)["domains"][0]["current_releases"]
    }


def rows(root: Path, domain: str, table: str) -> list[tuple]:
    with duckdb.connect(str(root / domain / f"{domain}.duckdb"), read_only=True) as con:
        return con.execute(f"select * from {table} order by all").fetchall()


def test_a_model_and_its_downstream_across_domains(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    before = releases(root)
    untouched = {d: (root / d / "target/run_results.json").stat().st_mtime_ns for d in ("audit", "billing", "hr")}
    orders_v1 = root / "shop/models/orders_v1.sql"
    orders_v1.write_text(orders_v1.read_text().replace("(3, 11, 'completed')", "(3, 11, 'completed'), (4, 12, 'new')"))

    built = run_mesh("build", "-s", "shop.orders.v1+", "--format", "json", cwd=root)
    assert built.returncode == 0, built.stdout + built.stderr
    document = json.loads(built.stdout)  # the progress went to stderr
    assert "shop: started" in built.stderr and document["schema"] == "mesh-build/1" and document["ok"]
    runs = {d["domain"]: d for d in document["domains"]}
    assert list(runs) == ["shop", "reporting"]  # audit and billing read orders v2 only; hr reads nothing of shop
    assert runs["shop"]["selected"] == ["model.shop.orders.v1"]
    assert runs["reporting"]["selected"] == ["model.reporting.legacy_orders"]
    # exactly those ran (reporting also refreshed its stub of the product, which points at the new release)
    assert results(root, "shop") == ["model.shop.orders.v1"]
    assert results(root, "reporting") == ["model.reporting.legacy_orders", "model.shop.orders.v1"]
    assert {d: (root / d / "target/run_results.json").stat().st_mtime_ns for d in untouched} == untouched
    # the product it rebuilt is published; the one it did not keeps its release
    assert [(p["product"], p["rows"]) for p in runs["shop"]["published"]] == [("shop.orders.v1", 4)]
    after = releases(root)
    assert after["shop.orders.v2"] == before["shop.orders.v2"] and after["shop.orders.v1"] != before["shop.orders.v1"]
    selective = rows(root, "reporting", "legacy_orders")
    assert (4, "new") in selective

    full = run_mesh("build", "--no-state", "shop", "reporting", cwd=root)
    assert full.returncode == 0, full.stdout + full.stderr
    assert rows(root, "reporting", "legacy_orders") == selective
    assert releases(root)["shop.orders.v1"][1] == after["shop.orders.v1"][1] == 4
