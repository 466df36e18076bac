"""Shared helpers: copy tiny real meshes to a temp dir and run the real `mesh` CLI on them."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from mesh_tools.demo_data import copy_demo_mesh

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DBT = Path(sys.executable).parent / "dbt"


def mesh_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "False"
    env.pop("DBT_PROFILES_DIR", None)
    return env


class _ForkServers:
    """Warm command servers (tests/cli_server.py), one per command running at the same time in this process."""

    def __init__(self) -> None:
        self.idle: list[subprocess.Popen[str]] = []
        self.lock = threading.Lock()
        self.scratch: Path | None = None

    def _start(self) -> subprocess.Popen[str]:
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cli_server.py"))],
            cwd=REPO, env=mesh_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        assert server.stdout is not None
        assert json.loads(server.stdout.readline() or "{}").get("ready"), "the command server did not start"
        return server

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float,
            memory: int | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        with self.lock:
            server = self.idle.pop() if self.idle else None
            if self.scratch is None:
                self.scratch = Path(tempfile.mkdtemp(prefix="mesh-test-output-"))
                atexit.register(shutil.rmtree, self.scratch, True)
        if server is None or server.poll() is not None:
            server = self._start()
        out = self.scratch / f"{uuid.uuid4().hex}.out"
        err = out.with_suffix(".err")
        request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err), "timeout": timeout,
                   "memory": memory}  # fmt: skip
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        reply = json.loads(server.stdout.readline())
        with self.lock:
            self.idle.append(server)
        stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        out.unlink()
        err.unlink()
        if reply.get("timeout"):
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, reply["returncode"], stdout, stderr)


_SERVERS = _ForkServers()


@atexit.register
def _stop_servers() -> None:
    """End the servers and wait for them: their commands' CPU time is then counted in this process's."""
    for server in _SERVERS.idle:
        if server.stdin:
            server.stdin.close()
    for server in _SERVERS.idle:
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def run_command(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 600, memory: int | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run `mesh ...` or `dbt ...` as a command-line process in ``cwd``, with ``env`` (default: mesh_env()).

    The process is forked from a warm server that has dbt imported (tests/cli_server.py): the same
    command, a fraction of the start-up. ``MESH_TESTS_SUBPROCESS=1`` starts a new interpreter instead.
    ``memory``: its address space in bytes (a runaway allocation is then a MemoryError, not a swapping machine).
    """
    env = mesh_env() if env is None else env
    if os.environ.get("MESH_TESTS_SUBPROCESS") == "1":
        command = [sys.executable, "-m", "mesh_tools.cli", *argv[1:]] if argv[0] == "mesh" else [str(DBT), *argv[1:]]
        limit = (lambda: limit_memory(memory)) if memory else None
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=limit)  # fmt: skip
    return _SERVERS.run(argv, cwd, env, timeout, memory)


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


def manifest(project_dir: Path) -> dict:
    return json.loads((project_dir / "target" / "manifest.json").read_text())


def written_files(root: Path) -> set[str]:
    """Every file below ``root``: to prove a failed command wrote nothing."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


class Built:
    def __init__(self, root: Path, result: subprocess.CompletedProcess[str]):
        self.root = root
        self.result = result
        self.output = result.stdout + result.stderr


@pytest.fixture(scope="session")
def plain_mesh_built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The plain_mesh fixture (no mesh.yml) built once with `mesh build`."""
    root = copy_fixture("plain_mesh", tmp_path_factory.mktemp("plain"))
    return Built(root, run_mesh("build", cwd=root))


@pytest.fixture
def plain_mesh(tmp_path: Path) -> Path:
    """A fresh, unbuilt copy of plain_mesh."""
    return copy_fixture("plain_mesh", tmp_path)


@pytest.fixture
def plain_mesh_copy(plain_mesh_built: Built, tmp_path: Path) -> Path:
    """A private copy of the built plain_mesh, for tests that change it."""
    return copy_tree(plain_mesh_built.root, tmp_path / "mesh")


def copy_demo(dest: Path) -> Path:
    return copy_demo_mesh(REPO, dest)


@pytest.fixture(scope="session")
def demo_built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = copy_demo(tmp_path_factory.mktemp("demo") / "mesh")
    data = run_mesh("demo-data", cwd=root)
    assert data.returncode == 0, data.stdout + data.stderr
    return Built(root, run_mesh("build", cwd=root))


# `make test` runs the suite in parallel processes (pytest-xdist, one more than cores). Tests that share an
# expensive session build go to one worker, as one unit, so each build happens once; the rest
# spread freely. The units are named from the test's module (a static map: the controller
# schedules by node id, before any fixture is known), heaviest first so no worker idles at the end.
_UNITS = (
    ("tests/spark/", "demo"),  # spark's comparison reads the DuckDB demo build: one unit, one build
    ("tests/test_synthetic_and_benchmark.py::test_benchmark_runs_at_tiny_size", "benchmark"),
    ("tests/foreign/test_corpus.py", "corpus"),
    ("tests/foreign/test_adoption.py", "corpus"),
    ("tests/foreign/test_project_cycles.py", "corpus"),  # these read the corpus build too: one build, one worker
    ("tests/foreign/test_shared_seeds.py", "corpus"),
    ("tests/foreign/test_loom_udf.py", "corpus"),
    ("tests/test_demo_mesh.py", "demo"),
    ("tests/docsite/", "demo"),
    ("tests/selfservice/", "demo"),
    ("tests/standards/test_demo_contracts.py", "demo"),
    ("tests/governance/test_rules.py", "governance"),  # one parse of the governance fixture
    ("tests/health/", "health"),
    ("tests/foreign/test_type_matrix.py", "types"),
    ("tests/postgres/", "postgres"),  # one server and one warehouse build, shared
    ("tests/objectstore/", "s3"),  # one S3 server and one producer/consumer pair, shared
)
# Tests on copies of the plain build (exchange, hardening, stitch, build) spread freely: each worker
# builds plain_mesh once (seconds), and one unit of them would take minutes on a single core.
_ORDER = ["demo", "benchmark", "corpus", "postgres", "s3", "governance", "health", "types"]


def unit_of(nodeid: str) -> str | None:
    return next((unit for prefix, unit in _UNITS if nodeid.startswith(prefix)), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heaviest units first (every worker collects the same order)."""

    def rank(item: pytest.Item) -> int:
        unit = unit_of(item.nodeid)
        return _ORDER.index(unit) if unit else len(_ORDER)

    items.sort(key=rank)  # stable: a module's tests keep their order


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid) or nodeid

    return UnitScheduling(config, log)
