"""Staleness by content: a manifest is current when its files are what the recorded parse read, whatever their times.

The judgement runs on the session build's shop domain (built by the mesh: its manifest has a record);
the command-line tests prove that `mesh check` judges a restored edit, and never writes a domain's target/.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from mesh_tools.core.errors import display_path
from mesh_tools.core.mesh import Domain, load_mesh
from mesh_tools.dbt import staleness
from tests.helpers import run_mesh


def _domain(root: Path, name: str = "shop") -> Domain:
    return load_mesh(root).domains[name]


def _judge(root: Path, name: str = "shop") -> staleness.Judgement:
    mesh = load_mesh(root)
    return staleness.judge(mesh.domains[name], staleness.others_of(mesh))


def _edit_keeping_time(path: Path, text: str) -> None:
    """Change a file's content and give it back its modification time, as `cp -p`, `tar x`, `rsync -a` do."""
    stat = path.stat()
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_the_mesh_records_what_each_manifest_was_parsed_from(plain_mesh_copy: Path) -> None:
    domain = _domain(plain_mesh_copy)
    record = json.loads((domain.target_dir / staleness.RECORD).read_text())
    assert record["invocation_id"] == staleness.invocation_of(domain.manifest_path)
    assert (
        record["files"]["models/schema.yml"]
        == hashlib.sha256((domain.path / "models/schema.yml").read_bytes()).hexdigest()
    )
    assert "dbt_project.yml" in record["files"]
    assert _judge(plain_mesh_copy).fresh


@pytest.mark.parametrize(
    ("file", "edit"),
    [
        ("models/schema.yml", lambda text: text.replace("description: Orders of the shop, one row per order.", "")),
        ("dbt_project.yml", lambda text: text + "\nmodels:\n  shop:\n    +meta: {tier: gold}\n"),
        ("models/orders_v2.sql", lambda text: text + "\n-- same size? no: any byte counts\n"),
    ],
)
def test_an_edit_restored_with_its_old_time_is_stale(plain_mesh_copy: Path, file: str, edit) -> None:  # noqa: ANN001
    path = plain_mesh_copy / "shop" / file
    _edit_keeping_time(path, edit(path.read_text()))
    found = _judge(plain_mesh_copy)
    assert not found.fresh and found.changed == path
    assert found.why is not None and found.why.startswith(f"{display_path(path)} changed after shop's manifest was")


def test_a_new_file_with_an_old_time_and_a_removed_file_are_stale(plain_mesh_copy: Path) -> None:
    shop = plain_mesh_copy / "shop"
    old = (shop / "models/orders_v2.sql").stat().st_mtime_ns
    added = shop / "models/added.sql"
    added.write_text("select 1 as one\n")
    os.utime(added, ns=(old, old))
    assert _judge(plain_mesh_copy).changed == added
    added.unlink()
    assert _judge(plain_mesh_copy).fresh
    (shop / "models/secret_margin.sql").unlink()
    found = _judge(plain_mesh_copy)
    assert found.changed == shop / "models/secret_margin.sql"
    assert (
        found.why is not None and "models/secret_margin.sql was removed after shop's manifest was written" in found.why
    )


def test_a_newer_time_alone_proves_nothing_and_a_foreign_manifest_cannot_be_told(plain_mesh_copy: Path) -> None:
    shop = plain_mesh_copy / "shop"
    # a manifest the mesh did not write (dbt parse by hand): the record is another manifest's
    record = shop / "target" / staleness.RECORD
    mine = record.read_text()
    record.write_text(json.dumps({**json.loads(mine), "invocation_id": "another-run"}))
    found = _judge(plain_mesh_copy)
    assert not found.fresh and found.changed is None
    assert "cannot be told (no mesh command recorded what it was parsed from" in (found.why or "")
    record.write_text(mine)
    for name in ("dbt_project.yml", "models/schema.yml"):
        os.utime(shop / name)  # touched (a checkout of the same content): its content is what was parsed
    assert _judge(plain_mesh_copy).fresh
    # without a record, a file newer than the manifest counts as changed (the fast path, as before)
    record.unlink()
    assert _judge(plain_mesh_copy).changed == shop / "dbt_project.yml"


def test_dbt_parses_again_what_its_partial_parse_would_miss(plain_mesh_copy: Path) -> None:
    """dbt re-reads a YAML file only when its time changed: before the mesh runs dbt, a change its time hides
    removes dbt's partial-parse cache; a change its time shows keeps it."""
    domain = _domain(plain_mesh_copy)
    cache = domain.target_dir / "partial_parse.msgpack"
    schema = domain.path / "models/schema.yml"
    old = schema.stat()
    assert cache.is_file()
    schema.write_text("models: []\n")  # a newer time: dbt sees it
    staleness.before_dbt(domain)
    assert cache.is_file()
    os.utime(schema, ns=(old.st_atime_ns, old.st_mtime_ns))  # the same edit with the time dbt recorded
    inputs = staleness.before_dbt(domain)
    assert not cache.exists()
    assert inputs.files["models/schema.yml"] == hashlib.sha256(b"models: []\n").hexdigest()


def test_check_judges_a_restored_edit_on_a_parse_outside_the_domain(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    schema = root / "shop/models/schema.yml"
    target = _tree(root / "shop/target")

    def errors() -> tuple[list[str], str]:
        result = run_mesh("check", "--no-sqlfluff", "--format", "json", cwd=root)
        assert result.returncode == 1, result.stdout + result.stderr
        report = json.loads(result.stdout)
        return sorted(v["message"] for v in report["violations"] if v["domain"] == "shop"), result.stderr

    before, _ = errors()
    _edit_keeping_time(
        schema, schema.read_text().replace("    description: Orders of the shop, one row per order.\n", "")
    )
    after, notes = errors()
    assert "public model 'orders' has no description" in after and after != before
    assert "note: shop/models/schema.yml changed after shop's manifest was written" in notes
    assert "parsing shop again (into .mesh/parsed/shop; its target/ stays as it is)" in notes
    assert _tree(root / "shop/target") == target  # a reader wrote nothing into the domain
    again, notes = errors()  # the same files: the parse kept under .mesh/parsed is read, not made again
    assert again == after and "reading its parse of the current files (.mesh/parsed/shop/" in notes


def test_check_during_a_build_does_not_break_its_publish(plain_mesh_copy: Path) -> None:
    """`mesh check` re-parsed a domain into its target/ while a build of it ran: the build's publish then
    found its manifest and run results from different dbt runs. Now a check, run all through a build of an
    edited domain, leaves the build's artifacts alone."""
    root = plain_mesh_copy
    model = root / "shop/models/orders_v2.sql"
    model.write_text(model.read_text() + "\n-- edited: the build runs\n")
    manifest = root / "shop/target/manifest.json"
    first = manifest.stat().st_mtime_ns
    built: dict[str, object] = {}
    build = threading.Thread(target=lambda: built.update(r=run_mesh("build", "shop", cwd=root)))
    build.start()
    deadline = time.monotonic() + 300
    while manifest.stat().st_mtime_ns == first and build.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)  # the build has parsed: its dbt run is under way
    checks = 0
    other = root / "shop/models/customers_internal.sql"
    while build.is_alive():
        other.write_text(other.read_text() + f"\n-- check {checks}\n")  # stale again: each check parses
        assert run_mesh("check", "shop", "--no-sqlfluff", cwd=root).returncode in (0, 1)
        checks += 1
    build.join()
    result = built["r"]
    assert checks >= 1
    assert result.returncode == 0, result.stdout + result.stderr  # type: ignore[attr-defined]
    assert "shop             success" in result.stdout  # type: ignore[attr-defined]
    assert "publish refused" not in result.stdout + result.stderr  # type: ignore[attr-defined]
