"""Bad input: one clear `error:` line, the documented exit code, no traceback, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import run_mesh, written_files


def assert_refused(root: Path, code: int, message: str, *args: str) -> str:
    before = written_files(root)
    result = run_mesh(*(args or ("build",)), cwd=root)
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert written_files(root) == before, "a refused command must not write anything"
    return lines[0]


def write_mesh_yml(root: Path, text: str) -> None:
    (root / "mesh.yml").write_text(text)


@pytest.mark.subprocess_lane  # an error's exit code and stderr, from a real process
def test_malformed_mesh_yml(plain_mesh: Path):
    write_mesh_yml(plain_mesh, "name: m\ndomains:\n  shop: {path: shop\n")
    assert_refused(plain_mesh, 2, "mesh.yml:4:1: malformed YAML")


def test_malformed_dependencies_yml(plain_mesh: Path):
    (plain_mesh / "reporting" / "dependencies.yml").write_text("projects:\n  - name: shop\n  name: x\n")
    assert_refused(plain_mesh, 2, "reporting/dependencies.yml:3:3: malformed YAML")


def test_unknown_project_in_dependencies_yml(plain_mesh: Path):
    (plain_mesh / "reporting" / "dependencies.yml").write_text("projects:\n  - name: shop\n  - name: shoop\n")
    assert_refused(
        plain_mesh,
        2,
        "reporting/dependencies.yml:3: unknown project 'shoop': no domain of the mesh has that name. "
        "Did you mean 'shop'?",
    )


def test_duplicate_project_name(plain_mesh: Path):
    shutil.copytree(plain_mesh / "hr", plain_mesh / "hr_copy")
    assert_refused(plain_mesh, 2, "hr_copy/dbt_project.yml: project name 'hr' is already used by hr/dbt_project.yml")


def test_duplicate_domain_in_mesh_yml(plain_mesh: Path):
    write_mesh_yml(plain_mesh, "name: m\ndomains:\n  hr: {path: hr}\n  shop: {path: shop}\n  hr: {path: hr}\n")
    assert_refused(plain_mesh, 2, "mesh.yml:5: duplicate key 'hr' (first written on line 3)")


def test_domain_path_outside_the_root(plain_mesh: Path):
    write_mesh_yml(plain_mesh, "name: m\ndomains:\n  hr:\n    path: ../../elsewhere\n")
    assert_refused(plain_mesh, 2, "mesh.yml:4: domain 'hr' points outside the mesh root: ../../elsewhere")


def test_domain_name_differs_from_project_name(plain_mesh: Path):
    write_mesh_yml(plain_mesh, "name: m\ndomains:\n  people: {path: hr}\n")
    assert_refused(plain_mesh, 2, "project name 'hr' differs from its domain name 'people' in mesh.yml")


def test_unknown_key_in_mesh_yml(plain_mesh: Path):
    write_mesh_yml(plain_mesh, "name: m\ndomians:\n  hr: {path: hr}\n")
    assert_refused(plain_mesh, 2, "mesh.yml:2: unknown key 'domians' at domians. Did you mean 'domains'?")


def test_corrupt_upstream_manifest(plain_mesh: Path):
    (plain_mesh / "shop" / "target").mkdir()
    (plain_mesh / "shop" / "target" / "manifest.json").write_text('{"nodes": {"x": ')
    assert_refused(plain_mesh, 3, "shop/target/manifest.json:1:17: manifest is corrupt", "build", "reporting")


def test_missing_loom_manifest(plain_mesh: Path):
    for project in ("shop", "reporting", "audit"):  # shop is now outside the mesh, known only by its manifest
        shutil.rmtree(plain_mesh / project)
    (plain_mesh / "billing" / "dbt_loom.config.yml").write_text(
        "manifests:\n  - name: shop\n    type: file\n    config: {path: ../shop/target/manifest.json}\n"
    )
    message = assert_refused(plain_mesh, 3, "shop/target/manifest.json: manifest not found.", "build", "billing")
    assert "billing/dbt_loom.config.yml:2" in message


@pytest.mark.subprocess_lane
def test_debug_shows_the_traceback(plain_mesh: Path):
    write_mesh_yml(plain_mesh, "name: m\ndomains: [\n")
    result = run_mesh("--debug", "build", cwd=plain_mesh)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "error: mesh.yml" in result.stderr


@pytest.mark.subprocess_lane
@pytest.mark.parametrize("args", [("build", "--jobs", "0"), ("bild",)])
def test_usage_errors_exit_2(plain_mesh: Path, args: tuple[str, ...]):
    result = run_mesh(*args, cwd=plain_mesh)
    assert result.returncode == 2
