"""The `mesh` command as a process: it starts, answers, exits with its code and leaves nothing on stderr.

Every test here is in the subprocess lane of `make test` (``-m subprocess_lane`` with
``MESH_TESTS_SUBPROCESS=1``): each command is then a new interpreter, ``python -m mesh_tools.cli``,
so what the warm fork server of the other runs does once for all (imports, import-time state, the
interpreter's shutdown: atexit, threads left running) happens for each command as it does for a user.
Cheap on purpose: no build of a whole mesh, one domain built at most.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_mesh

pytestmark = pytest.mark.subprocess_lane


def test_help_lists_the_commands_and_exits_0(tmp_path: Path) -> None:
    result = run_mesh("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Exit codes:" in result.stdout
    for command in ("build", "doctor", "ls", "publish", "health"):
        assert f"\n  {command} " in result.stdout
    assert result.stderr == ""


def test_ls_lists_the_domains_upstreams_first(plain_mesh: Path) -> None:
    result = run_mesh("ls", cwd=plain_mesh)
    assert result.returncode == 0, result.stderr
    domains = [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()]
    assert sorted(domains) == ["audit", "billing", "hr", "reporting", "shop"]
    assert domains.index("shop") < min(domains.index(d) for d in ("audit", "billing", "reporting"))
    assert result.stderr == ""


def test_doctor_finds_nothing_that_would_stop_a_build(plain_mesh: Path) -> None:
    result = run_mesh("doctor", cwd=plain_mesh)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "edges (3):" in result.stdout
    assert "nothing would stop `mesh build`." in result.stdout
    assert result.stderr == ""


def test_a_one_domain_build_runs_dbt_and_exits_cleanly(plain_mesh: Path) -> None:
    """dbt in the command's own process (its threads, its adapter's connections), then a clean exit."""
    result = run_mesh("build", "hr", cwd=plain_mesh)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mesh build: 1 of 1 domains succeeded" in result.stdout
    assert (plain_mesh / "hr" / "target" / "run_results.json").is_file()
    assert result.stderr == ""
