"""What the tests share: copy tiny real meshes to a temp dir and run the real `mesh` and `dbt` command lines on them.

A module of its own, imported as ``tests.helpers`` by every test and conftest: it is loaded once per
test process, so each process has one pool of warm command servers (tests/cli_server.py).
``MESH_TESTS_SUBPROCESS=1`` runs every command as a new interpreter instead (the subprocess lane of
`make test`, where a start-up or shutdown bug cannot hide); ``MESH_TESTS_TIMEOUT`` (seconds) then caps
each command's time, so a process that never exits fails the lane in that time.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mesh_tools.demo_data import copy_demo_mesh
from tests.cli_server import ForkServers

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DBT = Path(sys.executable).parent / "dbt"


def mesh_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "False"
    env.pop("DBT_PROFILES_DIR", None)
    return env


SERVERS = ForkServers(REPO, mesh_env)
atexit.register(SERVERS.stop)


def in_subprocess_lane() -> bool:
    """Whether commands run as new interpreters (``MESH_TESTS_SUBPROCESS=1``) rather than forks of a warm server."""
    return os.environ.get("MESH_TESTS_SUBPROCESS") == "1"


def run_command(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
                memory: int | None = None, merge: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run `mesh ...` or `dbt ...` as a command-line process in ``cwd``, with ``env`` (default: mesh_env()).

    The process is forked from a warm server that has dbt imported (tests/cli_server.py): the same
    command, a fraction of the start-up. ``MESH_TESTS_SUBPROCESS=1`` starts a new interpreter instead
    (``python -m mesh_tools.cli``, the installed ``dbt``).
    ``memory``: its address space in bytes (a runaway allocation is then a MemoryError, not a swapping machine).
    ``merge``: stderr into stdout, in the order they were written (as a terminal shows them); stderr is then "".
    """
    env = mesh_env() if env is None else env
    if in_subprocess_lane():
        command = [sys.executable, "-m", "mesh_tools.cli", *argv[1:]] if argv[0] == "mesh" else [str(DBT), *argv[1:]]
        limit = (lambda: limit_memory(memory)) if memory else None
        cap = float(os.environ.get("MESH_TESTS_TIMEOUT") or timeout)
        done = subprocess.run(command, cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"} if merge else env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                              timeout=min(timeout, cap), preexec_fn=limit)  # fmt: skip
        return subprocess.CompletedProcess(done.args, done.returncode, done.stdout, done.stderr or "")
    return SERVERS.run(argv, cwd, env, timeout, memory, merge)


def limit_memory(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_mesh(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real `mesh` command line in ``cwd``."""
    return run_command(["mesh", *args], cwd)


def run_dbt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real dbt CLI, as a domain team does in its own project folder."""
    return run_command(["dbt", *args], cwd)


def copy_fixture(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(FIXTURES / name, target, symlinks=True)
    return target


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def copy_demo(dest: Path) -> Path:
    return copy_demo_mesh(REPO, dest)


def manifest(project_dir: Path) -> dict:
    return json.loads((project_dir / "target" / "manifest.json").read_text())


def written_files(root: Path) -> set[str]:
    """Every file below ``root``: to prove a failed command wrote nothing."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


class Built:
    """A mesh a session fixture built once: its folder, the build's result and its whole output."""

    def __init__(self, root: Path, result: subprocess.CompletedProcess[str]):
        self.root = root
        self.result = result
        self.output = result.stdout + result.stderr
