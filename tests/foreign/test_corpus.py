"""Meshes written the way other teams write them build with plain `mesh build`, and refuse non-public refs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.foreign.corpus import MESHES, BuiltForeign, run_foreign
from tests.helpers import copy_tree


def rows(root: Path, database: str, relation: str) -> int:
    import duckdb

    con = duckdb.connect(str(root / database), read_only=True)
    try:
        return int(con.execute(f"select count(*) from {relation}").fetchone()[0])
    finally:
        con.close()


@pytest.mark.parametrize("name", sorted(MESHES))
def test_corpus_mesh_builds_and_publishes(corpus: dict[str, BuiltForeign], name: str) -> None:
    built = corpus[name]
    assert built.result.returncode == 0, built.output
    assert "Traceback" not in built.output
    assert re.search(r"mesh build: (\d+) of \1 domains succeeded", built.output), built.output
    for database, relation, expected in built.mesh.final:
        assert rows(built.root, database, relation) == expected, (database, relation)
    # governance is advisory without a mesh.yml: findings are counted, nothing is refused for them
    assert "publish refused" not in built.output
    if "governance findings" in built.output:
        assert "advisory) — run `mesh check`" in built.output


@pytest.mark.parametrize("name", sorted(MESHES))
def test_corpus_mesh_refuses_a_non_public_cross_project_ref(
    corpus: dict[str, BuiltForeign], name: str, tmp_path: Path
) -> None:
    built = corpus[name]
    consumer, file, sql, message = built.mesh.bad_ref
    folder = copy_tree(built.root.parent if built.mesh.subdir else built.root, tmp_path / name)
    root = folder / built.mesh.subdir if built.mesh.subdir else folder
    (root / file).write_text(sql + "\n")
    result = run_foreign(built.mesh, root, "build", consumer)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout, result.stdout
    assert f"{file}:1: " in result.stdout  # located at the ref
    assert "Only public models can be referenced from another project" in result.stdout


def test_a_view_over_an_attached_database_is_published(corpus: dict[str, BuiltForeign]) -> None:
    """ingest's products are views over raw databases attached in its profile: read through dbt, they publish."""
    built = corpus["attached_raw"]
    current = json.loads((built.root / "exchange/products/ingest/orders/unversioned/current.json").read_text())
    release = built.root / "exchange/products/ingest/orders/unversioned/releases" / current["release_id"]
    descriptor = json.loads((release / "release.json").read_text())
    assert descriptor["row_count"] == 5
    assert [c["name"] for c in descriptor["columns"]] == ["order_id", "amount", "ordered_at", "country_name"]


def test_loom_labels_reverse_edge_and_shared_file(corpus: dict[str, BuiltForeign]) -> None:
    built = corpus["loom_chain"]
    out = built.result.stdout
    # the optional manifest revenue lists for its own consumer is dropped, and the build says why
    assert "revenue/dbt_loom.config.yml:10: optional dbt-loom manifest of 'customer_success' in revenue ignored" in out
    # labels are not project names: the chain platform_core -> revenue -> customer_success is built in order
    order = [line.split("]")[1].split(":")[0].strip() for line in out.splitlines() if line.endswith(": started")]
    assert order == ["platform_core", "revenue", "customer_success"]
    # the three share ../database.db: one at a time, so no lock error
    assert "Could not set lock" not in built.output


def test_undeclared_outside_project_is_a_note_and_deprecation_a_warning(corpus: dict[str, BuiltForeign]) -> None:
    out = corpus["monorepo_layout"].result.stdout
    assert (
        "note: projects/foundational/dbt/dependencies.yml:2: northwind_foundational declares project "
        "'dbt_regulated_data', which is not a project of this mesh; ignored" in out
    )
    assert "Found a reference to int_order_items__metrics.v1, which was deprecated" in out
