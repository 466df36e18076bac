"""Write the demo mesh's landing files: realistic raw data, deterministic for a seed, at any scale.

Rows are computed by DuckDB from hashes of their ids, so millions of rows take seconds and the
same seed always gives the same data. Only ``_loaded_at`` (when the file landed) changes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mesh_tools.core.errors import ConfigError
from mesh_tools.core.mesh import Mesh
from mesh_tools.dbt import engines

FIRST = [
    "Ada",
    "Bruno",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Luca",
    "Maya",
    "Nils",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Yara",
]
LAST = [
    "Andersen",
    "Bianchi",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Rossi",
    "Silva",
    "Tanaka",
    "Weber",
]
COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "SE", "PL", "GB", "US", "BR"]
SKUS = ["SKU-TEE", "SKU-HOODIE", "SKU-MUG", "SKU-CAP", "SKU-SOCKS", "SKU-BAG", "SKU-POSTER", "SKU-STICKER"]
PRICES = [19.0, 49.0, 12.5, 15.0, 7.5, 29.0, 9.9, 2.5]
CHANNELS = ["web", "app", "store"]


def _pick(values: Sequence[object], expr: str) -> str:
    """SQL for ``values[expr % len(values)]`` (DuckDB lists are 1-based)."""
    items = ", ".join(repr(v) if not isinstance(v, str) else "'" + v + "'" for v in values)
    return f"([{items}])[1 + (({expr}) % {len(values)})::integer]"


def _r(column: str, salt: int, seed: int) -> str:
    """A pseudo-random uint for a row, from a hash of its id: deterministic, order-independent."""
    return f"hash({column} * 2654435761 + {salt * 7919 + seed})"


def _tables(orders: int, seed: int) -> dict[str, dict[str, str]]:
    customers = max(50, orders // 4)
    campaigns = 12
    r = lambda col, salt: _r(col, salt, seed)  # noqa: E731
    return {
        "customers": {
            "customers": f"""
                select i::integer as customer_id,
                       {_pick(FIRST, r("i", 1))} as first_name,
                       {_pick(LAST, r("i", 2))} as last_name,
                       lower({_pick(FIRST, r("i", 1))} || '.' || {_pick(LAST, r("i", 2))}) || i::varchar
                           || '@' || {_pick(["example.com", "mail.test", "shop.test"], r("i", 3))} as email,
                       {_pick(COUNTRIES, r("i", 4))} as country_code,
                       (date '2023-01-01' + (({r("i", 5)}) % 1000)::integer) as signup_date,
                       (({r("i", 6)}) % 3) <> 0 as marketing_opt_in,
                       current_timestamp::timestamp as _loaded_at
                from range(1, {customers + 1}) t(i)""",
        },
        "sales": {
            "orders": f"""
                select i::integer as order_id,
                       (1 + ({r("i", 10)}) % {customers})::integer as customer_id,
                       (timestamp '2025-01-01 08:00:00'
                           + to_seconds((({r("i", 11)}) % (364 * 86400))::bigint)) as ordered_at,
                       {_pick(["completed"] * 8 + ["returned", "cancelled"], r("i", 12))} as status,
                       {_pick(CHANNELS, r("i", 13))} as channel,
                       current_timestamp::timestamp as _loaded_at
                from range(1, {orders + 1}) t(i)""",
            "order_items": f"""
                select (o.i * 10 + k)::bigint as order_item_id,
                       o.i::integer as order_id,
                       {_pick(SKUS, r("(o.i * 10 + k)", 20))} as product_sku,
                       (1 + ({r("(o.i * 10 + k)", 21)}) % 3)::integer as quantity,
                       {_pick(PRICES, r("(o.i * 10 + k)", 20))}::double as unit_price,
                       current_timestamp::timestamp as _loaded_at
                from range(1, {orders + 1}) o(i), range(1, 5) n(k)
                where k <= 1 + ({r("o.i", 22)}) % 4""",
            "payments": f"""
                select i::integer as payment_id,
                       i::integer as order_id,
                       {_pick(["card", "card", "paypal", "invoice", "gift_card"], r("i", 30))} as method,
                       current_timestamp::timestamp as _loaded_at
                from range(1, {orders + 1}) t(i)""",
        },
        "marketing": {
            "campaigns": f"""
                select i::integer as campaign_id,
                       {
                _pick(
                    ["Spring Sale", "Summer Drop", "Back to School", "Black Friday", "Winter Warmers", "Loyalty Boost"],
                    "i",
                )
            } || ' ' || (2025)::varchar || ' #' || i::varchar as campaign_name,
                       {_pick(["email", "social", "search", "display"], r("i", 40))} as channel,
                       (date '2025-01-01' + (i * 28)::integer) as started_on,
                       (date '2025-01-01' + (i * 28 + 21)::integer) as ended_on,
                       (1000 + ({r("i", 41)}) % 9000)::double as budget,
                       current_timestamp::timestamp as _loaded_at
                from range(1, {campaigns + 1}) t(i)""",
            "touches": f"""
                select i::integer as touch_id,
                       (1 + ({r("i", 50)}) % {customers})::integer as customer_id,
                       (1 + ({r("i", 51)}) % {campaigns})::integer as campaign_id,
                       (timestamp '2025-01-01 00:00:00'
                           + to_seconds((({r("i", 52)}) % (364 * 86400))::bigint)) as touched_at,
                       current_timestamp::timestamp as _loaded_at
                from range(1, {customers * 3 + 1}) t(i)""",
        },
        "finance": {
            "refunds": f"""
                select row_number() over (order by i)::integer as refund_id,
                       i::integer as order_id,
                       (date '2025-01-05' + (({r("i", 60)}) % 360)::integer) as refunded_on,
                       ((({r("i", 61)}) % 5 + 1) * 5)::double as amount,
                       {_pick(["damaged", "late", "wrong_size", "changed_mind"], r("i", 62))} as reason,
                       current_timestamp::timestamp as _loaded_at
                from range(1, {orders + 1}) t(i)
                where ({r("i", 12)}) % 10 = 8""",
        },
    }


def write_landing_files(mesh: Mesh, orders: int = 500, seed: int = 42) -> list[tuple[Path, int]]:
    """Write ``landing/<table>.parquet`` into each demo domain present in ``mesh``."""
    tables = _tables(orders, seed)
    present = [name for name in tables if name in mesh.domains]
    if not present:
        raise ConfigError(
            f"{mesh.root}: none of the demo domains ({', '.join(tables)}) is in this mesh; demo-data writes "
            "landing files for the demo mesh only."
        )
    written = []
    con = engines.connect_local()  # the demo's landing data is generated by DuckDB SQL
    try:
        for domain_name in present:
            folder = mesh.domains[domain_name].path / "landing"
            folder.mkdir(exist_ok=True)
            for table, sql in tables[domain_name].items():
                final = folder / f"{table}.parquet"
                partial = folder / f".{table}.parquet.partial"
                escaped = str(partial).replace("'", "''")
                con.execute(f"copy ({sql}) to '{escaped}' (format parquet)")
                os.replace(partial, final)  # readers never see a half-written file
                final_sql = str(final).replace("'", "''")
                rows = con.execute(f"select count(*) from read_parquet('{final_sql}')").fetchone()
                written.append((final, int(rows[0]) if rows else 0))
    finally:
        con.close()
    return written


_BUILD_OUTPUT = ("target", "dbt_packages", "logs", "*.duckdb", "*.wal", "landing", ".user.yml")


def copy_demo_mesh(source: Path, dest: Path) -> Path:
    """Copy the demo mesh's sources (mesh.yml, projects/, macros/) without build output or data."""
    import shutil

    ignored = shutil.ignore_patterns(*_BUILD_OUTPUT)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "mesh.yml", dest / "mesh.yml")
    shutil.copytree(source / "projects", dest / "projects", ignore=ignored)
    shutil.copytree(source / "macros", dest / "macros", ignore=ignored)
    return dest
