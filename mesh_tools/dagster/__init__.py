"""The mesh in Dagster (the optional ``dagster`` extra: ``pip install 'mesh-tools[dagster]'``).

In a Dagster code location::

    from mesh_tools.dagster import mesh_definitions

    defs = mesh_definitions("path/to/mesh")

then ``dagster dev -f that_file.py``. See definitions.py for what the definitions hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mesh_tools.core.errors import ConfigError

if TYPE_CHECKING:
    from mesh_tools.dagster.definitions import mesh_definitions

__all__ = ["mesh_definitions"]


def __getattr__(name: str) -> Any:
    if name != "mesh_definitions":
        raise AttributeError(name)
    try:
        import dagster  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the Dagster integration needs Dagster: install the extra, `pip install 'mesh-tools[dagster]'` "
            "(dagster and dagster-webserver 1.13)"
        ) from None
    from mesh_tools.dagster.definitions import mesh_definitions

    return mesh_definitions
