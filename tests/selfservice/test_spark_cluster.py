"""`mesh spark-cluster` and its launcher: real JVMs on loopback, no mocks.

The session's cluster (tests/conftest.py ``spark_cluster``, shared with the cluster engine's tests) answers
`select 1` through Thrift (PyHive, as dbt-spark's thrift method) and through Spark Connect (a pyspark Connect
session), runs both servers on the standalone master, reports itself in `status --format json`, and refuses a
second start. Stopping is proven on clusters of their own: a master and one worker (no server, so about 10 s), and
a start that times out; afterwards no process names their folder.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mesh_tools.cli import main
from mesh_tools.selfservice.spark_cluster import (
    RECORD,
    Cluster,
    ClusterError,
    ClusterSpec,
    cluster_status,
    start_cluster,
    stop_cluster,
)
from tests import sparkcluster

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(sparkcluster.available() is not None, reason=f"needs Spark: {sparkcluster.available()}"),
]
slow = pytest.mark.slow


def mesh(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@slow
def test_thrift_answers_and_writes_into_the_warehouse_it_reports(spark_cluster: Cluster) -> None:
    from pyhive import hive

    schema = "launcher_check"
    connection = hive.connect(host=spark_cluster.thrift_host, port=spark_cluster.thrift_port, username="mesh")
    try:
        cursor = connection.cursor()
        cursor.execute("select 1")
        assert cursor.fetchall() == [(1,)]
        cursor.execute("set spark.master")
        assert cursor.fetchall() == [("spark.master", spark_cluster.master_url)]
        cursor.execute(f"create schema {schema}")
        cursor.execute(f"create table {schema}.t using parquet as select 1 as x")
        assert list((spark_cluster.warehouse_dir / f"{schema}.db" / "t").glob("*.parquet"))
    finally:
        connection.cursor().execute(f"drop schema if exists {schema} cascade")
        connection.close()


@slow
def test_connect_answers_on_the_cluster(spark_cluster: Cluster) -> None:
    from pyspark.sql import SparkSession

    assert spark_cluster.connect_url
    session = SparkSession.builder.remote(spark_cluster.connect_url).getOrCreate()
    try:
        assert session.sql("select 1 as x").collect()[0].x == 1
        assert session.conf.get("spark.master") == spark_cluster.master_url
    finally:
        session.stop()


@slow
def test_status_json_lists_every_process_answering(spark_cluster: Cluster) -> None:
    code, out, _ = mesh("spark-cluster", "status", "--state-dir", str(spark_cluster.state_dir), "--format", "json")
    assert code == 0, out
    document = json.loads(out)
    assert document["schema"] == "mesh-spark-cluster/1"
    assert document["running"] and document["healthy"]
    assert document["master_url"] == spark_cluster.master_url
    assert (
        document["env"]
        == spark_cluster.env()
        == {
            "MESH_SPARK_THRIFT_HOST": "127.0.0.1",
            "MESH_SPARK_THRIFT_PORT": str(spark_cluster.thrift_port),
            "MESH_SPARK_CONNECT_URL": f"sc://127.0.0.1:{spark_cluster.connect_port}",
        }
    )
    rows = {p["name"]: p for p in document["processes"]}
    assert list(rows) == ["master", "worker-1", "worker-2", "thrift", "connect"]
    assert all(p["alive"] and p["answers"] for p in rows.values()), rows
    assert rows["master"]["detail"].startswith("2 of 2 workers ALIVE")
    # each server holds an executor at the same time: spark.cores.max leaves the other worker to the other
    assert rows["thrift"]["detail"] == rows["connect"]["detail"] == "executor: 1 core"
    assert rows["thrift"]["port"] == spark_cluster.thrift_port
    code, out, _ = mesh("spark-cluster", "status", "--state-dir", str(spark_cluster.state_dir), "--format", "env")
    assert code == 0
    assert out.splitlines() == [f"export {k}={v}" for k, v in spark_cluster.env().items()]


@slow
def test_a_second_start_is_refused_and_the_cluster_keeps_running(spark_cluster: Cluster) -> None:
    code, out, err = mesh("spark-cluster", "start", "--state-dir", str(spark_cluster.state_dir), "--master-port", "0")
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        f"error: a Spark cluster runs already from {spark_cluster.state_dir} (master {spark_cluster.master_url}): "
        "`mesh spark-cluster status` shows it, `mesh spark-cluster stop` stops it."
    ]
    assert cluster_status(spark_cluster.state_dir).healthy


def test_a_port_in_use_and_a_bad_spec_are_usage_errors(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = mesh("spark-cluster", "start", "--state-dir", str(tmp_path), "--thrift-port", str(port))
    assert code == 2
    assert f"the Thrift port {port} on 127.0.0.1 is in use" in err
    code, _, err = mesh("spark-cluster", "start", "--state-dir", str(tmp_path), "--workers", "1",
                        "--executor-memory", "2g")  # fmt: skip
    assert code == 2
    assert err.splitlines() == [
        "error: spark cluster: 2 servers need 2 workers (each server's executor takes one worker's cores), got 1; "
        "executor memory 2g exceeds worker memory 1g: no worker could run an executor."
    ]
    assert not (tmp_path / RECORD).exists()
    code, out, _ = mesh("spark-cluster", "status", "--state-dir", str(tmp_path / "none"), "--format", "json")
    assert code == 1
    assert json.loads(out)["running"] is False
    code, out, _ = mesh("spark-cluster", "stop", "--state-dir", str(tmp_path / "none"))
    assert (code, out) == (0, f"mesh spark-cluster: no cluster runs from {tmp_path / 'none'}\n")


@slow
def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    cluster = start_cluster(
        ClusterSpec(state_dir=state, master_port=0, workers=1, thrift=False, connect=False), timeout=120
    )
    assert [p.name for p in cluster.processes] == ["master", "worker-1"]
    assert len(sparkcluster.processes_naming(state)) == 2
    assert cluster_status(state).healthy
    code, out, _ = mesh("spark-cluster", "stop", "--state-dir", str(state))
    assert (code, out) == (0, f"mesh spark-cluster: stopped worker-1, master ({state})\n")
    assert sparkcluster.processes_naming(state) == []
    assert not (state / RECORD).exists()
    assert stop_cluster(state) == []  # idempotent
    assert (state / "logs" / "master.log").is_file()  # the logs stay to be read


def test_a_start_that_times_out_stops_what_it_started_and_names_it(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    started = time.monotonic()
    with pytest.raises(ClusterError) as raised:
        # no JVM serves Spark's master within a second: the deadline passes while it starts
        start_cluster(ClusterSpec(state_dir=state, master_port=0, workers=1, thrift=False, connect=False), timeout=1)
    message = str(raised.value)
    assert message.startswith(
        f"the Spark cluster in {state}: master did not answer within 1 s (waiting for its web UI's /json/ to say "
        "ALIVE); what was started is stopped. Give it longer with --timeout, or read its log.\n"
        f"  last lines of {state / 'logs' / 'master.log'}:"
    ), message
    assert time.monotonic() - started < 30
    assert sparkcluster.processes_naming(state) == []
    assert not (state / RECORD).exists()
