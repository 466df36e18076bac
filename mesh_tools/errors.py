"""The exception root of mesh_tools and the user-facing error kinds."""

from __future__ import annotations

from pathlib import Path


class MeshError(Exception):
    """Root of every error mesh_tools raises on purpose."""


class ConfigError(MeshError):
    """The mesh's configuration (mesh.yml, dbt_project.yml, dependencies.yml, ...) is wrong."""


class ArtifactError(MeshError):
    """A dbt artifact (manifest.json, run_results.json) is missing or unreadable."""


class DbtError(MeshError):
    """dbt itself could not run (not a failing model: those are results)."""


def located(path: Path | str, line: int | None, message: str, column: int | None = None) -> str:
    """Format ``file:line:col: message`` the way compilers and linters do."""
    where = str(path)
    if line is not None:
        where += f":{line}"
        if column is not None:
            where += f":{column}"
    return f"{where}: {message}"
