"""Early cutoff, without dbt: the content hash on real Parquet files, what a release comparison leaves aside, and a
confirmation bound to the release it confirms."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mesh_tools.dbt.engines import content_hash
from mesh_tools.model.release import Confirmation, Contract, ReleaseDescriptor, ReleaseInterface
from mesh_tools.store.exchange import Exchange

# f as text cast to DOUBLE: a -0.0 literal would be a DECIMAL, which has no negative zero
ROWS = "(1, 'a', 'x', '1.5', '2026-01-01'), (2, 'b', '', '-0.0', '2026-01-02'), (3, NULL, 'z', '2.0', '2026-01-03')"
COLUMNS = "t(id, s, u, f, _built_at)"


def _parquet(tmp_path: Path, name: str, select: str) -> Path:
    path = tmp_path / f"{name}.parquet"
    con = duckdb.connect()
    try:
        con.execute(f"copy ({select}) to '{path}' (format parquet)")
    finally:
        con.close()
    return path


def _rows(tmp_path: Path, name: str, rows: str = ROWS, columns: str = "*", order: str = "id") -> Path:
    typed = (
        "select id::integer as id, s::varchar as s, u::varchar as u, f::double as f, _built_at::varchar as _built_at"
    )
    return _parquet(tmp_path, name, f"select {columns} from ({typed} from (values {rows}) {COLUMNS}) order by {order}")


def test_the_hash_is_order_free_and_column_order_free(tmp_path: Path) -> None:
    base = content_hash(_rows(tmp_path, "base"))
    assert base.startswith(f"sum2x64-duckdb-{duckdb.__version__}:3:")
    assert content_hash(_rows(tmp_path, "desc", order="id desc")) == base
    assert content_hash(_rows(tmp_path, "reordered", columns="_built_at, f, u, s, id")) == base


@pytest.mark.parametrize(
    ("why", "rows"),
    [
        ("a duplicated row", ROWS + ", (1, 'a', 'x', '1.5', '2026-01-01')"),
        ("a value moved between two columns", ROWS.replace("(1, 'a', 'x',", "(1, 'x', 'a',")),
        ("NULL where there was ''", ROWS.replace("(2, 'b', '',", "(2, 'b', NULL,")),
        ("0.0 where there was -0.0", ROWS.replace("'-0.0'", "'0.0'")),
        ("another number", ROWS.replace("'2.0'", "'2.0000001'")),
    ],
)
def test_every_change_of_the_rows_changes_the_hash(tmp_path: Path, why: str, rows: str) -> None:
    assert content_hash(_rows(tmp_path, "changed", rows)) != content_hash(_rows(tmp_path, "base")), why


def test_audit_columns_are_left_out_and_only_they(tmp_path: Path) -> None:
    base, later = _rows(tmp_path, "base"), _rows(tmp_path, "later", ROWS.replace("2026-01-0", "2027-05-0"))
    assert content_hash(later) != content_hash(base)  # undeclared: an always-changing column is rows that changed
    assert content_hash(later, ["_BUILT_AT"]) == content_hash(base, ["_built_at"])  # names in any case
    edited = _rows(tmp_path, "edited", ROWS.replace("'x', '1.5', '2026-01-01'", "'x', '1.5', '2027-01-01'").replace(
        "(1, 'a'", "(1, 'A'"))  # fmt: skip
    assert content_hash(edited, ["_built_at"]) != content_hash(base, ["_built_at"])


def _descriptor(**changes: object) -> ReleaseDescriptor:
    node = {"name": "orders", "description": "Orders.", "created_at": 1.0, "checksum": {"checksum": "a"}}
    fields: dict[str, object] = {
        "product": "shop.orders", "project": "shop", "model": "orders", "node": "model.shop.orders",
        "release_id": "r20260101T000000000000Z-aaaaaa", "produced_at": "2026-01-01T00:00:00+00:00",
        "contract": Contract(enforced=False, columns=[]), "contract_hash": "sha256:1", "row_count": 3, "files": [],
        "content_hash": "sum2x64-duckdb-2.0.1:3:1:2", "interface": ReleaseInterface(node=node),
    }  # fmt: skip
    fields.update(changes)
    return ReleaseDescriptor.model_validate(fields)


def test_a_release_equals_the_current_one_but_for_its_run_facts() -> None:
    current = _descriptor()
    rerun = _descriptor(
        release_id="r20260102T000000000000Z-bbbbbb", produced_at="2026-01-02T00:00:00+00:00",
        build={"invocation_id": "two", "built_at": "2026-01-02"}, tests={"passed": 4},
        interface=ReleaseInterface(node={"name": "orders", "description": "Orders.", "created_at": 2.0,
                                         "checksum": {"checksum": "b"}}),  # a comment in its SQL
    )  # fmt: skip
    assert rerun.differences(current) == []
    assert _descriptor(contract_hash="sha256:2").differences(current) == ["contract_hash"]
    assert _descriptor(description="Other.").differences(current) == ["description"]
    assert _descriptor(content_hash="sum2x64-duckdb-2.0.1:3:1:3").differences(current) == ["its rows"]
    assert _descriptor(content_hash=None).differences(_descriptor(content_hash=None)) == ["its rows"]
    assert _descriptor(audit_columns=["_built_at"]).differences(current) == ["audit_columns"]
    meta = ReleaseInterface(node={"name": "orders", "description": "Orders.", "meta": {"owner": "x"}})
    assert _descriptor(interface=meta).differences(current) == ["interface"]


def test_a_confirmation_confirms_only_the_release_it_names(tmp_path: Path) -> None:
    exchange = Exchange(tmp_path / "exchange", env="prod")
    current = _descriptor()
    record = Confirmation(product=current.product, release_id=current.release_id, confirmed_at="2026-01-03",
                          invocation_id="three")  # fmt: skip
    exchange.confirm(record, current)
    assert exchange.confirmation(current) == record
    assert exchange.vouches(current, "three") and not exchange.vouches(current, "four")
    other = _descriptor(release_id="r20260104T000000000000Z-cccccc")  # the pointer moved on: no confirmation
    assert exchange.confirmation(other) is None and not exchange.vouches(other, "three")
    assert exchange.confirmation(current, channel="dev") is None  # per channel
    key = exchange.confirmation_key("shop", "orders", None)
    (exchange.root / key).write_text("{not json")  # damaged: only the "confirmed at" is lost
    assert exchange.confirmation(current) is None
