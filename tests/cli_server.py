"""A warm process that starts the tests' `mesh` and `dbt` commands by fork, with dbt already imported.

A new interpreter importing dbt, the mesh CLI and DuckDB costs about 1.3 CPU-seconds; the suite runs
hundreds of commands. This server imports them once, then for each request forks a child that is a
real command-line process: its own working directory, environment, argv, stdin from /dev/null,
stdout and stderr to files, the CLI's own exit code, and a normal interpreter exit (atexit handlers,
flushed streams). The parent is single-threaded, so forking it is safe.

Protocol (one JSON object per line): on stdin ``{"argv": [...], "cwd", "env", "stdout", "stderr",
"timeout", "memory"}`` (``memory``: the child's address-space limit in bytes, or null); on the reply pipe
``{"returncode": N}`` (``-9``, ``"timeout": true`` when killed).
``argv[0]`` is ``mesh`` or ``dbt``.

Both ends of the protocol live here: ``serve`` runs in the server process (this file run as a script),
``ForkServers`` is the tests' side (tests/helpers.py holds the one pool of each test process).
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

# what a command would import: imported once here, shared by every fork (copy on write)
_PRELOAD = (
    "mesh_tools.cli",
    "mesh_tools.workflows.domain_run",
    "mesh_tools.state.plan",
    "mesh_tools.state.quiescence",
    "mesh_tools.workflows.scheduler",
    "mesh_tools.exchange.publish",
    "mesh_tools.stitch.plan",
    "mesh_tools.governance.engine",
    "mesh_tools.health.report",
    "mesh_tools.docsite.site",
    "mesh_tools.workflows.release",
    "mesh_tools.dbt.engines.sqlscan",
    "mesh_tools.dbt.engines.sqlreads",
    "mesh_tools.stitch.stub",
    "dbt.cli.main",
    "dbt.adapters.duckdb",
    "dbt.config.runtime",
    "duckdb",
    "jinja2",
    "pydantic",
    # sqlglot parses every domain's SQL (stitching, GOV205, the state-aware build): half a second a command
    "sqlglot",
    "sqlglot.dialects.duckdb",
    "sqlglot.dialects.postgres",
    "sqlglot.dialects.spark",
    "networkx",
)


def _preload() -> None:
    import importlib

    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional piece missing: the child imports what it needs
            pass
    # dbt's per-process caches, as a `mesh build` fills them before it forks its workers
    from mesh_tools.dbt.warm import warm_dbt

    warm_dbt()


def _child(request: dict) -> None:
    """Become the command and exit with its code; never returns."""
    os.setpgid(0, 0)  # its own group: a timeout kills it and everything it started
    if request.get("memory"):  # a bounded command: a runaway allocation is a MemoryError, not a swapping machine
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (request["memory"], request["memory"]))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # what a module took from its process's start at import time: taken again, as a new process would
    from pathlib import Path

    from mesh_tools.core import errors

    errors._START_DIR = Path.cwd().resolve()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    if request["stderr"] == request["stdout"]:  # one stream, as a terminal shows them: one file, one offset
        handle = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(handle, 1)
        os.dup2(handle, 2)
        os.close(handle)
        for stream in (sys.stdout, sys.stderr):  # in the order they were written, as PYTHONUNBUFFERED would
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    else:
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(handle, fd)
            os.close(handle)
    argv = request["argv"]
    sys.argv = list(argv)
    try:
        if argv[0] == "dbt":
            from dbt.cli.main import cli

            cli.main(args=argv[1:], prog_name="dbt")
        else:
            from mesh_tools.cli import main

            main.main(args=argv[1:], prog_name="mesh")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as an uncaught exception ends a process: traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    # a normal exit's atexit handlers and flushed streams, without tearing down every module dbt loaded
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - a closed stream: nothing left to flush
            pass
    os._exit(code)


def _wait(pid: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"returncode": os.waitstatus_to_exitcode(status)}
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return {"returncode": -9, "timeout": True}
        time.sleep(0.01)


def serve() -> None:
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # nothing the server imports may write into the reply pipe
    _preload()
    gc.freeze()  # what the server imported is never collected: the children's collections skip it
    reply.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            reply.close()
            _child(request)
        reply.write(json.dumps(_wait(pid, float(request.get("timeout") or 600))) + "\n")


class ForkServers:
    """Warm command servers, one per command running at the same time in this test process.

    ``cwd`` and ``env()`` are the servers' own start-up folder and environment (read when one starts); each
    command brings its own. ``stop`` ends them (tests/helpers.py registers it at exit).
    """

    def __init__(self, cwd: Path, env: Callable[[], dict[str, str]]) -> None:
        self.cwd = cwd
        self.env = env
        self.idle: list[subprocess.Popen[str]] = []
        self.lock = threading.Lock()
        self.scratch: Path | None = None

    def _start(self) -> subprocess.Popen[str]:
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            cwd=self.cwd, env=self.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        assert server.stdout is not None
        assert json.loads(server.stdout.readline() or "{}").get("ready"), "the command server did not start"
        return server

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float,
            memory: int | None = None, merge: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
        with self.lock:
            server = self.idle.pop() if self.idle else None
            if self.scratch is None:
                self.scratch = Path(tempfile.mkdtemp(prefix="mesh-test-output-"))
                atexit.register(shutil.rmtree, self.scratch, True)
        if server is None or server.poll() is not None:
            server = self._start()
        out = self.scratch / f"{uuid.uuid4().hex}.out"
        err = out if merge else out.with_suffix(".err")  # merge: stderr into stdout, stderr ""
        request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err), "timeout": timeout,
                   "memory": memory}  # fmt: skip
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        reply = json.loads(server.stdout.readline())
        with self.lock:
            self.idle.append(server)
        stdout, stderr = out.read_text(errors="replace"), "" if merge else err.read_text(errors="replace")
        out.unlink()
        if not merge:
            err.unlink()
        if reply.get("timeout"):
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, reply["returncode"], stdout, stderr)

    def stop(self) -> None:
        """End the servers and wait for them: their commands' CPU time is then counted in this process's."""
        for server in self.idle:
            if server.stdin:
                server.stdin.close()
        for server in self.idle:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    # run as a script, Python put tests/ first on the path: its folders named after packages (tests/dbt) would
    # shadow them (`import dbt` finding the tests of mesh_tools.dbt); a command's path is the interpreter's own
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    serve()
