"""`python -m mesh_tools.cli`: the same as the `mesh` command (and says `mesh` in its usage lines)."""

from mesh_tools.cli import main

main(prog_name="mesh")
