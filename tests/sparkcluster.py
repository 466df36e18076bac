"""The session's local Spark cluster (the launcher of `mesh spark-cluster`), and which processes name a folder.

One cluster for the whole session (tests/conftest.py's ``spark_cluster``): master, 2 workers, the Thrift and
Connect servers on free loopback ports, its state in a temp folder; stopped at the end of the session, which
then proves no process still names that folder (no orphan JVM).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from mesh_tools.selfservice.spark_cluster import Cluster, ClusterSpec, start_cluster


def available() -> str | None:
    """Why a cluster cannot be started here, or None."""
    for module in ("pyspark", "pyhive", "grpc", "pandas", "pyarrow"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java (apt-get install openjdk-17-jre-headless)"
    return None


# The tests' data is a few hundred rows: Spark's code generation (Janino compiling each query's plan) costs more
# CPU than it saves there (the demo's three Thrift domains: 62 s -> 48 s of the servers' CPU). A task fails at
# its first loss, so an executor killed mid-build fails that build (a real cluster retries the task elsewhere).
SMALL_DATA = (
    ("spark.sql.codegen.wholeStage", "false"),
    ("spark.sql.codegen.factoryMode", "NO_CODEGEN"),
    ("spark.task.maxFailures", "1"),
)


def start(state_dir: Path, **spec: object) -> Cluster:
    """A cluster on free ports: 2 workers of one core (one for each server's executor: a killed executor is started
    again on its worker), 1 GB driver and executor for each server, the settings for small data above."""
    settings: dict[str, object] = dict(
        master_port=0, thrift_port=0, connect_port=0, worker_memory="1g", driver_memory="1g", executor_memory="1g",
        conf=SMALL_DATA,
    )  # fmt: skip
    settings.update(spec)
    return start_cluster(ClusterSpec(state_dir=state_dir, **settings), timeout=300)  # type: ignore[arg-type]


def processes_naming(folder: Path) -> list[str]:
    """The processes whose command line names ``folder`` (every JVM of a cluster carries its state folder)."""
    needle = str(folder.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in command:
            shown = command.replace(b"\0", b" ")[:300].decode(errors="replace")
            found.append(f"{entry.name}: {shown}")
    return found
