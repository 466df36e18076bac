"""Hostile and broken input: each attack or fault ends in one clear error, and nothing is lost or replaced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_dbt, run_mesh, written_files

PRODUCT = Path("exchange/products/shop/orders/v2")


def current_id(root: Path, product: Path = PRODUCT) -> str:
    return json.loads((root / product / "current.json").read_text())["release_id"]


def clear_error(result, code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert message in output, output
    assert "Traceback" not in output and "internal error" not in output, output


def test_docs_never_replaces_a_folder_it_did_not_write(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    shop_before = written_files(root / "shop")
    clear_error(run_mesh("docs", "-o", "shop", cwd=root), 2, "would write over domain 'shop'")
    clear_error(run_mesh("docs", "-o", "exchange", cwd=root), 2, "would write over the exchange")
    clear_error(run_mesh("docs", "-o", ".", cwd=root), 2, "would replace the folder holding the mesh")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("mine")
    clear_error(run_mesh("docs", "-o", "mine", cwd=root), 2, "was not written by `mesh docs`")
    assert (root / "mine" / "notes.txt").read_text() == "mine"
    assert written_files(root / "shop") == shop_before
    # its own folder, marked, is replaced run after run
    for _ in range(2):
        assert run_mesh("docs", "-o", "site2", cwd=root).returncode == 0
    assert (root / "site2" / ".mesh-output").is_file() and (root / "site2" / "index.html").is_file()
    # the same guard for the folder mesh.yml names
    (root / "mesh.yml").write_text("name: plain\ndocs:\n  path: .\n")
    clear_error(run_mesh("docs", cwd=root), 2, "would replace the folder holding the mesh")
    assert written_files(root / "shop") == shop_before and (root / ".git").exists() is False


def test_the_exchange_cannot_be_the_mesh_root_or_a_domain(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    for path, message in ((".", "is the mesh root or holds it"), ("shop/exchange", "overlaps domain 'shop'")):
        (root / "mesh.yml").write_text(f"name: plain\nexchange:\n  path: {path}\n")
        clear_error(run_mesh("build", cwd=root), 2, message)


def test_a_model_version_that_is_a_path_publishes_nothing(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    schema = root / "shop/models/schema.yml"
    odd = "      - v: '2/../../../billing/x/v2'\n        defined_in: orders_v2\n"
    text = schema.read_text().replace("      - v: 2\n", odd)
    schema.write_text(text.replace("latest_version: 2", "latest_version: '2/../../../billing/x/v2'"))
    before = written_files(root / "exchange")
    result = run_mesh("build", "shop", cwd=root)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "publish refused" in output and "cannot name a folder" in output, output
    assert "Traceback" not in output
    assert written_files(root / "exchange") - before <= {"log.jsonl"}, written_files(root / "exchange") - before


def test_a_forged_data_file_is_never_served(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    data = root / PRODUCT / "releases" / current_id(root) / "data.parquet"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes
    data.write_bytes(bytes(raw))
    clear_error(run_mesh("stitch", "reporting", cwd=root), 1, "does not match the SHA-256 its descriptor records")


def test_a_release_read_from_another_folder_is_refused(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    v1 = Path("exchange/products/shop/orders/v1")
    planted = "r20990101T000000000000Z-abcdef"
    shutil.copytree(root / v1 / "releases" / current_id(root, v1), root / PRODUCT / "releases" / planted)
    (root / PRODUCT / "current.json").write_text(json.dumps({"release_id": planted}))
    clear_error(run_mesh("stitch", "reporting", cwd=root), 1, "A release is read only from its own folder")
    (root / PRODUCT / "current.json").write_text(json.dumps({"release_id": "../../v1/releases/x"}))
    clear_error(run_mesh("stitch", "reporting", cwd=root), 1, "current-release pointer is corrupt")


def test_a_pin_that_is_a_path_is_refused(plain_mesh_copy: Path) -> None:
    (plain_mesh_copy / "reporting/mesh_domain.yml").write_text("pins:\n  shop.orders.v2: ../../v1/releases/x\n")
    result = run_mesh("build", "reporting", cwd=plain_mesh_copy)
    clear_error(result, 2, "reporting/mesh_domain.yml:2")
    assert "is not a release id" in result.stderr


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(10)
)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("reporting/dependencies.yml", BOMB, "reporting/dependencies.yml:"),
        ("reporting/dependencies.yml", "projects: " + "[" * 600 + "]" * 600 + "\n", "nested more than 64 levels"),
        ("reporting/dependencies.yml", b"projects:\n  - name: sh\xffop\n", "reporting/dependencies.yml:2: not UTF-8"),
        ("mesh.yml", "name: x\n" + "".join(f"key_{i}: {i}\n" for i in range(3000)), "and 2990 more problems"),
        ("reporting/dbt_project.yml", "name: '../../etc'\nprofile: reporting\n", "cannot name a folder"),
    ],
    ids=["alias-bomb", "deep", "binary", "many-unknown-keys", "name-is-a-path"],
)
def test_hostile_yaml_is_one_clear_error(plain_mesh: Path, file: str, content: str | bytes, message: str) -> None:
    path = plain_mesh / file
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = written_files(plain_mesh)
    result = run_mesh("ls", cwd=plain_mesh)  # bounded by run_mesh's timeout: a hang fails the test
    clear_error(result, 2, message)
    assert written_files(plain_mesh) == before


def test_a_dangling_pointer_is_a_problem_in_status_and_health(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    assert run_mesh("status", cwd=root).returncode == 0
    (root / PRODUCT / "current.json").write_text(json.dumps({"release_id": "r20990101T000000000000Z-abcdef"}))
    status = run_mesh("status", cwd=root)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "PROBLEM   shop.orders.v2: " in status.stdout and "release descriptor missing" in status.stdout
    assert "@ None" not in status.stdout
    health = run_mesh("health", "--format", "json", "--fail-on", "never", cwd=root)
    report = json.loads(health.stdout)
    [orders] = [p for p in report["products"] if p["product"] == "shop.orders.v2"]
    assert orders["status"] == "failing"
    assert [p["kind"] for p in orders["problems"] if p["kind"] == "release_broken"] == ["release_broken"]
    assert run_mesh("docs", cwd=root).returncode == 0
    page = (root / "site/products/shop.orders.v2.html").read_text()
    assert "cannot be read: consumers cannot build on it" in page and "release descriptor missing" in page


@pytest.mark.parametrize(
    ("dbt_args", "message"),
    [
        (("run",), "was `run`, not `build`"),
        (("test",), "was `test`, not `build`"),
        (("build", "--empty"), "ran with --empty"),
        (("build", "--exclude", "resource_type:test"), "did not run in its last build (excluded or not selected)"),
        (("build", "--exclude-resource-type", "test"), "did not run in its last build (excluded or not selected)"),
    ],
    ids=["run", "test-alone", "empty", "exclude-tests", "exclude-resource-type"],
)
def test_the_gate_publishes_only_after_a_complete_build(plain_mesh_copy: Path, dbt_args: tuple, message: str) -> None:
    root = plain_mesh_copy
    before = current_id(root)
    built = run_dbt(*dbt_args, cwd=root / "shop")
    assert built.returncode == 0, built.stdout[-2000:]
    result = run_mesh("publish", "shop", cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout + result.stderr, result.stdout + result.stderr
    assert current_id(root) == before


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"metadata": {}, "nodes": []}', "'nodes' is a list, not an object"),
        ('{"metadata": {}, "nodes": {"model.shop.x": 3}}', "'nodes.model.shop.x' is not an object"),
        ("[1, 2]", "the file holds a list, not an object"),
    ],
    ids=["nodes-list", "node-number", "top-level-list"],
)
def test_a_malformed_manifest_is_one_clear_error(plain_mesh_copy: Path, text: str, problem: str) -> None:
    (plain_mesh_copy / "shop/target/manifest.json").write_text(text)
    for command in (("check", "--no-sqlfluff", "shop"), ("stitch", "reporting")):
        result = run_mesh(*command, cwd=plain_mesh_copy)
        output = result.stdout + result.stderr
        assert result.returncode in (1, 3), output
        assert f"shop/target/manifest.json: not a dbt manifest: {problem}" in output, output
        assert "Traceback" not in output and "internal error" not in output, output


def test_a_model_file_that_is_not_utf8_is_named(plain_mesh_copy: Path) -> None:
    model = plain_mesh_copy / "shop/models/orders_v1.sql"
    model.write_bytes(model.read_bytes() + b"\n-- caf\xe9\n")
    before = current_id(plain_mesh_copy)
    result = run_mesh("build", "shop", cwd=plain_mesh_copy)
    clear_error(result, 1, "shop/models/orders_v1.sql:")
    assert "not UTF-8 text (byte 0xe9)" in result.stdout
    assert current_id(plain_mesh_copy) == before
