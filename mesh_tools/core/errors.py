"""The exception root of mesh_tools and the user-facing error kinds."""

from __future__ import annotations

import errno
from pathlib import Path

from mesh_tools.core.credentials import redact_urls

_START_DIR = Path.cwd().resolve()


def display_path(path: Path) -> str:
    """A path relative to the folder the command started in when it is below it, else absolute."""
    try:
        return str(path.resolve().relative_to(_START_DIR))
    except ValueError:
        return str(path)


class MeshError(Exception):
    """Root of every error mesh_tools raises on purpose."""

    def __init__(self, *args: object) -> None:
        # a message names URLs, never their credentials (a botocore error quoting AWS_ENDPOINT_URL's user:password)
        super().__init__(*(redact_urls(a) if isinstance(a, str) else a for a in args))


class ConfigError(MeshError):
    """The mesh's configuration (mesh.yml, dbt_project.yml, dependencies.yml, ...) is wrong."""


class ArtifactError(MeshError):
    """A dbt artifact (manifest.json, run_results.json) is missing or unreadable."""


class DbtError(MeshError):
    """dbt itself could not run (not a failing model: those are results)."""


class StorageError(ArtifactError):
    """The file system refused a write the command needs (read-only, full, permission): exit 3."""


class BusyError(MeshError):
    """Another `mesh` run holds the mesh's lock."""


_OS_HINTS = {
    errno.EACCES: "permission denied: run as a user who may write there, or fix the folder's permissions",
    errno.EPERM: "operation not permitted: run as a user who may write there, or fix the folder's permissions",
    errno.EROFS: "the file system is read-only: point the command at a writable folder",
    errno.ENOSPC: "no space left on the device: free some space and run again",
    errno.EDQUOT: "disk quota exceeded: free some space and run again",
    errno.EIO: "input/output error from the device: check the disk or the network share",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the path, what happened, what to do."""
    where = display_path(Path(exc.filename)) if exc.filename else "(no path)"
    hint = _OS_HINTS.get(exc.errno or 0, f"{exc.strerror or exc.__class__.__name__}: check the path and run again")
    return f"{where}: {hint}. Nothing was half-written: the previous state stays as it was."


def located(path: Path | str, line: int | None, message: str, column: int | None = None) -> str:
    """Format ``file:line:col: message`` the way compilers and linters do."""
    where = str(path)
    if line is not None:
        where += f":{line}"
        if column is not None:
            where += f":{column}"
    return f"{where}: {message}"
