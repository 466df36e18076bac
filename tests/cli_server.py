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
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import sys
import time

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


if __name__ == "__main__":
    serve()
