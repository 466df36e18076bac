"""`mesh spark-cluster start|stop|status`: a local Spark cluster (master, workers, Thrift and Connect servers)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from mesh_tools.cli.app import ExitCode, handles_errors, main
from mesh_tools.core.mesh import find_root

DEFAULT_STATE = Path(".mesh") / "spark-cluster"
JSON_SCHEMA = "mesh-spark-cluster/1"


def _state_dir(ctx: click.Context, value: str | None) -> Path:
    """--state-dir, else .mesh/spark-cluster under the mesh root (--root, else the nearest folder with mesh.yml)."""
    if value:
        return Path(value).resolve()
    root = ctx.find_root().params.get("root")
    return (Path(root) if root else find_root(Path.cwd())).resolve() / DEFAULT_STATE


_PORT = click.IntRange(0, 65535)
_STATE_HELP = "The cluster's folder: its record, logs, metastores and warehouses (default: .mesh/spark-cluster)."


@main.group("spark-cluster")
def spark_cluster() -> None:
    """A Spark cluster on this machine, to try and test the spark_thrift and spark_connect targets.

    `start` runs a standalone master, workers, the Thrift server and the Spark Connect server from the
    installed pyspark (the spark extra; Java 17), each on loopback, and waits until every one answers;
    it prints the environment variables the targets read. `stop` stops every process it started.
    """


def _setting(ctx: click.Context, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", ctx=ctx, param_hint="--conf")
    return key.strip(), value


@spark_cluster.command()
@click.option("--state-dir", type=click.Path(file_okay=False), metavar="FOLDER", help=_STATE_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address every process listens on.")
@click.option("--master-port", type=_PORT, default=7077, show_default=True, help="The master's port (0: a free one).")
@click.option("--master-ui-port", type=_PORT, default=0, show_default=True,
              help="The master's web UI (0: a free one; `status` shows it).")  # fmt: skip
@click.option("--thrift-port", type=_PORT, default=10000, show_default=True, help="The Thrift server's port (0: free).")
@click.option("--connect-port", type=_PORT, default=15002, show_default=True, help="Spark Connect's port (0: free).")
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True, help="Workers to start.")
@click.option("--worker-cores", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Cores of each worker; each server's executor takes one worker's cores.")  # fmt: skip
@click.option("--worker-memory", default="1g", show_default=True, help="Memory of each worker.")
@click.option("--executor-memory", default="512m", show_default=True, help="Each server's executor heap.")
@click.option("--driver-memory", default="512m", show_default=True, help="Each server's driver heap.")
@click.option("--thrift/--no-thrift", default=True, show_default=True, help="Start the Thrift server.")
@click.option("--connect/--no-connect", default=True, show_default=True, help="Start the Spark Connect server.")
@click.option(
    "--conf",
    "conf",
    multiple=True,
    metavar="KEY=VALUE",
    help="A Spark setting for both servers (repeatable), e.g. spark.sql.codegen.wholeStage=false.",
)
@click.option("--timeout", type=click.FloatRange(min=1), default=240, show_default=True,
              help="Seconds to wait for every process to answer; then what started is stopped (exit 3).")  # fmt: skip
@click.pass_context
@handles_errors
def start(
    ctx: click.Context,
    state_dir: str | None,
    host: str,
    master_port: int,
    master_ui_port: int,
    thrift_port: int,
    connect_port: int,
    workers: int,
    worker_cores: int,
    worker_memory: str,
    executor_memory: str,
    driver_memory: str,
    thrift: bool,
    connect: bool,
    conf: tuple[str, ...],
    timeout: float,
) -> None:
    """Start the cluster and wait until every process answers (about 40 s on 2 cores).

    Progress goes to stderr; stdout holds only the `export` lines, so `eval "$(mesh spark-cluster start)"` points
    this shell's spark_thrift and spark_connect targets at the cluster. Exit 2 when it runs already or a port is
    taken, 3 when a process does not come up (its log's last lines are shown, what started is stopped).
    """
    from mesh_tools.selfservice.spark_cluster import ClusterSpec, start_cluster

    spec = ClusterSpec(
        state_dir=_state_dir(ctx, state_dir), host=host, master_port=master_port, master_ui_port=master_ui_port,
        thrift_port=thrift_port, connect_port=connect_port, workers=workers, worker_cores=worker_cores,
        worker_memory=worker_memory, executor_memory=executor_memory, driver_memory=driver_memory, thrift=thrift,
        connect=connect, conf=tuple(_setting(ctx, text) for text in conf),
    )  # fmt: skip
    cluster = start_cluster(spec, timeout, lambda text: click.echo(f"mesh spark-cluster: {text}", err=True))
    for name, value in cluster.env().items():
        click.echo(f"export {name}={shlex.quote(value)}")
    targets = " or ".join(f"--target {t}" for t, on in (("spark_thrift", thrift), ("spark_connect", connect)) if on)
    click.echo(
        f"mesh spark-cluster: running (master {cluster.master_url}, web UI {cluster.master_ui_url}). Export the "
        f"variables above, then `mesh build {targets}`; another shell: "
        '`eval "$(mesh spark-cluster status --format env)"`. `mesh spark-cluster stop` stops it.',
        err=True,
    )


@spark_cluster.command()
@click.option("--state-dir", type=click.Path(file_okay=False), metavar="FOLDER", help=_STATE_HELP)
@click.pass_context
@handles_errors
def stop(ctx: click.Context, state_dir: str | None) -> None:
    """Stop every process the cluster's record names (with their executors); nothing runs: says so, exit 0."""
    from mesh_tools.selfservice.spark_cluster import stop_cluster

    folder = _state_dir(ctx, state_dir)
    stopped = stop_cluster(folder)
    if stopped:
        click.echo(f"mesh spark-cluster: stopped {', '.join(stopped)} ({folder})")
    else:
        click.echo(f"mesh spark-cluster: no cluster runs from {folder}")


@spark_cluster.command()
@click.option("--state-dir", type=click.Path(file_okay=False), metavar="FOLDER", help=_STATE_HELP)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "env"]), default="text", show_default=True,
    help=f"json: one document (schema {JSON_SCHEMA}) on stdout; env: only the `export` lines, for eval.",
)  # fmt: skip
@click.pass_context
@handles_errors
def status(ctx: click.Context, state_dir: str | None, fmt: str) -> None:
    """List the cluster's processes, their ports and whether each answers; exit 1 unless all of them do."""
    from mesh_tools.selfservice.spark_cluster import cluster_status

    found = cluster_status(_state_dir(ctx, state_dir))
    if fmt == "json":
        click.echo(json.dumps({"schema": JSON_SCHEMA, **found.to_json()}, indent=2))
    elif fmt == "env":
        for name, value in (found.cluster.env() if found.cluster else {}).items():
            click.echo(f"export {name}={shlex.quote(value)}")
    elif found.cluster is None:
        click.echo(f"mesh spark-cluster: no cluster runs from {found.state_dir} (`mesh spark-cluster start`)")
    else:
        click.echo(f"mesh spark-cluster: {found.state_dir}  master {found.cluster.master_url}")
        for p in found.processes:
            port = str(p.port) if p.port else "-"
            state = "answers" if p.answers else ("does not answer" if p.alive else "not running")
            click.echo(f"  {p.name:<9} pid {p.pid:<7} port {port:<6} {state:<16} {p.detail}")
        for name, value in found.cluster.env().items():
            click.echo(f"  export {name}={shlex.quote(value)}")
    sys.exit(ExitCode.OK if found.healthy else ExitCode.FAILED)
