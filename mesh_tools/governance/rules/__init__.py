"""The built-in rules, one module per family. Importing this package registers them all."""

from mesh_tools.governance.rules import (  # noqa: F401
    access,
    conventions,
    freshness,
    privacy,
    products,
    storage,
    versions,
)
