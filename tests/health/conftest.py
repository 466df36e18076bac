"""The health unit's shared build: health_mesh built healthy twice, then twice with planted problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.helpers import Built, copy_fixture, run_mesh


def write_landing(root: Path, orders: int = 200, tickets_loaded_hours_ago: float = 0.0) -> None:
    """The two producers' landing files: orders (loaded now) and support tickets (loaded some hours ago)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    for folder in ("orders/landing", "support/landing"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    duckdb.sql(
        f"copy (select i::integer as order_id, (i % 40)::integer as customer_id, (i * 1.5)::double as amount, "
        f"timestamp '{now}' as _loaded_at from range(1, {orders + 1}) t(i)) "
        f"to '{root / 'orders/landing/orders.parquet'}' (format parquet)"
    )
    loaded = now - timedelta(hours=tickets_loaded_hours_ago)
    duckdb.sql(
        f"copy (select i::integer as ticket_id, (i % 30)::integer as customer_id, timestamp '{loaded}' as _loaded_at "
        f"from range(1, 61) t(i)) to '{root / 'support/landing/tickets.parquet'}' (format parquet)"
    )


def plant_problems(root: Path) -> None:
    # a volume drop: 200 orders -> 20
    write_landing(root, orders=20, tickets_loaded_hours_ago=72)  # and a stale source: tickets 72 h old
    # a schema change: orders.fct_orders gains a column
    (root / "orders/models/fct_orders.sql").write_text(
        "select order_id, customer_id, amount, 'web' as channel from {{ ref('stg_orders') }}\n"
    )
    schema = root / "orders/models/schema.yml"
    schema.write_text(
        schema.read_text() + "      - name: channel\n        description: Sales channel.\n        data_type: varchar\n"
    )
    # a failing test on finance.revenue
    (root / "finance/tests").mkdir()
    (root / "finance/tests/revenue_is_never_positive.sql").write_text(
        "select * from {{ ref('revenue') }} where revenue > 0\n"
    )


@pytest.fixture(scope="session")
def health_mesh(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """health_mesh built twice healthy, then with planted problems twice (a failure streak of 2), each
    build after a new load of its landing files (a state-aware build rebuilds only what a load changed)."""
    root = copy_fixture("health_mesh", tmp_path_factory.mktemp("health"))
    for _ in range(2):  # each build follows a new load of the landing files, as a scheduled build does
        write_landing(root)
        result = run_mesh("build", cwd=root)
        assert result.returncode == 0, result.stdout + result.stderr
    plant_problems(root)
    for again in range(2):
        if again:
            write_landing(root, orders=20, tickets_loaded_hours_ago=72)
        result = run_mesh("build", cwd=root)
        assert result.returncode == 1, result.stdout + result.stderr
    return Built(root, result)
