"""A ready Dagster code location for the mesh in the current folder (or ``MESH_ROOT``)::

    dagster dev -m mesh_tools.dagster.location

``MESH_ENV`` picks the channel, ``MESH_DAGSTER_TARGET`` the dbt target; anything more: write your own
definitions file with ``mesh_definitions(...)`` (docs/how-to/dagster.md).
"""

from __future__ import annotations

import os

from mesh_tools.dagster.definitions import mesh_definitions

defs = mesh_definitions(
    os.environ.get("MESH_ROOT") or ".",
    target=os.environ.get("MESH_DAGSTER_TARGET") or None,
    channel_name=os.environ.get("MESH_ENV") or None,
)
