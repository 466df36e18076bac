"""`mesh spark-cluster` and its launcher: real JVMs on loopback, no mocks.

The session's cluster (tests/conftest.py ``spark_cluster``, shared with the cluster engine's tests) answers
`select 1` through Thrift (PyHive, as dbt-spark's thrift method) and through Spark Connect (a pyspark Connect
session), runs both servers on the standalone master, reports itself in `status --format json`, and refuses a
second start. Stopping is proven on clusters of their own: a master and one worker (no server, so about 10 s), and
a start that times out; afterwards no process names their folder.
"""

from __future__ import annotations

import json
import os
import signal
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
    _loopback,
    _ThriftProbe,
    cluster_status,
    is_alive,
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
    assert rows["worker-1"]["detail"] == f"registered as 127.0.0.1:{rows['worker-1']['port']}"
    assert rows["worker-1"]["port"] != rows["worker-2"]["port"]
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
        # the other ports free ones: a cluster of this machine's own (7077, 15002) must not decide the outcome
        code, _, err = mesh("spark-cluster", "start", "--state-dir", str(tmp_path), "--thrift-port", str(port),
                            "--master-port", "0", "--connect-port", "0")  # fmt: skip
    assert code == 2
    assert f"the Thrift port {port} on 127.0.0.1 is in use" in err
    code, _, err = mesh("spark-cluster", "start", "--state-dir", str(tmp_path), "--workers", "1",
                        "--executor-memory", "2g", "--conf", "spark.cores.max=8", "--conf",
                        "hive.server2.thrift.port=1")  # fmt: skip
    assert code == 2
    assert err.splitlines() == [
        "error: spark cluster: 2 servers need 2 workers (each server's executor takes one worker's cores), got 1; "
        "executor memory 2g exceeds worker memory 1g: no worker could run an executor; setting spark.cores.max is "
        "the launcher's own (use its option, or leave it); setting 'hive.server2.thrift.port' is not a Spark "
        "setting (spark.<name>=<value>)."
    ]
    code, _, err = mesh("spark-cluster", "start", "--state-dir", str(tmp_path), "--conf", "spark.sql.ansi.enabled")
    assert code == 2 and "'spark.sql.ansi.enabled' is not KEY=VALUE" in err, err
    assert not (tmp_path / RECORD).exists()
    code, out, _ = mesh("spark-cluster", "status", "--state-dir", str(tmp_path / "none"), "--format", "json")
    assert code == 1
    assert json.loads(out)["running"] is False
    code, out, _ = mesh("spark-cluster", "stop", "--state-dir", str(tmp_path / "none"))
    assert (code, out) == (0, f"mesh spark-cluster: no cluster runs from {tmp_path / 'none'}\n")
    code, out, _ = mesh("--root", str(tmp_path), "spark-cluster", "status", "--format", "json")  # the default folder
    assert (code, json.loads(out)["state_dir"]) == (1, str(tmp_path / ".mesh" / "spark-cluster"))


@slow
def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    cluster = start_cluster(
        ClusterSpec(state_dir=state, master_port=0, workers=1, thrift=False, connect=False), timeout=120
    )
    assert [p.name for p in cluster.processes] == ["master", "worker-1"]
    assert len(sparkcluster.processes_naming(state)) == 2
    assert cluster_status(state).healthy
    # a worker lost: status names it and exits 1; stop then signals only what still runs
    worker = cluster.processes[1]
    os.killpg(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while is_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    code, out, _ = mesh("spark-cluster", "status", "--state-dir", str(state))
    assert code == 1
    assert [line.split()[0:3] for line in out.splitlines()[1:]] == [
        ["master", "pid", str(cluster.processes[0].pid)],
        ["worker-1", "pid", str(worker.pid)],
    ]
    assert out.splitlines()[2].endswith(f"not running      exited: its log is {state / 'logs' / 'worker-1.log'}")
    code, out, _ = mesh("spark-cluster", "stop", "--state-dir", str(state))
    assert (code, out) == (0, f"mesh spark-cluster: stopped master ({state})\n")
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
    assert time.monotonic() - started < 120  # not the default 300 s: the 1 s deadline held (a loaded machine: 31 s)
    assert sparkcluster.processes_naming(state) == []
    assert not (state / RECORD).exists()


def test_the_thrift_probe_keeps_why_it_was_refused() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probe = _ThriftProbe("127.0.0.1", port, timeout_ms=2000)
    assert probe() is False
    assert probe.last.startswith("TTransportException: Could not connect to any of [('127.0.0.1', "), probe.last


def test_only_loopback_addresses_start_without_the_no_password_note() -> None:
    assert all(_loopback(host) for host in ("127.0.0.1", "127.0.1.1", "::1", "localhost"))
    assert not any(_loopback(host) for host in ("0.0.0.0", "10.0.0.5", "spark.internal"))
