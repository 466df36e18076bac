"""Strict governance config: each fixture in tests/fixtures/config_errors gives its exact message, exit 2."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, copy_fixture, run_mesh, written_files

CASES_DIR = FIXTURES / "config_errors"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())
# The input files a case may hold -> where the runner puts them in plain_mesh (and how messages name them).
INPUTS = {"mesh.yml": "mesh.yml", "mesh_domain.yml": "reporting/mesh_domain.yml"}
_NAMED = re.compile(r"^(?:\(\d+\) )?([\w/.-]+\.yml):(\d+):", re.M)


@pytest.mark.parametrize("case", CASES)
def test_config_error_fixture(case: str, tmp_path: Path):
    folder = CASES_DIR / case
    root = copy_fixture("plain_mesh", tmp_path)
    for name, where in INPUTS.items():
        if (folder / name).exists():
            shutil.copy(folder / name, root / where)
    before = written_files(root)
    result = run_mesh("check", cwd=root)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == "error: " + (folder / "expected.txt").read_text()
    assert written_files(root) == before


def case_problems(folder: Path) -> list[str]:
    """What is wrong with one case folder: it must hold its expected message and the input files the runner
    copies, nothing else, and the message must name (file:line) an input of its own at a line it has."""
    files = {p.name for p in folder.iterdir()}
    inputs = files & set(INPUTS)
    problems = [f"{name}: not an input the runner copies" for name in sorted(files - inputs - {"expected.txt"})]
    if not inputs:
        problems.append("no input file (mesh.yml or mesh_domain.yml)")
    expected = (folder / "expected.txt").read_text() if "expected.txt" in files else ""
    if not expected.strip():
        return [*problems, "no expected message (expected.txt missing or empty)"]
    named = _NAMED.findall(expected)
    if not named:
        problems.append(f"the expected message names no fixture file: {expected.strip()[:80]!r}")
    for shown, line in named:
        source = next((name for name, where in INPUTS.items() if where == shown), None)
        if source not in inputs:
            problems.append(f"the expected message names {shown}, which this case does not provide")
        elif int(line) > len((folder / source).read_text().splitlines()):
            problems.append(f"the expected message points at {shown}:{line}, past the end of {source}")
    return problems


def test_every_case_has_its_expected_message():
    assert [p.name for p in CASES_DIR.iterdir() if not p.is_dir()] == []  # a loose file is a fixture nothing runs
    assert len(CASES) >= 6
    assert {case: case_problems(CASES_DIR / case) for case in CASES if case_problems(CASES_DIR / case)} == {}


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"mesh.yml": "name: x\n"}, "no expected message (expected.txt missing or empty)"),
        ({"mesh.yml": "name: x\n", "expected.txt": "\n"}, "no expected message (expected.txt missing or empty)"),
        ({"mesh.yml": "name: x\n", "expected.txt": "something is wrong\n"}, "names no fixture file"),
        (
            {"mesh.yml": "name: x\n", "expected.txt": "reporting/mesh_domain.yml:1: bad\n"},
            "names reporting/mesh_domain.yml, which this case does not provide",
        ),
        ({"mesh.yml": "name: x\n", "expected.txt": "mesh.yml:9: bad\n"}, "past the end of mesh.yml"),
        ({"expected.txt": "mesh.yml:1: bad\n"}, "no input file"),
        ({"mesh.yaml": "name: x\n", "expected.txt": "mesh.yml:1: bad\n"}, "mesh.yaml: not an input the runner copies"),
    ],
    ids=[
        "no-expected",
        "empty-expected",
        "names-no-file",
        "names-a-missing-file",
        "past-the-end",
        "no-input",
        "unknown-input",
    ],  # fmt: skip
)
def test_a_broken_case_is_caught(tmp_path: Path, files: dict[str, str], problem: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    problems = case_problems(tmp_path)
    assert any(problem in p for p in problems), problems
