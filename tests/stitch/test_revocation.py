"""Revocation on DuckDB: a consumer that may no longer read a product loses its stub and its view.

The consumer's database kept the old stub view after its producer restricted the product or after it
dropped the dependency, and that view went on returning the old release's rows. Now the mesh drops the
views it stitched and no longer may (stitch/revoke.py), and nothing the domain's team made itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from mesh_tools.core.mesh import load_mesh
from tests.helpers import run_mesh

pytestmark = pytest.mark.slow

STUBS = {("upstream_shop", "orders_v1"), ("upstream_shop", "orders_v2")}


def views(database: Path) -> set[tuple[str, str]]:
    with duckdb.connect(str(database), read_only=True) as con:
        return set(con.execute("select schema_name, view_name from duckdb_views() where not internal").fetchall())


def tables(database: Path) -> set[tuple[str, str]]:
    with duckdb.connect(str(database), read_only=True) as con:
        return set(con.execute("select schema_name, table_name from duckdb_tables() where not internal").fetchall())


def test_a_consumer_that_drops_its_dependency_loses_the_stub_views_the_mesh_made_and_only_those(
    plain_mesh_copy: Path,
) -> None:
    root = plain_mesh_copy
    database = root / "reporting/reporting.duckdb"
    assert STUBS <= views(database)
    with duckdb.connect(str(database)) as con:  # the team's own objects in the stub schema: never the mesh's to drop
        con.execute("create view upstream_shop.by_hand as select 1 as x")
        con.execute("create table upstream_shop.orders_copy as select 1 as x")
    (root / "reporting/dependencies.yml").write_text("projects: []\n")
    (root / "reporting/models/schema.yml").unlink()  # its unit test mocked ref('shop', 'orders')
    (root / "reporting/models/legacy_orders.sql").write_text("select 1 as order_id, 'completed' as status\n")
    (root / "reporting/models/order_summary.sql").write_text("select 'completed' as status, 1 as orders\n")
    holder = duckdb.connect(str(database))  # another process holds the database: nothing can be dropped now
    try:
        locked = run_mesh("stitch", "reporting", cwd=root)
    finally:
        holder.close()
    assert locked.returncode == 1, locked.stdout + locked.stderr
    assert "reporting may no longer read upstream_shop.orders_v1, upstream_shop.orders_v2, and their views in" in (
        locked.stdout
    )
    assert "could not be dropped" in locked.stdout and "Traceback" not in locked.stderr
    assert STUBS <= views(database)  # still there: recorded, and dropped at the next stitch
    built = run_mesh("build", "reporting", cwd=root)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "dropped the stub views upstream_shop.orders_v1, upstream_shop.orders_v2: it may no longer read" in (
        built.stdout
    )
    assert views(database) == {("main", "legacy_orders"), ("main", "order_summary"), ("upstream_shop", "by_hand")}
    assert ("upstream_shop", "orders_copy") in tables(database)
    assert not (root / "reporting/dbt_packages/shop").exists()


def test_a_product_its_producer_restricts_loses_its_stub_and_view_even_while_the_consumer_refs_it(
    plain_mesh_copy: Path,
) -> None:
    root = plain_mesh_copy
    schema = root / "shop/models/schema.yml"
    original = schema.read_text()
    policy = "meta: {data_product: true, pii_allowed_consumers: [audit]}"
    assert policy in original
    schema.write_text(original.replace(policy, policy[:-1] + ", allowed_consumers: [audit]}"))
    stitched = run_mesh("stitch", "shop", "reporting", cwd=root)
    assert stitched.returncode == 1, stitched.stdout + stitched.stderr
    assert "shop shares 'orders v1' only with audit (meta.allowed_consumers), so reporting may not read it" in (
        stitched.stdout
    )
    assert "dropped the stub views upstream_shop.orders_v1, upstream_shop.orders_v2" in stitched.stdout
    assert not views(root / "reporting/reporting.duckdb") & STUBS
    # its stub is gone too, though the stitch stopped on a problem: a hand `dbt build` cannot make the views again
    assert not (root / "reporting/dbt_packages/shop").exists()
    # audit, which the policy names, keeps both
    assert STUBS <= views(root / "audit/audit.duckdb") and (root / "audit/dbt_packages/shop").is_dir()
    # access given back: the stub is the consumer's again, and nothing is left to drop
    schema.write_text(original)
    restored = run_mesh("stitch", "shop", "reporting", cwd=root)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert (root / "reporting/dbt_packages/shop").is_dir()
    from mesh_tools.stitch.revoke import load_ledger

    domain = load_mesh(root).domains["reporting"]
    ledger = load_ledger(domain)
    assert ledger.stitched == STUBS and ledger.retired == {}


def test_the_ledger_retires_what_is_no_longer_allowed_and_learns_from_the_installed_stubs(
    plain_mesh_copy: Path,
) -> None:
    """Without dbt: what a stitch records before it changes any stub."""
    from mesh_tools.stitch.revoke import LEDGER, installed_relations, load_ledger, record, retire

    domain = load_mesh(plain_mesh_copy).domains["reporting"]
    path = domain.target_dir / LEDGER
    assert json.loads(path.read_text())["stitched"] == sorted(map(list, STUBS))
    path.write_text("{not json")  # a lost or broken ledger: the installed stubs say what was stitched
    assert installed_relations(domain) == STUBS
    v1, v2 = sorted(STUBS)
    ledger = retire(domain, {v2})
    assert ledger.stitched == {v2} and ledger.retired == {v1: set()}
    assert load_ledger(domain).retired == {v1: set()}  # written before anything else changes
    assert ledger.pending("dev.duckdb") == [v1]
    ledger.retired[v1].add("dev.duckdb")
    assert ledger.pending("dev.duckdb") == [] and ledger.pending("prod.duckdb") == [v1]
    again = retire(domain, STUBS)  # allowed again: nothing of it is dropped any more
    assert again.retired == {} and again.stitched == STUBS
    # a first stitch that stops on a problem records nothing; one that installs stubs records them first
    shutil.rmtree(domain.packages_dir / "shop")
    path.unlink()
    fresh = retire(domain, STUBS)
    assert fresh.stitched == set() and fresh.retired == {} and not path.exists()
    record(domain, fresh, STUBS)
    assert load_ledger(domain).stitched == STUBS
