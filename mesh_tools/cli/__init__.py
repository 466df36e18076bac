"""The `mesh` command line: thin click commands, split by family, that call the library and render its results.

``main`` is the click group; importing this package registers every command on it.
"""

from mesh_tools.cli import govern, info, observe, run, selfserve, standards  # noqa: F401  (registers the commands)
from mesh_tools.cli.app import ExitCode, main

__all__ = ["ExitCode", "main"]
