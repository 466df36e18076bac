"""`python -m mesh_tools.cli`: the same as the `mesh` command."""

from mesh_tools.cli import main

main()
