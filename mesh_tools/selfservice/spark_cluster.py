"""A standalone Spark cluster on loopback, started from the installed pyspark, to try and test the cluster targets.

``start_cluster`` starts a master, N workers, the Thrift server (HiveThriftServer2) and the Spark Connect server,
each a JVM of its own run straight from pyspark's ``bin/spark-class`` and ``bin/spark-submit`` (pyspark ships no
``start-*.sh`` scripts), each in a process group of its own, and blocks until every one answers: the master
lists every worker as ALIVE, the Thrift server runs ``select 1`` through PyHive, the Connect server accepts on its
gRPC port, and both servers hold an executor. Everything lives in the state folder:

    cluster.json            the record: ports and the pid (with its start time) of every process, written atomically
    logs/<process>.log      each JVM's own output (log4j's console goes there)
    thrift/ connect/        each server's Derby metastore (metastore_db/), warehouse (warehouse/) and derby.log
    workers/worker-N/       each worker's work folder (its executors' output)

A start that fails or times out stops what it started and raises one ClusterError naming the process and the last
lines of its log. ``stop_cluster`` signals only the process groups it recorded (a pid reused by another process
since is left alone), waits for them to end, and removes the record. The servers take ``spark.cores.max`` cores
each (one worker's), so with a worker per server both get an executor at once.

This module never imports pyspark (one door: mesh_tools.dbt.engines): it runs pyspark's scripts as programs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import BusyError, ConfigError, DbtError, display_path
from mesh_tools.core.files import write_atomic

RECORD = "cluster.json"
_RECORD_VERSION = 1
_START_LOCK = ".start.lock"
# Every JVM of a cluster carries this system property naming its state folder: `ps` shows whose it is, and the
# tests prove no JVM outlives `stop_cluster` by looking for it.
MARKER = "mesh.spark.cluster"
# Small heaps, the serial collector and no C2 compilation for every JVM: this cluster is for trying and testing
# on one machine, where the JIT's C2 work costs more CPU than the short queries it speeds up (the test suite's
# Spark unit: 2 cores' worth of JIT threads for the minutes it runs; the demo's local session halves its CPU the
# same way). A real cluster is configured by its operators, not here.
_DAEMON_JVM = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
_WORK_JVM = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CICompilerCount=1"
_MASTER = "org.apache.spark.deploy.master.Master"
_WORKER = "org.apache.spark.deploy.worker.Worker"
_THRIFT = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
_CONNECT = "org.apache.spark.sql.connect.service.SparkConnectServer"
THRIFT_APP = "mesh-thrift-server"
CONNECT_APP = "mesh-connect-server"
_POLL = 0.5
_STOP_GRACE = 30.0
_LOG_LINES = 12

Progress = Callable[[str], None]


class ClusterError(DbtError):
    """A process of the cluster could not start or did not answer in time (exit 3, like any engine that fails)."""


class ClusterRunning(BusyError):
    """The state folder's cluster runs already, or another command is starting it (exit 2)."""


@dataclass(frozen=True)
class ClusterSpec:
    """What to start. Every port may be 0: a free one is picked (and recorded)."""

    state_dir: Path
    host: str = "127.0.0.1"
    master_port: int = 7077
    master_ui_port: int = 0  # the master's web UI: its /json/ endpoint is how the launcher sees workers and apps
    thrift_port: int = 10000
    connect_port: int = 15002
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "1g"
    daemon_memory: str = "256m"  # master and workers (SPARK_DAEMON_MEMORY)
    driver_memory: str = "512m"  # each server's driver
    executor_memory: str = "512m"  # each server's executor, on a worker
    thrift: bool = True
    connect: bool = True
    # more Spark settings for both servers' applications (``--conf key=value`` of spark-submit), e.g. a small
    # cluster's ``spark.sql.codegen.wholeStage=false``; the settings the launcher makes itself are refused
    conf: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ClusterProcess:
    """One JVM the launcher started: ``pid`` leads a process group of its own; ``ticks`` is its start time in
    clock ticks after boot (/proc/PID/stat), so a pid reused by another process is never taken for it."""

    name: str  # master, worker-1, worker-2, thrift, connect
    pid: int
    ticks: int
    port: int | None  # the port it serves clients on (workers: none of ours)
    log: Path


@dataclass(frozen=True)
class Cluster:
    """A started cluster, as its record says: where to reach the master and the two servers."""

    state_dir: Path
    host: str
    master_port: int
    master_ui_port: int
    thrift_port: int | None
    connect_port: int | None
    workers: int
    processes: tuple[ClusterProcess, ...]

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    @property
    def master_ui_url(self) -> str:
        return f"http://{self.host}:{self.master_ui_port}"

    @property
    def thrift_host(self) -> str:
        return self.host

    @property
    def connect_url(self) -> str | None:
        return f"sc://{self.host}:{self.connect_port}" if self.connect_port else None

    @property
    def warehouse_dir(self) -> Path:
        """The Thrift server's ``spark.sql.warehouse.dir``: where its tables' files are."""
        return self.state_dir / "thrift" / "warehouse"

    @property
    def connect_warehouse_dir(self) -> Path:
        """The Connect server's ``spark.sql.warehouse.dir`` (its own metastore and warehouse)."""
        return self.state_dir / "connect" / "warehouse"

    def env(self) -> dict[str, str]:
        """The environment variables the cluster targets of the demo and the domain template read."""
        found: dict[str, str] = {}
        if self.thrift_port:
            found["MESH_SPARK_THRIFT_HOST"] = self.host
            found["MESH_SPARK_THRIFT_PORT"] = str(self.thrift_port)
        if self.connect_url:
            found["MESH_SPARK_CONNECT_URL"] = self.connect_url
        return found

    def process(self, name: str) -> ClusterProcess | None:
        return next((p for p in self.processes if p.name == name), None)

    def to_record(self) -> dict[str, Any]:
        return {
            "version": _RECORD_VERSION,
            "host": self.host,
            "master_port": self.master_port,
            "master_ui_port": self.master_ui_port,
            "thrift_port": self.thrift_port,
            "connect_port": self.connect_port,
            "workers": self.workers,
            "processes": [
                {"name": p.name, "pid": p.pid, "ticks": p.ticks, "port": p.port, "log": str(p.log)}
                for p in self.processes
            ],
        }

    @classmethod
    def from_record(cls, state_dir: Path, data: dict[str, Any]) -> Cluster:
        return cls(
            state_dir=state_dir,
            host=str(data["host"]),
            master_port=int(data["master_port"]),
            master_ui_port=int(data["master_ui_port"]),
            thrift_port=_port_or_none(data.get("thrift_port")),
            connect_port=_port_or_none(data.get("connect_port")),
            workers=int(data["workers"]),
            processes=tuple(
                ClusterProcess(
                    str(p["name"]), int(p["pid"]), int(p["ticks"]), _port_or_none(p.get("port")), Path(p["log"])
                )  # fmt: skip
                for p in data["processes"]
            ),
        )


@dataclass(frozen=True)
class ProcessStatus:
    """One process of a running cluster, as seen now."""

    name: str
    pid: int
    alive: bool
    port: int | None
    answers: bool
    detail: str
    log: Path


@dataclass(frozen=True)
class ClusterStatus:
    """The cluster of a state folder: not running (``cluster`` None), or its processes and whether each answers."""

    state_dir: Path
    cluster: Cluster | None
    processes: tuple[ProcessStatus, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.cluster is not None and all(p.alive and p.answers for p in self.processes)

    def to_json(self) -> dict[str, Any]:
        cluster = self.cluster
        return {
            "state_dir": str(self.state_dir),
            "running": cluster is not None,
            "healthy": self.healthy,
            "master_url": cluster.master_url if cluster else None,
            "master_ui_url": cluster.master_ui_url if cluster else None,
            "warehouse_dir": str(cluster.warehouse_dir) if cluster and cluster.thrift_port else None,
            "env": cluster.env() if cluster else {},
            "processes": [
                {
                    "name": p.name,
                    "pid": p.pid,
                    "alive": p.alive,
                    "port": p.port,
                    "answers": p.answers,
                    "detail": p.detail,
                    "log": str(p.log),
                }  # fmt: skip
                for p in self.processes
            ],
        }


# ---------------------------------------------------------------------------------------------------- start


def start_cluster(spec: ClusterSpec, timeout: float = 240.0, progress: Progress | None = None) -> Cluster:
    """Start the cluster ``spec`` describes and return it once every process answers.

    Raises ConfigError (bad spec, a port in use, no Java, pyspark or PyHive), ClusterRunning (it runs already),
    ClusterError (a process exited or did not answer within ``timeout`` seconds: what was started is stopped)."""
    say = progress or (lambda _text: None)
    spark_home = _spark_home()
    _check_spec(spec)
    if spec.thrift:
        _check_thrift_client()
    state_dir = spec.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    with _start_lock(state_dir):
        if (running := _running(state_dir)) is not None:
            raise ClusterRunning(
                f"a Spark cluster runs already from {display_path(state_dir)} (master {running.master_url}): "
                "`mesh spark-cluster status` shows it, `mesh spark-cluster stop` stops it."
            )
        _remove_record(state_dir)  # a record whose processes are all gone (a reboot, a kill -9)
        spec = _with_ports(dataclasses.replace(spec, state_dir=state_dir))
        say(f"starting in {state_dir}")
        if not _loopback(spec.host):
            say(f"note: {spec.host} is not a loopback address, and the Thrift and Connect servers ask for no password: "
                "anyone who reaches it can read and write the warehouse")  # fmt: skip
        launcher = _Launcher(spec, spark_home, timeout, say)
        try:
            return launcher.run()
        except BaseException:
            launcher.stop_started()
            raise


class _Launcher:
    """One start: launches the JVMs in order, records each at once, waits until all answer."""

    def __init__(self, spec: ClusterSpec, spark_home: Path, timeout: float, say: Progress) -> None:
        self.spec = spec
        self.spark_home = spark_home
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.begun = time.monotonic()
        self.say = say
        self.started: list[tuple[ClusterProcess, subprocess.Popen[bytes]]] = []

    def cluster(self) -> Cluster:
        spec = self.spec
        return Cluster(
            state_dir=spec.state_dir,
            host=spec.host,
            master_port=spec.master_port,
            master_ui_port=spec.master_ui_port,
            thrift_port=spec.thrift_port if spec.thrift else None,
            connect_port=spec.connect_port if spec.connect else None,
            workers=spec.workers,
            processes=tuple(p for p, _ in self.started),
        )

    def run(self) -> Cluster:
        spec = self.spec
        for name in ("logs", "conf", "thrift", "connect", "workers"):
            (spec.state_dir / name).mkdir(exist_ok=True)
        self.launch("master", _master_command(spec, self.spark_home), spec.state_dir, spec.master_port)
        self.wait("master", "its web UI's /json/ to say ALIVE", lambda: _master_alive(spec.host, spec.master_ui_port))
        self.say(f"master up at spark://{spec.host}:{spec.master_port} ({self.elapsed()})")
        for n in range(1, spec.workers + 1):
            folder = spec.state_dir / "workers" / f"worker-{n}"
            folder.mkdir(exist_ok=True)
            self.launch(f"worker-{n}", _worker_command(spec, self.spark_home, folder), folder, None)
        # the servers start beside the workers: their drivers register with the master and wait for executors
        if spec.thrift:
            folder = spec.state_dir / "thrift"
            self.launch("thrift", _thrift_command(spec, self.spark_home, folder), folder, spec.thrift_port, True)
        if spec.connect:
            folder = spec.state_dir / "connect"
            self.launch("connect", _connect_command(spec, self.spark_home, folder), folder, spec.connect_port, True)
        self.wait(
            "worker-1", f"{spec.workers} workers ALIVE at the master",
            lambda: _alive_workers(spec.host, spec.master_ui_port) >= spec.workers,
        )  # fmt: skip
        self.say(f"{spec.workers} workers registered ({self.elapsed()})")
        if spec.thrift:
            self.wait("thrift", f"port {spec.thrift_port} to accept", lambda: _accepts(spec.host, spec.thrift_port))
            probe = _ThriftProbe(spec.host, spec.thrift_port)
            self.wait("thrift", "`select 1` through PyHive", probe, lambda: probe.last)
            self.wait("thrift", "an executor", lambda: _app_cores(spec.host, spec.master_ui_port, THRIFT_APP) > 0)
            self.say(f"Thrift server answers on {spec.host}:{spec.thrift_port} ({self.elapsed()})")
        if spec.connect:
            self.wait("connect", f"port {spec.connect_port} to accept", lambda: _accepts(spec.host, spec.connect_port))
            self.wait("connect", "an executor", lambda: _app_cores(spec.host, spec.master_ui_port, CONNECT_APP) > 0)
            self.say(f"Connect server answers on sc://{spec.host}:{spec.connect_port} ({self.elapsed()})")
        return self.cluster()

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.begun:.0f} s"

    def launch(self, name: str, command: list[str], cwd: Path, port: int | None, server: bool = False) -> None:
        log = self.spec.state_dir / "logs" / f"{name}.log"
        with open(log, "wb") as out:  # the child holds its own copy of the descriptor
            popen = subprocess.Popen(
                command, cwd=cwd, env=_environment(self.spec, self.spark_home, server), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.started.append((ClusterProcess(name, popen.pid, _start_ticks(popen.pid) or 0, port, log), popen))
        _write_record(self.cluster())  # recorded before anything waits: a killed start leaves what `stop` needs

    def wait(self, name: str, what: str, ready: Callable[[], bool], why: Callable[[], str] = str) -> None:
        while True:
            for process, popen in self.started:
                if popen.poll() is not None:
                    raise ClusterError(
                        f"the Spark cluster in {display_path(self.spec.state_dir)}: {process.name} exited with code "
                        f"{popen.returncode} while starting; what was started is stopped.{_tail(process.log)}"
                    )
            if ready():
                return
            if time.monotonic() > self.deadline:
                process = next((p for p, _ in self.started if p.name == name), self.started[-1][0])
                answer = f" Its last answer: {why()}." if why() else ""
                raise ClusterError(
                    f"the Spark cluster in {display_path(self.spec.state_dir)}: {name} did not answer within "
                    f"{self.timeout:.0f} s (waiting for {what}); what was started is stopped.{answer} Give it longer "
                    f"with --timeout, or read its log.{_tail(process.log)}"
                )
            time.sleep(_POLL)

    def stop_started(self) -> None:
        _stop_processes([p for p, _ in self.started])
        for _, popen in self.started:
            with contextlib.suppress(Exception):
                popen.wait(timeout=1)
        _remove_record(self.spec.state_dir)


def _check_spec(spec: ClusterSpec) -> None:
    problems: list[str] = []
    if spec.workers < 1:
        problems.append(f"workers is {spec.workers}: at least 1")
    if spec.worker_cores < 1:
        problems.append(f"worker cores is {spec.worker_cores}: at least 1")
    servers = int(spec.thrift) + int(spec.connect)
    if servers > spec.workers:
        problems.append(
            f"{servers} servers need {servers} workers (each server's executor takes one worker's cores), "
            f"got {spec.workers}"
        )
    sizes = {"worker memory": spec.worker_memory, "daemon memory": spec.daemon_memory,
             "driver memory": spec.driver_memory, "executor memory": spec.executor_memory}  # fmt: skip
    for label, value in sizes.items():
        if _megabytes(value) is None:
            problems.append(f"{label} {value!r} is not a size like 512m or 2g")
    worker, executor = _megabytes(spec.worker_memory), _megabytes(spec.executor_memory)
    if worker is not None and executor is not None and executor > worker:
        problems.append(f"executor memory {spec.executor_memory} exceeds worker memory {spec.worker_memory}: "
                        "no worker could run an executor")  # fmt: skip
    for label, port in _ports(spec).items():
        if not 0 <= port <= 65535:
            problems.append(f"{label} port {port} is not between 0 and 65535")
    problems += _conf_problems(spec.conf)
    if problems:
        raise ConfigError("spark cluster: " + "; ".join(problems) + ".")


_CONF_KEY = re.compile(r"^spark\.[A-Za-z0-9_.\-]+$")
# what the launcher sets itself: the cores each server gets, where its metastore and warehouse live, the marker
# every JVM carries (how stop finds executors), the servers' addresses
_LAUNCHER_CONF = (
    "spark.cores.max", "spark.executor.cores", "spark.executor.memory", "spark.ui.enabled",
    "spark.sql.catalogImplementation", "spark.sql.warehouse.dir", "spark.hadoop.javax.jdo.option.",
    "spark.executor.extraJavaOptions", "spark.driver.", "spark.connect.grpc.binding.", "spark.master",
)  # fmt: skip


def _conf_problems(conf: tuple[tuple[str, str], ...]) -> list[str]:
    problems = []
    for key, value in conf:
        if not _CONF_KEY.match(key):
            problems.append(f"setting {key!r} is not a Spark setting (spark.<name>=<value>)")
        elif key.startswith(_LAUNCHER_CONF):
            problems.append(f"setting {key} is the launcher's own (use its option, or leave it)")
        elif "\n" in value or "\0" in value:
            problems.append(f"setting {key}'s value holds a line break")
    return problems


def _megabytes(size: str) -> int | None:
    found = re.fullmatch(r"\s*(\d+)\s*([mMgG])[bB]?\s*", size)
    if not found:
        return None
    return int(found[1]) * (1024 if found[2] in "gG" else 1)


def _ports(spec: ClusterSpec) -> dict[str, int]:
    ports = {"master": spec.master_port, "master UI": spec.master_ui_port}
    if spec.thrift:
        ports["Thrift"] = spec.thrift_port
    if spec.connect:
        ports["Connect"] = spec.connect_port
    return ports


def _with_ports(spec: ClusterSpec) -> ClusterSpec:
    """``spec`` with every port 0 replaced by a free one; a given port that is in use is a ConfigError."""
    chosen: dict[str, int] = {}
    for label, port in _ports(spec).items():
        if port == 0:
            port = _free_port(spec.host, set(chosen.values()))
        elif port in chosen.values() or not _bindable(spec.host, port):
            raise ConfigError(
                f"spark cluster: the {label} port {port} on {spec.host} is in use (another Spark cluster, or another "
                "server): stop it, or pass another port (0 picks a free one)."
            )
        chosen[label] = port
    return dataclasses.replace(
        spec,
        master_port=chosen["master"],
        master_ui_port=chosen["master UI"],
        thrift_port=chosen.get("Thrift", spec.thrift_port),
        connect_port=chosen.get("Connect", spec.connect_port),
    )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # as the JVM binds: a port whose last connections linger in TIME_WAIT (a cluster just stopped) is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str, taken: set[int]) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def _spark_home() -> Path:
    """pyspark's folder (bin/spark-class, bin/spark-submit, jars/), found without importing pyspark; and Java."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "spark cluster: pyspark is not installed: install the spark extra (pip install 'mesh-tools[spark]')."
        )
    home = Path(list(spec.submodule_search_locations)[0])
    for script in ("bin/spark-class", "bin/spark-submit"):
        if not os.access(home / script, os.X_OK):
            raise ConfigError(f"spark cluster: {home / script} is missing or not executable: reinstall pyspark.")
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK)) and shutil.which("java") is None:
        raise ConfigError("spark cluster: no Java found (JAVA_HOME, PATH): install Java 17 (apt-get install "
                          "openjdk-17-jre-headless).")  # fmt: skip
    return home


def _marker(state_dir: Path) -> str:
    # Spark and its launcher split option strings as a shell does: quote the folder (it may hold spaces)
    quoted = str(state_dir).replace("\\", "\\\\").replace('"', '\\"')
    return f'-D{MARKER}="{quoted}"'


def _environment(spec: ClusterSpec, spark_home: Path, server: bool) -> dict[str, str]:
    """A JVM's environment: the caller's, without a Spark configuration of its own that could change the
    cluster (a user's SPARK_CONF_DIR, SPARK_MASTER_OPTS, ...), bound to ``spec.host``. Spark's launcher treats
    the Thrift and Connect servers as daemons: their driver's heap and options come from SPARK_DAEMON_MEMORY and
    SPARK_DAEMON_JAVA_OPTS, never from --driver-memory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    marker = _marker(spec.state_dir)
    options = f"{_WORK_JVM} -Dderby.system.home=. {marker}" if server else f"{_DAEMON_JVM} {marker}"
    env.update(
        SPARK_HOME=str(spark_home),
        SPARK_CONF_DIR=str(spec.state_dir / "conf"),  # empty: no spark-defaults.conf of the user's applies
        SPARK_LOCAL_IP=spec.host,  # every listening socket (web UIs included) on that address only
        SPARK_DAEMON_MEMORY=spec.driver_memory if server else spec.daemon_memory,
        SPARK_DAEMON_JAVA_OPTS=options,
        # no REST submission server (port 6066): nothing submits that way, and it would be one more open port
        SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false",
    )
    return env


def _master_command(spec: ClusterSpec, home: Path) -> list[str]:
    return [str(home / "bin/spark-class"), _MASTER, "--host", spec.host, "--port", str(spec.master_port),
            "--webui-port", str(spec.master_ui_port)]  # fmt: skip


def _worker_command(spec: ClusterSpec, home: Path, folder: Path) -> list[str]:
    return [str(home / "bin/spark-class"), _WORKER, "--host", spec.host, "--cores", str(spec.worker_cores),
            "--memory", spec.worker_memory, "--webui-port", "0", "--work-dir", str(folder),
            f"spark://{spec.host}:{spec.master_port}"]  # fmt: skip


def _submit(spec: ClusterSpec, home: Path, folder: Path, klass: str, app: str) -> list[str]:
    """spark-submit of a server against the master, with its own Derby metastore and warehouse in ``folder``."""
    confs = {
        "spark.cores.max": str(spec.worker_cores),  # one worker's worth: the other server gets the other worker
        "spark.executor.cores": str(spec.worker_cores),
        "spark.executor.memory": spec.executor_memory,
        "spark.ui.enabled": "false",
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(folder / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={folder}/metastore_db;create=true",
        "spark.executor.extraJavaOptions": f"{_WORK_JVM} {_marker(spec.state_dir)}",
        **dict(spec.conf),
    }
    command = [str(home / "bin/spark-submit"), "--master", f"spark://{spec.host}:{spec.master_port}",
               "--name", app, "--class", klass]  # fmt: skip
    for key, value in confs.items():
        command += ["--conf", f"{key}={value}"]
    return command


def _thrift_command(spec: ClusterSpec, home: Path, folder: Path) -> list[str]:
    return _submit(spec, home, folder, _THRIFT, THRIFT_APP) + [
        "--hiveconf", f"hive.server2.thrift.port={spec.thrift_port}",
        "--hiveconf", f"hive.server2.thrift.bind.host={spec.host}",
        "spark-internal",  # the primary resource of a class that lives in Spark's own jars
    ]  # fmt: skip


def _connect_command(spec: ClusterSpec, home: Path, folder: Path) -> list[str]:
    return _submit(spec, home, folder, _CONNECT, CONNECT_APP) + [
        "--conf", f"spark.connect.grpc.binding.address={spec.host}",
        "--conf", f"spark.connect.grpc.binding.port={spec.connect_port}",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------- probes


def _master_json(host: str, ui_port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{ui_port}/json/", timeout=3) as response:
            data = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return data if isinstance(data, dict) else None


def _master_alive(host: str, ui_port: int) -> bool:
    data = _master_json(host, ui_port)
    return data is not None and data.get("status") == "ALIVE"


def _alive_workers(host: str, ui_port: int) -> int:
    data = _master_json(host, ui_port) or {}
    return sum(1 for w in data.get("workers", []) if isinstance(w, dict) and w.get("state") == "ALIVE")


def _app_cores(host: str, ui_port: int, app: str) -> int:
    """The cores the master granted the running application ``app`` (0: it has no executor)."""
    return _granted(_master_json(host, ui_port) or {}, app)


def _granted(master: dict[str, Any], app: str) -> int:
    return sum(int(a.get("cores", 0)) for a in master.get("activeapps", [])
               if isinstance(a, dict) and a.get("name") == app and a.get("state") == "RUNNING")  # fmt: skip


def _accepts(host: str, port: int | None) -> bool:
    if not port:
        return False
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


class _ThriftProbe:
    """``select 1`` through PyHive, as dbt-spark's thrift method connects (SASL PLAIN, no password); ``last`` keeps
    the latest refusal, for the message when the server never answers."""

    def __init__(self, host: str, port: int, timeout_ms: int = 60_000) -> None:
        self.host, self.port, self.timeout_ms = host, port, timeout_ms
        self.last = ""

    def __call__(self) -> bool:
        try:
            import thrift_sasl  # type: ignore[import-untyped]
            from pyhive import hive  # type: ignore[import-untyped]
            from thrift.transport import TSocket  # type: ignore[import-untyped]

            sock = TSocket.TSocket(self.host, self.port)
            sock.setTimeout(self.timeout_ms)  # a server that accepts and never answers must not hang the start
            transport = thrift_sasl.TSaslClientTransport(
                lambda: hive.get_installed_sasl(host=self.host, sasl_auth="PLAIN", username="mesh", password="x"),
                "PLAIN", sock,
            )  # fmt: skip
            with contextlib.closing(hive.connect(thrift_transport=transport, username="mesh")) as connection:
                cursor = connection.cursor()
                cursor.execute("select 1")
                rows = cursor.fetchall()
        except Exception as exc:  # not up yet (refused, reset, a session still opening): ask again
            self.last = f"{type(exc).__name__}: {exc}"[:300]
            return False
        self.last = "" if rows == [(1,)] else f"`select 1` returned {rows!r}"
        return not self.last


def _check_thrift_client() -> None:
    try:
        for name in ("pyhive", "thrift_sasl", "thrift", "puresasl"):
            if importlib.util.find_spec(name) is None:
                raise ImportError(name)
    except ImportError as exc:
        raise ConfigError(
            f"spark cluster: {exc} is not installed, and the Thrift server is checked through PyHive: install the "
            "spark extra (pip install 'mesh-tools[spark]'), or start without it (--no-thrift)."
        ) from None


# ---------------------------------------------------------------------------------------------------- processes


def _start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    """Collect the exit of ``pid`` when it is this process's child (the launcher's own start, a test)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(process: ClusterProcess) -> bool:
    """The recorded process still runs (the same one: its pid not reused since)."""
    _reap(process.pid)
    ticks = _start_ticks(process.pid)
    return ticks is not None and (process.ticks == 0 or ticks == process.ticks)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_processes(processes: list[ClusterProcess], grace: float = _STOP_GRACE) -> list[str]:
    """SIGTERM the process groups of ``processes`` (servers first, the master last), wait up to ``grace`` seconds,
    then SIGKILL what is left of them. Only groups led by a recorded process that is still that process."""
    groups: list[tuple[str, int]] = []
    for process in reversed(processes):
        if is_alive(process) and _pgid(process.pid) == process.pid:
            groups.append((process.name, process.pid))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        for _, pgid in groups:
            _reap(pgid)
        left = [(name, pgid) for name, pgid in groups if _group_exists(pgid)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for _, pgid in left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for _, pgid in left:  # SIGKILL cannot be refused: wait the moment the kernel takes to end them
        for _ in range(50):
            _reap(pgid)
            if not _group_exists(pgid):
                break
            time.sleep(0.1)
    return [name for name, _ in groups]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


# ---------------------------------------------------------------------------------------------------- record


def _write_record(cluster: Cluster) -> None:
    write_atomic(cluster.state_dir / RECORD, json.dumps(cluster.to_record(), indent=2) + "\n")


def _remove_record(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / RECORD).unlink()


def load_cluster(state_dir: Path) -> Cluster | None:
    """The cluster the state folder's record describes (running or not), None without a record."""
    state_dir = state_dir.resolve()
    path = state_dir / RECORD
    try:
        data = json.loads(path.read_text())
        return Cluster.from_record(state_dir, data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{display_path(path)}: not a record of a Spark cluster ({exc}); if no cluster of it runs, remove the file."
        ) from None


def _running(state_dir: Path) -> Cluster | None:
    cluster = load_cluster(state_dir)
    if cluster is not None and any(is_alive(p) for p in cluster.processes):
        return cluster
    return None


@contextlib.contextmanager
def _start_lock(state_dir: Path) -> Iterator[None]:
    """One start (or stop) at a time per state folder; the kernel frees the lock when its holder dies."""
    fd = os.open(state_dir / _START_LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterRunning(
                f"another command is starting or stopping the Spark cluster of {display_path(state_dir)}: wait for it, "
                "then `mesh spark-cluster status`."
            ) from None
        yield
    finally:
        os.close(fd)


def _tail(log: Path, lines: int = _LOG_LINES) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"\n  ({display_path(log)} cannot be read)"
    shown = "\n".join(f"    {line}" for line in text) if text else "    (empty)"
    return f"\n  last lines of {display_path(log)}:\n{shown}"


# ---------------------------------------------------------------------------------------------------- stop, status


def stop_cluster(state_dir: Path, grace: float = _STOP_GRACE) -> list[str]:
    """Stop every process the state folder's record names (its process group: executors too) and remove the
    record. Returns the names of the processes that were running; nothing runs: an empty list (idempotent)."""
    state_dir = state_dir.resolve()
    if not state_dir.is_dir():
        return []
    with _start_lock(state_dir):
        cluster = load_cluster(state_dir)
        if cluster is None:
            return []
        stopped = _stop_processes(list(cluster.processes), grace)
        _remove_record(state_dir)
    return stopped


def cluster_status(state_dir: Path) -> ClusterStatus:
    """What runs from the state folder and whether each process answers (its port, the master's view)."""
    state_dir = state_dir.resolve()
    cluster = load_cluster(state_dir) if state_dir.is_dir() else None
    if cluster is None or not any(is_alive(p) for p in cluster.processes):
        return ClusterStatus(state_dir, None)
    master = _master_json(cluster.host, cluster.master_ui_port) or {}
    rows = tuple(_process_status(cluster, p, master) for p in cluster.processes)
    return ClusterStatus(state_dir, cluster, rows)


def _process_status(cluster: Cluster, process: ClusterProcess, master: dict[str, Any]) -> ProcessStatus:
    alive = is_alive(process)
    if process.name == "master":
        answers = master.get("status") == "ALIVE"
        workers = sum(1 for w in master.get("workers", []) if isinstance(w, dict) and w.get("state") == "ALIVE")
        detail = (f"{workers} of {cluster.workers} workers ALIVE, web UI {cluster.master_ui_url}" if answers
                  else f"its web UI {cluster.master_ui_url} does not answer")  # fmt: skip
    elif process.name.startswith("worker-"):
        port = _worker_port(process.log)
        alive_ports = {
            w.get("port") for w in master.get("workers", []) if isinstance(w, dict) and w.get("state") == "ALIVE"
        }
        answers = alive and port is not None and port in alive_ports
        detail = f"registered as {cluster.host}:{port}" if answers else "not registered with the master"
        process = dataclasses.replace(process, port=port)
    else:
        app = THRIFT_APP if process.name == "thrift" else CONNECT_APP
        # answering means usable: its port accepts and it holds an executor (a lost worker leaves it none)
        accepts, cores = _accepts(cluster.host, process.port), _granted(master, app)
        answers = accepts and cores > 0
        if not accepts:
            detail = f"port {process.port} does not accept"
        else:
            detail = f"executor: {cores} core{'s' if cores != 1 else ''}" if cores else "no executor (a worker lost?)"
    if not alive:
        detail = f"exited: its log is {display_path(process.log)}"
    return ProcessStatus(process.name, process.pid, alive, process.port, alive and answers, detail, process.log)


def _worker_port(log: Path) -> int | None:
    """The port a worker serves the master on, as its log says when it starts (the master lists it by that port)."""
    try:
        with open(log, errors="replace") as lines:
            for _, line in zip(range(400), lines, strict=False):
                if found := re.search(r"Starting Spark worker \S+:(\d+) ", line):
                    return int(found[1])
    except OSError:
        return None
    return None


def _port_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, (int, str)) and str(value) else None
