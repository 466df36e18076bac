"""The corpus of foreign meshes (tests/fixtures/foreign_meshes): how each is run and what its build must produce.

Every mesh is copied as it is and built with plain `mesh build` (no mesh.yml, no edits); the
only things a mesh gets are what its README says its team would have: an environment variable
(loom_chain), a `--profiles-dir` (jaffle_cloud), raw databases loaded by an EL tool
(attached_raw). tests/foreign/conftest.py builds them all once per session (``corpus``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import FIXTURES, mesh_env, run_command

CORPUS = FIXTURES / "foreign_meshes"


def load_raw_databases(root: Path) -> None:
    """attached_raw: what the EL tool leaves behind, two DuckDB files the domains attach."""
    import duckdb

    for name, script in (("landing.duckdb", "load.sql"), ("reference.duckdb", "reference.sql")):
        con = duckdb.connect(str(root / "raw" / name))
        try:
            con.execute((root / "raw" / script).read_text())
        finally:
            con.close()


def publish_external_manifest(folder: Path) -> None:
    """loom_external: the other team's CI builds core and puts its manifest in the registry folder."""
    project = folder / "other_repo" / "core"
    dbt = Path(sys.executable).parent / "dbt"
    built = subprocess.run([str(dbt), "build"], cwd=project, env=mesh_env(), capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    registry = folder / "mesh" / "registry" / "core"
    registry.mkdir(parents=True, exist_ok=True)
    shutil.copy(project / "target" / "manifest.json", registry / "manifest.json")


def csv_rows(path: str, keep: Callable[[dict[str, str]], bool] = lambda row: True) -> int:
    """The rows of a corpus CSV file ``keep`` keeps: a figure computed from the raw data, not from a build."""
    import csv

    with open(CORPUS / path, newline="", encoding="utf-8") as handle:
        return sum(1 for row in csv.DictReader(handle) if keep(row))


@dataclass(frozen=True)
class Foreign:
    """How a corpus mesh is run and what its build must produce."""

    name: str
    options: tuple[str, ...] = ()  # global `mesh` options, before the command
    env: dict[str, str] = field(default_factory=dict)  # {root} is replaced by the copy's folder
    prepare: Callable[[Path], None] | None = None
    # (database file, relation, expected rows) of its final consumer models
    final: tuple[tuple[str, str, int], ...] = ()
    # (consumer, file to add, SQL with a non-public cross-project ref, what the refusal says)
    bad_ref: tuple[str, str, str, str] = ("", "", "", "")
    subdir: str = ""  # the mesh root inside the fixture folder, when the folder holds more than the mesh

    def environment(self, root: Path) -> dict[str, str]:
        env = mesh_env()
        env.update({k: v.format(root=root) for k, v in self.env.items()})
        return env


MESHES = {
    m.name: m
    for m in (
        Foreign(
            "no_contracts",
            final=(("jaffle_analytics/analytics.duckdb", "main.customer_order_counts", 4),),
            bad_ref=(
                "jaffle_analytics",
                "jaffle_analytics/models/bad.sql",
                "select * from {{ ref('jaffle_shop', 'stg_orders') }}",
                "'stg_orders' is a protected model of project 'jaffle_shop'",
            ),
        ),
        Foreign(
            "loom_chain",
            env={"CORPUS_ROOT": "{root}"},
            final=(("database.db", "main.revenue_by_location", 3),),
            bad_ref=(
                "customer_success",
                "customer_success/models/bad.sql",
                "select * from {{ ref('revenue', 'accounts') }}",
                "'accounts' is a private model of project 'revenue'",
            ),
        ),
        Foreign(
            "jaffle_cloud",
            options=("--profiles-dir", "profiles"),
            final=(("jaffle-shop-mesh-finance/jaffle_shop.duckdb", '"DAVIDE_JAFFLE_SHOP".orders', 3),),
            bad_ref=(
                "jaffle_shop_mesh_finance",
                "jaffle-shop-mesh-finance/models/bad.sql",
                "select * from {{ ref('jaffle_shop_mesh_platform', 'stg_stores') }}",
                "'stg_stores' is a protected model of project 'jaffle_shop_mesh_platform'",
            ),
        ),
        Foreign(
            "attached_raw",
            prepare=load_raw_databases,
            final=(("reporting/reporting.duckdb", "reporting.reporting.sales_by_country", 3),),
            bad_ref=(
                "reporting",
                "reporting/models/bad.sql",
                "select * from {{ ref('ingest', 'daily_sales') }}",
                "'daily_sales' is a protected model of project 'ingest'",
            ),
        ),
        Foreign(
            "monorepo_layout",
            final=(
                ("projects/sales/dbt/sales.duckdb", "main.fct_orders", 3),
                ("projects/sales/dbt/sales.duckdb", "main.legacy_gross", 3),
            ),
            bad_ref=(
                "northwind_sales",
                "projects/sales/dbt/transform/bad.sql",
                "select * from {{ ref('northwind_foundational', 'stg_order_items') }}",
                "'stg_order_items' is a protected model of project 'northwind_foundational'",
            ),
        ),
        Foreign(
            "nested_split",
            final=(
                ("split_proj/database.db", "main.order_counts", 2),
                ("split_proj/database.db", "main.order_amounts", 1),
            ),
            bad_ref=(
                "split_proj",
                "split_proj/models/bad.sql",
                "select * from {{ ref('my_new_project', 'stg_orders') }}",
                "'stg_orders' is a protected model of project 'my_new_project'",
            ),
        ),
        Foreign(
            "loom_external",
            subdir="mesh",
            prepare=publish_external_manifest,
            final=(("finance/finance.duckdb", "main.revenue_by_customer", 2),),
            bad_ref=(
                "finance",
                "finance/models/bad.sql",
                "select * from {{ ref('core', 'stg_orders') }}",
                "'stg_orders' is a protected model of project 'core'",
            ),
        ),
        Foreign(
            "double_declared",
            final=(("dbt_projects/gold_project/dev.duckdb", "gold.customers_by_segment", 2),),
            bad_ref=(
                "gold_project",
                "dbt_projects/gold_project/models/bad.sql",
                "select * from {{ ref('silver_project', 'stg_customers') }}",
                "'stg_customers' is a protected model of project 'silver_project'",
            ),
        ),
        Foreign(
            "loom_seeds",
            final=(
                (
                    "finance/finance.duckdb",
                    "main.large_amounts",
                    csv_rows("loom_seeds/revenue/seeds/integers.csv", lambda r: float(r["amount"]) >= 10),
                ),
                ("finance/finance.duckdb", "main.current_plans", csv_rows("loom_seeds/revenue/seeds/plans.csv")),
            ),
            bad_ref=(
                "finance",
                "finance/models/bad.sql",
                "select * from {{ ref('revenue', 'cost_centers') }}",
                "'cost_centers' is a private seed of project 'revenue'",
            ),
        ),
        Foreign(
            "loom_udf",
            # one row per region of pricing's raw orders (figures: tests/foreign/test_loom_udf.py)
            final=(("finance/finance.duckdb", "main.revenue_by_region", 3),),
            bad_ref=(
                "finance",
                "finance/models/bad.sql",
                "select * from {{ ref('pricing', 'stg_orders') }}",
                "'stg_orders' is a protected model of project 'pricing'",
            ),
        ),
        Foreign(
            "bidirectional",
            # one row per segment of the customers who ordered (figures: tests/foreign/test_project_cycles.py)
            final=(("project_a/project_a.duckdb", "main.segment_revenue", 3),),
            bad_ref=(
                "project_b",
                "project_b/models/bad.sql",
                "select * from {{ ref('project_a', 'segment_revenue') }}",
                "'segment_revenue' is a protected model of project 'project_a'",
            ),
        ),
    )
}


def run_foreign(mesh: Foreign, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `mesh` CLI on a corpus mesh, with that mesh's options and environment."""
    return run_command(["mesh", *mesh.options, *args], root, mesh.environment(root))


@dataclass
class BuiltForeign:
    mesh: Foreign
    root: Path
    result: subprocess.CompletedProcess[str]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr
