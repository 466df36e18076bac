"""The demo mesh on a shared PostgreSQL warehouse: a real server on loopback, a login role per domain.

One throwaway cluster for the session (tests/pgserver.py), set up with the SQL `mesh grants
--bootstrap` prints. The mesh is built on DuckDB, then on `--target postgres`: every model's
rows must match. Then each domain's role tries, through its own connection, to read what the
policy forbids, and the server must refuse.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from mesh_tools.dbt.engines.postgres import long_names, release_table
from tests import pgserver
from tests.dbt.engines.postgres.warehouse import DOMAINS, PASSWORDS, as_role, current
from tests.helpers import Built, copy_demo, copy_tree, mesh_env, run_mesh

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _canonical(value: object) -> object:
    if isinstance(value, decimal.Decimal | float):
        return f"{decimal.Decimal(str(value)):.6f}"
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def rows_digest(rows: list[tuple], columns: list[str]) -> tuple[int, str]:
    """Row count and an order-free hash of the rows (audit columns, which name the build, left out)."""
    keep = [i for i, c in enumerate(columns) if c not in ("_built_at", "_invocation_id")]
    canonical = sorted(json.dumps([_canonical(r[i]) for i in keep], default=str) for r in rows)
    return len(canonical), hashlib.sha256("\n".join(canonical).encode()).hexdigest()


def duckdb_models(root: Path, domain: str) -> dict[str, tuple[int, str]]:
    out = {}
    with duckdb.connect(str(root / "projects" / domain / f"{domain}.duckdb"), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('staging', 'intermediate', 'marts', 'reference') and table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            cur = con.execute(f'select * from "{schema}"."{table}"')
            out[f"{schema}.{table}"] = rows_digest(cur.fetchall(), [d[0] for d in cur.description])
    return out


def postgres_models(pg: pgserver.Server, domain: str) -> dict[str, tuple[int, str]]:
    out = {}
    con = pg.connect(dbname="mesh")
    try:
        with con.cursor() as cur:
            cur.execute(
                "select table_schema, table_name from information_schema.tables where table_schema in %s "
                "and table_type = 'BASE TABLE'",
                (tuple(f"{domain}_{s}" for s in ("staging", "intermediate", "marts", "reference")),),
            )
            for schema, table in cur.fetchall():
                cur.execute(f'select * from "{schema}"."{table}"')
                name = f"{schema.removeprefix(domain + '_')}.{table}"
                out[name] = rows_digest(cur.fetchall(), [d[0] for d in cur.description])
    finally:
        con.close()
    return out


def test_the_demo_builds_on_postgres_with_the_same_rows_as_on_duckdb(pg_mesh: Built, pg: pgserver.Server) -> None:
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    assert "mesh build: 4 of 4 domains succeeded" in pg_mesh.output
    compared = 0
    for domain in DOMAINS:
        on_duckdb, on_postgres = duckdb_models(pg_mesh.root, domain), postgres_models(pg, domain)
        assert on_duckdb, domain
        assert on_postgres == on_duckdb, domain
        compared += len(on_duckdb)
    assert compared >= 12  # every table of every domain (views read the tables)
    # releases live in the warehouse: the descriptor names the table, and it holds what the build made
    release = current(pg_mesh.root, "sales.fct_orders.v2")
    assert release["format"] == "table" and release["files"] == [] and release["engine"] == "postgres"
    where = release["warehouse"]
    con = pg.connect(dbname="mesh")
    with con.cursor() as cur:
        cur.execute(f'select count(*) from "{where["releases_schema"]}"."{where["table"]}"')
        assert cur.fetchone()[0] == release["row_count"] > 0
        cur.execute(f'select count(*) from "{where["products_schema"]}"."{where["pointer"]}"')
        assert cur.fetchone()[0] == release["row_count"]
    con.close()
    # its data contract (ODCS) names the release table on the warehouse; the reader brings credentials
    import yaml

    from mesh_tools.model import odcs

    folder = pg_mesh.root / "exchange/products/sales/fct_orders/v2/releases" / release["release_id"]
    contract = yaml.safe_load((folder / odcs.CONTRACT_FILE).read_text())
    assert odcs.schema_problems(contract) == []
    (server,) = contract["servers"]
    assert server == {"server": "warehouse", "type": "postgres", "host": pg.host, "port": pg.port,
                      "database": "mesh", "schema": where["releases_schema"]}  # fmt: skip
    assert contract["schema"][0]["physicalName"] == f"{where['releases_schema']}.{where['table']}"
    # no password in anything the mesh or dbt wrote
    for path in pg_mesh.root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".yml", ".yaml", ".log", ".sql", ".html"):
            text = path.read_text(errors="replace")
            assert not any(p in text for p in PASSWORDS.values()), path


def test_the_server_denies_what_the_policy_does_not_allow(pg_mesh: Built, pg: pgserver.Server) -> None:
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    customers = current(pg_mesh.root, "customers.dim_customers")["warehouse"]
    sales = current(pg_mesh.root, "sales.fct_orders.v2")["warehouse"]
    assert customers["clear_table"] and customers["clear_readers"] == ["marketing"]
    clear = f'customers_releases."{customers["clear_table"]}"'
    masked = f'customers_releases."{customers["table"]}"'
    matrix = {
        # a producer's working tables (private, protected), even of an upstream the consumer declares
        ("marketing", "select 1 from sales_marts.fct_orders_v2"): "denied",
        ("marketing", "select 1 from sales_staging.stg_orders"): "denied",
        ("finance", "select 1 from sales_intermediate.int_orders_enriched"): "denied",
        ("marketing", "select 1 from shop.orders"): "denied",  # another domain's landing data
        # a product of an upstream the consumer does not declare
        ("finance", "select 1 from marketing_products.customer_segments"): "denied",
        ("sales", "select 1 from customers_products.dim_customers"): "denied",
        # a restricted product (allowed_consumers: [marketing])
        ("finance", "select 1 from sales_products.weekly_sales_report"): "denied",
        ("marketing", "select count(*) from sales_products.weekly_sales_report"): "allowed",
        # PII: in clear only for marketing; masked for finance
        ("finance", "select email from customers_products.dim_customers__pii"): "denied",
        ("finance", f"select email from {clear}"): "denied",
        ("finance", f"select count(email) from {masked}"): "allowed",
        ("finance", "select count(*) from customers_products.dim_customers"): "allowed",
        ("marketing", "select count(email) from customers_products.dim_customers__pii"): "allowed",
        # a declared, public product: its pointer and its release table
        ("finance", "select count(*) from sales_products.fct_orders_v2"): "allowed",
        ("finance", f'select count(*) from sales_releases."{sales["table"]}"'): "allowed",
        # nobody writes another domain's releases, not even a reader
        ("finance", f'delete from sales_releases."{sales["table"]}"'): "denied",
    }
    observed = {key: as_role(pg, *key) for key in matrix}
    assert {k: v[0] for k, v in observed.items()} == matrix, observed
    for key, (verdict, detail) in observed.items():
        if verdict == "denied":
            assert str(detail).startswith("42501"), (key, detail)  # insufficient_privilege, not a missing table
    assert observed[("finance", f"select count(email) from {masked}")][1] == (0,)  # every e-mail NULL
    clear_emails = observed[("marketing", "select count(email) from customers_products.dim_customers__pii")][1]
    assert clear_emails[0] > 0


def test_a_grant_added_by_hand_is_reported_and_revoked(pg_mesh: Built, pg: pgserver.Server) -> None:
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    pg.admin(
        "set role sales; grant usage on schema sales_marts to finance; "
        "grant select on sales_marts.fct_orders_v2 to finance",
        dbname="mesh",
    )
    sneaky = ("finance", "select count(*) from sales_marts.fct_orders_v2")
    assert as_role(pg, *sneaky)[0] == "allowed"
    check = run_mesh("check", "sales", "--target", "postgres", "--no-sqlfluff", cwd=pg_mesh.root)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "GOV206" in check.stdout and "SELECT on sales_marts.fct_orders_v2 to finance" in check.stdout
    dry = run_mesh("grants", "sales", "--target", "postgres", "--dry-run", cwd=pg_mesh.root)
    assert dry.returncode == 0, dry.stderr
    assert 'revoke select on "sales_marts"."fct_orders_v2" from "finance";' in dry.stdout
    assert as_role(pg, *sneaky)[0] == "allowed"  # a dry run changes nothing
    fix = run_mesh("grants", "sales", "--target", "postgres", cwd=pg_mesh.root)
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert "revoked: SELECT on sales_marts.fct_orders_v2 to finance" in fix.stdout
    assert as_role(pg, *sneaky)[0] == "denied"
    assert as_role(pg, "finance", "select count(*) from sales_products.fct_orders_v2")[0] == "allowed"
    again = run_mesh("grants", "sales", "--target", "postgres", "--dry-run", cwd=pg_mesh.root)
    assert "sales (role sales, target postgres): grants match the policy" in again.stdout, again.stdout
    # a publish sets every kept release's grants from the policy again: a hand grant there goes too
    table = current(pg_mesh.root, "sales.fct_orders.v2")["warehouse"]["table"]
    pg.admin(f'set role sales; grant usage on schema sales_releases to customers; '
             f'grant select on sales_releases."{table}" to customers', dbname="mesh")  # fmt: skip
    assert as_role(pg, "customers", f'select count(*) from sales_releases."{table}"')[0] == "allowed"
    published = run_mesh("publish", "sales", "--target", "postgres", cwd=pg_mesh.root)
    assert published.returncode == 0, published.stdout + published.stderr
    assert as_role(pg, "customers", f'select count(*) from sales_releases."{table}"')[0] == "denied"
    assert as_role(pg, "finance", f'select count(*) from sales_releases."{table}"')[0] == "allowed"  # still kept


def test_a_pointer_view_behind_its_current_release_is_reported_and_pointed_back(
    pg_mesh: Built, pg: pgserver.Server
) -> None:
    """What a publisher killed between the warehouse's commit and the exchange's record leaves, by hand."""
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    where = current(pg_mesh.root, "sales.fct_orders.v2")["warehouse"]
    customers = current(pg_mesh.root, "customers.dim_customers")["warehouse"]
    pg.admin(
        f'set role sales; create table sales_releases.stray as table sales_releases."{where["table"]}" limit 3; '
        "create or replace view sales_products.fct_orders_v2 as select * from sales_releases.stray; "
        # a pointer reading the clear table (whose name contains the masked one's) is caught too
        f"set role customers; create or replace view customers_products.dim_customers as select * from "
        f'customers_releases."{customers["clear_table"]}"',
        dbname="mesh",
    )
    check = run_mesh("check", "sales", "customers", "--target", "postgres", "--no-sqlfluff", cwd=pg_mesh.root)
    assert check.returncode == 1, check.stdout
    assert "pointer view fct_orders_v2 does not read" in check.stdout, check.stdout
    assert "pointer view dim_customers does not read" in check.stdout, check.stdout
    fix = run_mesh("grants", "sales", "customers", "--target", "postgres", cwd=pg_mesh.root)
    assert "pointed fct_orders_v2 at its current release" in fix.stdout, fix.stdout + fix.stderr
    assert "pointed dim_customers at its current release" in fix.stdout, fix.stdout + fix.stderr
    rows = current(pg_mesh.root, "sales.fct_orders.v2")["row_count"]
    assert as_role(pg, "finance", "select count(*) from sales_products.fct_orders_v2") == ("allowed", (rows,))
    assert as_role(pg, "finance", "select count(email) from customers_products.dim_customers") == ("allowed", (0,))
    pg.admin("drop table sales_releases.stray", dbname="mesh")


def test_a_descriptor_naming_other_tables_is_refused_not_granted(pg_mesh: Built, pg: pgserver.Server) -> None:
    """release.json is a file anyone with access to the exchange can edit: the names the mesh grants on,
    drops and reads are the ones its product and id make, never what the file says."""
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    root = pg_mesh.root
    folder = root / "exchange/products/customers/dim_customers/unversioned"
    release_id = json.loads((folder / "current.json").read_text())["release_id"]
    path = folder / "releases" / release_id / "release.json"
    original = path.read_text()
    data = json.loads(original)
    data["warehouse"]["table"] = data["warehouse"]["clear_table"]  # "give everyone the PII"
    path.write_text(json.dumps(data))
    try:
        fix = run_mesh("grants", "customers", "--target", "postgres", cwd=root)
        assert f"release {release_id} of customers.dim_customers is refused" in fix.stdout, fix.stdout + fix.stderr
        assert as_role(pg, "finance", f'select 1 from customers_releases."{data["warehouse"]["clear_table"]}"')[0] == (
            "denied"
        )
        stitched = run_mesh("stitch", "marketing", cwd=root)
        assert stitched.returncode != 0 and "release cannot be read safely" in stitched.stdout + stitched.stderr
    finally:
        path.write_text(original)
    # it failed closed (finance lost its grants on that release too); with the file back, they come back
    restored = run_mesh("grants", "customers", "--target", "postgres", cwd=root)
    assert "granted: SELECT on customers_products.dim_customers to finance" in restored.stdout, restored.stdout
    assert as_role(pg, "finance", "select count(*) from customers_products.dim_customers")[0] == "allowed"


def release_tables(pg: pgserver.Server) -> set[str]:
    con = pg.connect(dbname="mesh")
    try:
        with con.cursor() as cur:
            cur.execute("select schemaname || '.' || tablename from pg_tables where schemaname like '%\\_releases'")
            return {r[0] for r in cur.fetchall()}
    finally:
        con.close()


def _publisher_backend(pg: pgserver.Server) -> int | None:
    con = pg.connect(dbname="mesh")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute("select pid from pg_stat_activity where usename = 'sales' and wait_event_type = 'Lock'")
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        con.close()


def test_a_publish_killed_in_the_warehouse_leaves_the_previous_release_current(
    pg_mesh: Built, pg: pgserver.Server
) -> None:
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    root = pg_mesh.root
    before = current(root, "sales.fct_orders.v2")
    products = ("sales.fct_orders.v1", "sales.fct_orders.v2", "sales.weekly_sales_report")
    all_before = {p: current(root, p)["release_id"] for p in products}
    tables_before = release_tables(pg)
    blocker = pg.connect(dbname="mesh")  # holds the pointer view: the publish waits inside its transaction
    with blocker.cursor() as cur:
        cur.execute("lock table sales_products.fct_orders_v2 in access exclusive mode")
    env = mesh_env()
    publisher = subprocess.Popen(
        [sys.executable, "-m", "mesh_tools.cli", "publish", "sales", "--target", "postgres"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        backend = None
        for _ in range(600):
            backend = _publisher_backend(pg)
            if backend or publisher.poll() is not None:
                break
            time.sleep(0.1)
        assert backend, publisher.communicate()
        pg.admin(f"select pg_terminate_backend({backend})")
        out, err = publisher.communicate(timeout=120)
    finally:
        if publisher.poll() is None:
            os.killpg(publisher.pid, signal.SIGKILL)
        blocker.rollback()
        blocker.close()
    assert publisher.returncode != 0, out + err
    assert "Traceback" not in err and "sales" in out + err
    # nothing of the publish is left: not the release tables it made before it waited (fct_orders.v1
    # comes first), not a pointer, not a descriptor
    assert {p: current(root, p)["release_id"] for p in products} == all_before
    assert release_tables(pg) == tables_before
    con = pg.connect(dbname="mesh")
    with con.cursor() as cur:
        for product in products:
            where = current(root, product)["warehouse"]
            cur.execute(f"select pg_get_viewdef('{where['products_schema']}.\"{where['pointer']}\"'::regclass)")
            assert where["table"] in cur.fetchone()[0], product
    con.close()
    # tables a publisher killed after the warehouse's commit would leave (no descriptor records them): the
    # next publish drops those over an hour old, and nothing the mesh did not make
    orphans = {"old": "r20200101T000000000000Z-abcdef", "recent": f"r{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}Z-abcdef"}
    statements = ["set role sales", "create table sales_releases.not_ours as select 1 as x"]
    for release_id in orphans.values():
        table = f'sales_releases."{release_table("fct_orders", "2", release_id)}"'
        statements += [f"create table {table} as select 1 as x",
                       f"comment on table {table} is 'mesh release {release_id} sales.fct_orders.v2'"]  # fmt: skip
    pg.admin("; ".join(statements), dbname="mesh")
    again = run_mesh("publish", "sales", "--target", "postgres", cwd=root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert current(root, "sales.fct_orders.v2")["release_id"] != before["release_id"]
    left = release_tables(pg)
    assert "sales_releases." + release_table("fct_orders", "2", orphans["old"]) not in left
    assert {"sales_releases." + release_table("fct_orders", "2", orphans["recent"]), "sales_releases.not_ours"} <= left
    recent = release_table("fct_orders", "2", orphans["recent"])
    pg.admin(f'drop table sales_releases.not_ours, sales_releases."{recent}"', dbname="mesh")


def test_a_consumer_builds_while_its_producer_publishes_again_and_again(pg_mesh: Built, pg: pgserver.Server,
                                                                        tmp_path: Path) -> None:  # fmt: skip
    """The producer's team publishes from its own checkout (same warehouse, same exchange) while the
    consumer builds: the consumer reads one complete release, the pointer view never breaks, and
    retention drops the release tables nobody reads any more."""
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    root = pg_mesh.root
    producer = copy_tree(root, tmp_path / "producer")
    meshfile = producer / "mesh.yml"
    meshfile.write_text(meshfile.read_text() + f"exchange:\n  path: {root / 'exchange'}\n")
    stop = threading.Event()
    published, failures, reads = [], [], []

    def publish_loop() -> None:
        while (not stop.is_set() or len(published) < 3) and len(published) < 6 and not failures:
            result = run_mesh("publish", "sales", "--target", "postgres", cwd=producer)
            (published if result.returncode == 0 else failures).append(result.stdout + result.stderr)

    def read_loop() -> None:
        while not stop.is_set():
            reads.append(as_role(pg, "finance", "select count(*) from sales_products.fct_orders_v2"))
            time.sleep(0.01)

    threads = [threading.Thread(target=publish_loop), threading.Thread(target=read_loop)]
    for thread in threads:
        thread.start()
    try:
        builds = [run_mesh("build", "finance", "--target", "postgres", "--no-state", cwd=root)]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
    assert not failures, failures[0]
    assert len(published) >= 2
    for build in builds:
        assert build.returncode == 0, build.stdout + build.stderr
    rows = current(root, "sales.fct_orders.v2")["row_count"]
    assert reads and all(r == ("allowed", (rows,)) for r in reads), {str(r) for r in reads}
    # what finance built came whole from the release its receipt names
    receipt = json.loads((root / "exchange/receipts/finance.json").read_text())
    read_id = receipt["releases"]["sales.fct_orders.v2"]
    table = json.loads((root / "exchange/products/sales/fct_orders/v2/releases" / read_id / "release.json")
                       .read_text())["warehouse"]["table"]  # fmt: skip
    con = pg.connect(dbname="mesh")
    with con.cursor() as cur:
        cur.execute(f"select count(*), sum(order_total) from sales_releases.\"{table}\" "
                    "where status in ('completed', 'returned')")  # fmt: skip
        expected = cur.fetchone()
        cur.execute("select count(*), sum(gross_revenue) from finance_intermediate.int_order_revenue")
        assert cur.fetchone() == expected
        # retention: only the releases the exchange still records have tables
        cur.execute("select tablename from pg_tables where schemaname = 'sales_releases' "
                    "and tablename like 'fct_orders_v2\\_\\_%'")  # fmt: skip
        tables = {r[0] for r in cur.fetchall()}
    con.close()
    kept = {p.name for p in (root / "exchange/products/sales/fct_orders/v2/releases").iterdir()}
    assert tables == {release_table("fct_orders", "2", r) for r in kept}
    assert read_id in kept
    log = [json.loads(line) for line in (root / "exchange/log.jsonl").read_text().splitlines()]
    expired = {e["release_id"] for e in log if e["event"] == "expire" and e["product"] == "sales.fct_orders.v2"}
    assert expired and not expired & kept  # retention ran, and dropped the tables of what it expired


def test_a_new_domain_from_the_template_builds_on_the_warehouse_once_its_upstream_grants_it(
    pg_mesh: Built, pg: pgserver.Server
) -> None:
    """Last in this module: it adds a domain to the shared mesh."""
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    root = pg_mesh.root
    created = run_mesh("new-domain", "returns", "--upstream", "sales", cwd=root)
    assert created.returncode == 0, created.stderr
    bootstrap = run_mesh("grants", "--bootstrap", "--target", "postgres", cwd=root)
    pg.admin(bootstrap.stdout, dbname="mesh")  # again, with a role that exists: nothing fails
    PASSWORDS["returns"] = "returns-pw"
    pg.admin("alter role returns password 'returns-pw'")
    os.environ["MESH_PG_PASSWORD_RETURNS"] = "returns-pw"
    # another domain made returns' releases schema first: it would own what returns publishes there
    pg.admin("set role finance; create schema returns_releases", dbname="mesh")
    first = run_mesh("build", "returns", "--target", "postgres", cwd=root)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "mesh grants sales --target postgres" in first.stdout, first.stdout  # who must grant, and how
    granted = run_mesh("grants", "sales", "--target", "postgres", cwd=root)
    assert "granted: USAGE on schema sales_releases to returns" in granted.stdout, granted.stdout
    squatted = run_mesh("build", "returns", "--target", "postgres", cwd=root)
    assert squatted.returncode == 1, squatted.stdout + squatted.stderr
    assert "schema returns_releases belongs to role finance, not to returns" in squatted.stdout, squatted.stdout
    assert not (root / "exchange/products/returns").exists()
    pg.admin("drop schema returns_releases", dbname="mesh")
    published = run_mesh("publish", "returns", "--target", "postgres", cwd=root)
    assert published.returncode == 0, published.stdout + published.stderr
    release = current(root, "returns.returns_overview")
    assert release["engine"] == "postgres" and release["row_count"] > 0
    assert as_role(pg, "returns", "select 1 from sales_marts.fct_orders_v2")[0] == "denied"


def test_warehouse_names_are_never_cut_or_shared(tmp_path: Path) -> None:
    """PostgreSQL cuts names at 63 bytes without a word: the mesh refuses names it would cut, and two
    products whose pointer views would share a name (an unversioned `fct_orders_v1` beside `fct_orders` v1)."""
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.exchange.publish import _unsafe_warehouse_names
    from mesh_tools.store.exchange import Exchange

    assert long_names("s" * 40, ["marketing"]) == []
    assert long_names("s" * 56, []) == ["s" * 56 + "_releases", "s" * 56 + "_products"]
    assert long_names("finance" * 7, ["customers"]) == [("finance" * 7) + "_upstream_customers"]
    name = "a" * 80
    assert len(release_table(name, "2", "r20261202T171844180278Z-fae9b0").encode()) <= 63
    assert release_table(name, "2", "r1") != release_table(name + "b", "2", "r1")  # cut, but still distinct
    root = copy_demo(tmp_path / "mesh")
    mesh = load_mesh(root)
    exchange = Exchange(root / "exchange")
    product = root / "exchange/products/sales/fct_orders/v1"
    product.mkdir(parents=True)
    (product / "current.json").write_text('{"release_id": "r20261202T171844180278Z-fae9b0"}\n')  # published before

    class Product:
        def __init__(self, name: str, version: str | None) -> None:
            self.name, self.version = name, version

    refusal = _unsafe_warehouse_names(mesh.domains["sales"], exchange, "sales", [Product("fct_orders_v1", None)])
    assert refusal and "fct_orders_v1 and fct_orders v1 would share the pointer view" in refusal, refusal
    assert _unsafe_warehouse_names(mesh.domains["sales"], exchange, "sales", [Product("fct_orders", "1")]) is None


def test_a_profile_pointed_at_other_schemas_builds_in_full(pg_mesh: Built) -> None:
    """A warehouse has no files to watch: the build state keeps its identity (server, database, schema,
    role), so a profile pointed elsewhere rebuilds everything there instead of trusting the old tables."""
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    root = pg_mesh.root
    profiles = root / "projects/finance/profiles.yml"
    original = profiles.read_text()
    assert "      schema: finance\n" in original
    profiles.write_text(original.replace("      schema: finance\n", "      schema: finance_two\n"))
    try:
        moved = run_mesh("build", "finance", "--target", "postgres", "--no-publish", "--explain", cwd=root)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "its target resolves to other storage than its last build" in moved.stdout, moved.stdout
        assert "ran 3 of 3 models" in moved.stdout, moved.stdout
    finally:
        profiles.write_text(original)


def test_a_password_variable_not_set_is_named(pg_mesh: Built) -> None:
    """dbt keeps a password whose env_var() is unset as template text; the server would then say only
    "password authentication failed". The mesh names the variable."""
    assert pg_mesh.result.returncode == 0, pg_mesh.output
    saved = os.environ.pop("MESH_PG_PASSWORD_SALES")
    try:
        result = run_mesh("build", "sales", "--target", "postgres", cwd=pg_mesh.root)
    finally:
        os.environ["MESH_PG_PASSWORD_SALES"] = saved
    assert result.returncode != 0, result.stdout
    assert "reads MESH_PG_PASSWORD_SALES from the environment, and it is not set" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "password authentication failed" not in result.stdout
