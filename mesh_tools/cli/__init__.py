"""The `mesh` command line: thin click commands, split by family, that call the library and render its results.

``main`` is the click group; importing this package registers every command on it.
"""

import click

from mesh_tools.cli import govern, info, observe, run, selfserve, spark_cluster, standards  # noqa: F401  (registers)
from mesh_tools.cli.app import EXIT_CODES_HELP, ExitCode, main

# What exit 1 means for each command, under its help (`mesh X --help`); the others mean the same everywhere.
FAILED_MEANS = {
    "build": "a domain failed or was skipped", "stitch": "a domain could not be stitched",
    "sync": "a rebuilt domain failed", "publish": "the publish gate refused", "promote": "the gate refused",
    "check": "findings at or above --fail-on", "health": "a product or domain at or above --fail-on",
    "status": "a current release cannot be read", "doctor": "a problem would stop `mesh build`",
    "spark-cluster status": "the cluster does not run or a process does not answer",
    "spark-cluster start": "(not used: a process that does not come up is 3)", "spark-cluster stop": "(not used)",
}  # fmt: skip


def _epilogs(group: click.Group, within: str = "") -> None:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            _epilogs(command, f"{name} ")
        command.epilog = EXIT_CODES_HELP.format(one=FAILED_MEANS.get(within + name, "findings"))


_epilogs(main)

__all__ = ["ExitCode", "main"]
