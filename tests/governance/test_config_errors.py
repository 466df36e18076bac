"""Strict governance config: each fixture in tests/fixtures/config_errors gives its exact message, exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, copy_fixture, run_mesh, written_files

CASES = sorted(p.name for p in (FIXTURES / "config_errors").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES)
def test_config_error_fixture(case: str, tmp_path: Path):
    folder = FIXTURES / "config_errors" / case
    root = copy_fixture("plain_mesh", tmp_path)
    if (folder / "mesh.yml").exists():
        shutil.copy(folder / "mesh.yml", root / "mesh.yml")
    if (folder / "mesh_domain.yml").exists():
        shutil.copy(folder / "mesh_domain.yml", root / "reporting" / "mesh_domain.yml")
    before = written_files(root)
    result = run_mesh("check", cwd=root)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == "error: " + (folder / "expected.txt").read_text()
    assert written_files(root) == before


def test_every_case_has_its_expected_message():
    assert len(CASES) >= 6
    for case in CASES:
        assert (FIXTURES / "config_errors" / case / "expected.txt").read_text().strip()
