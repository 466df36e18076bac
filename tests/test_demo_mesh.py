"""The repository's demo mesh: four domains, built for real with `mesh build` on generated data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.helpers import REPO, Built, copy_demo, manifest, mesh_env, run_mesh

DOMAINS = ("customers", "sales", "marketing", "finance")


def test_demo_mesh_builds_all_four_domains(demo_built: Built):
    assert demo_built.result.returncode == 0, demo_built.output
    assert "mesh build: 4 of 4 domains succeeded" in demo_built.output
    for domain in DOMAINS:
        assert (demo_built.root / "projects" / domain / f"{domain}.duckdb").is_file()


def test_each_domain_writes_only_its_own_storage(demo_built: Built):
    root = demo_built.root / "projects"
    for domain in DOMAINS:
        con = duckdb.connect(str(root / domain / f"{domain}.duckdb"), read_only=True)
        schemas = {r[0] for r in con.execute("select distinct table_schema from information_schema.tables").fetchall()}
        con.close()
        upstream = {s for s in schemas if s.startswith("upstream_")}
        own = schemas - upstream
        assert own <= {"staging", "intermediate", "marts", "reference"}, (domain, schemas)
        expected = {"marketing": {"upstream_customers", "upstream_sales"}, "finance": {"upstream_sales"}}
        assert upstream == expected.get(domain, set()), (domain, schemas)


def test_pii_metadata_and_owner_reach_the_consumer(demo_built: Built):
    nodes = manifest(demo_built.root / "projects" / "marketing")["nodes"]
    dim = nodes["model.customers.dim_customers"]
    assert dim["columns"]["email"]["meta"] == {"pii": True}
    assert dim["columns"]["email"]["data_type"] == "varchar"
    assert dim["access"] == "public" and dim["contract"]["enforced"]
    v1 = nodes["model.sales.fct_orders.v1"]
    assert v1["deprecation_date"].startswith("2027-06-30")
    assert "amount" in v1["columns"] and "order_total" in nodes["model.sales.fct_orders.v2"]["columns"]


def test_products_add_up_across_domains(demo_built: Built):
    root = demo_built.root / "projects"
    con = duckdb.connect()
    for domain in DOMAINS:
        con.execute(f"attach '{root / domain / (domain + '.duckdb')}' as {domain} (read_only)")
    customers = con.execute("select count(*) from customers.marts.dim_customers").fetchone()[0]
    segmented = con.execute("select count(*) from marketing.marts.customer_segments").fetchone()[0]
    assert customers == segmented > 0
    gross = con.execute("select sum(gross_revenue) from finance.marts.monthly_revenue").fetchone()[0]
    orders = con.execute(
        "select sum(order_total) from sales.marts.fct_orders_v2 where status in ('completed', 'returned')"
    ).fetchone()[0]
    assert gross == orders
    weekly = con.execute("select sum(revenue) from sales.marts.weekly_sales_report").fetchone()[0]
    completed = con.execute("select sum(order_total) from sales.marts.fct_orders_v2 where status = 'completed'")
    assert weekly == completed.fetchone()[0]


def test_demo_data_is_deterministic_and_scales(tmp_path: Path):
    root = copy_demo(tmp_path / "mesh")
    first = run_mesh("demo-data", "--orders", "2000", "--seed", "7", cwd=root)
    assert first.returncode == 0, first.stderr
    assert "orders.parquet: 2000 rows" in first.stdout
    query = "select * exclude (_loaded_at) from read_parquet('{}') order by 1"

    def snapshot() -> list:
        path = root / "projects" / "sales" / "landing" / "orders.parquet"
        return duckdb.connect().execute(query.format(path)).fetchall()

    before = snapshot()
    assert run_mesh("demo-data", "--orders", "2000", "--seed", "7", cwd=root).returncode == 0
    assert snapshot() == before
    assert run_mesh("demo-data", "--orders", "2000", "--seed", "8", cwd=root).returncode == 0
    assert snapshot() != before


FORBIDDEN = {
    "GROUP BY ALL": re.compile(r"group\s+by\s+all\b", re.I),
    "QUALIFY": re.compile(r"\bqualify\b", re.I),
    "SELECT * EXCLUDE": re.compile(r"\*\s*exclude\b", re.I),
    ":: casts": re.compile(r"::"),
    "read_parquet in SQL (use a source)": re.compile(r"read_(parquet|csv)", re.I),
}


def test_domain_sql_stays_portable():
    offenders = []
    for sql in sorted((REPO / "projects").glob("*/models/**/*.sql")) + sorted(
        (REPO / "projects").glob("*/tests/*.sql")
    ):
        text = re.sub(r"--.*", "", sql.read_text())
        offenders += [f"{sql.relative_to(REPO)}: {name}" for name, pattern in FORBIDDEN.items() if pattern.search(text)]
    assert offenders == []


def test_every_source_passes_its_freshness_check(demo_built: Built):
    """Freshly generated landing files are fresh: each source has its loaded_at column and threshold.

    `dbt source freshness` for the four domains, run by dbt's own runner in one process (four dbt
    CLI starts cost more than the check itself)."""
    script = (
        "import json, os, sys\n"
        "from dbt.cli.main import dbtRunner\n"
        "out = {}\n"
        "for domain in sys.argv[1:]:\n"
        "    os.chdir(domain)\n"
        "    res = dbtRunner().invoke(['source', 'freshness', '--profiles-dir', '.', '--project-dir', '.'])\n"
        "    out[domain] = [res.success, [(r.node.name, str(r.status)) for r in res.result.results if r.node.resource_type == 'source']]\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    domains = [str(demo_built.root / "projects" / domain) for domain in DOMAINS]
    run = subprocess.run(
        [sys.executable, "-c", script, *domains], env=mesh_env(), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    results = json.loads(run.stdout.split("RESULT ", 1)[1])
    for domain, (success, sources) in results.items():
        assert success, (domain, sources)
        assert sources and all(status == "pass" for _, status in sources), (domain, sources)


def test_demo_mesh_passes_every_rule(demo_built: Built):  # the governance rules: tests/governance/
    result = run_mesh("check", "--format", "json", cwd=demo_built.root)
    assert result.returncode == 0, result.stdout[-3000:]
    data = json.loads(result.stdout)
    assert data["violations"] == [] and data["waived"] == []
    assert len(data["rules"]) == 22
