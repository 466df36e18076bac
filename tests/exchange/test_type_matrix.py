"""Types cross a release exactly: every type a DuckDB contract may declare, producer to consumer.

Parquet cannot hold some DuckDB types as they are (HUGEINT would come back as DOUBLE, TIME WITH
TIME ZONE would lose its offset, ENUM, BIT and BIGNUM come back as text, ...). The consumer's
view of a release casts each column back to the producer's type; where no type carries a value
exactly, the release is refused with the column and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Built, copy_fixture, copy_tree, run_mesh


@pytest.fixture(scope="session")
def type_matrix(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = copy_fixture("type_matrix", tmp_path_factory.mktemp("types"))
    return Built(root, run_mesh("build", cwd=root))


def _describe_and_values(database: Path, relation: str) -> tuple[list[tuple[str, str]], list[tuple]]:
    import duckdb

    con = duckdb.connect(str(database), read_only=True)
    try:
        described = [(r[0], r[1]) for r in con.execute(f"describe {relation}").fetchall()]
        as_text = ", ".join(f"cast({name} as varchar)" for name, _ in described)
        values = con.execute(f"select {as_text} from {relation} order by c_integer nulls last").fetchall()
        return described, values
    finally:
        con.close()


def test_every_type_arrives_with_its_type_and_its_values(type_matrix: Built) -> None:
    assert type_matrix.result.returncode == 0, type_matrix.output
    produced = _describe_and_values(type_matrix.root / "producer/producer.duckdb", "main.all_types")
    consumed = _describe_and_values(type_matrix.root / "consumer/consumer.duckdb", "main.copied_types")
    assert consumed[0] == produced[0]  # same column types, HUGEINT, TIMETZ, ENUM, BIT, BIGNUM ... included
    assert consumed[1] == produced[1]  # same values, extremes and nulls included
    assert len(produced[1]) == 3


def test_the_release_records_each_type_and_its_carrier(type_matrix: Built) -> None:
    folder = type_matrix.root / "exchange/products/producer/all_types/unversioned"
    release_id = json.loads((folder / "current.json").read_text())["release_id"]
    descriptor = json.loads((folder / "releases" / release_id / "release.json").read_text())
    assert descriptor["engine"] == "duckdb"
    carried = {c["name"]: (c["type"], c["parquet_type"]) for c in descriptor["columns"]}
    assert carried["c_hugeint"] == ("HUGEINT", "DECIMAL(38,0)")
    assert carried["c_timetz"] == ("TIME WITH TIME ZONE", "VARCHAR")
    assert carried["c_enum"] == ("ENUM('sad', 'ok', 'happy')", "VARCHAR")
    assert carried["c_nested"][1] == "STRUCT(h DECIMAL(38,0), t VARCHAR, l DECIMAL(38,0)[])"
    assert carried["c_integer"] == ("INTEGER", "INTEGER")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "select union_value(num := 2)::union(num integer, str varchar) as u",
            "model.producer.odd: column 'u' has type UNION(num INTEGER, str VARCHAR) (union), which a Parquet "
            "release cannot carry exactly: cast it to a STRUCT or to VARCHAR in the model",
        ),
        (
            "select 170141183460469231731687303715884105727::hugeint as big",
            "cannot write the release data: a value of big (HUGEINT or UHUGEINT) does not fit DECIMAL(38,0), the "
            "type a release carries such columns as (Parquet has no 128-bit integers). Cast the column",
        ),
    ],
    ids=["union", "hugeint-overflow"],
)
def test_a_type_no_release_carries_is_refused_and_the_old_release_stays(
    type_matrix: Built, tmp_path: Path, sql: str, message: str
) -> None:
    root = copy_tree(type_matrix.root, tmp_path / "mesh")
    current = root / "exchange/products/producer/all_types/unversioned/current.json"
    before = current.read_text()
    (root / "producer/models/odd.sql").write_text(sql + "\n")
    (root / "producer/models/odd.yml").write_text("models:\n  - name: odd\n    config: {access: public}\n")
    result = run_mesh("build", "producer", cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "producer: FAILED" in result.stdout and "error: publish refused: " in result.stdout
    assert message in result.stdout
    assert current.read_text() == before  # the previous release stays current
    assert not list((root / "exchange/.tmp").iterdir())  # nothing half-written left behind


def test_a_descriptor_type_that_is_not_a_type_never_reaches_sql(type_matrix: Built, tmp_path: Path) -> None:
    """A release descriptor is another domain's data: its types are parsed as types, never pasted as SQL."""
    root = copy_tree(type_matrix.root, tmp_path / "mesh")
    folder = root / "exchange/products/producer/all_types/unversioned"
    path = folder / "releases" / json.loads((folder / "current.json").read_text())["release_id"] / "release.json"
    descriptor = json.loads(path.read_text())
    descriptor["columns"][0]["type"] = "INTEGER) as c_tinyint from read_csv('/etc/passwd') --"
    path.write_text(json.dumps(descriptor))
    stub = root / "consumer/dbt_packages/producer/models/all_types.sql"
    before = stub.read_text()
    result = run_mesh("build", "consumer", cwd=root)
    assert result.returncode == 3, result.stdout + result.stderr
    assert 'release cannot be read safely (not a DuckDB type: "INTEGER) as c_tinyint from read_csv(' in result.stderr
    assert stub.read_text() == before and "/etc/passwd" not in before
