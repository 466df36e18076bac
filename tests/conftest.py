"""The suite's shared fixtures (meshes built once per session) and its hooks (scheduling units, markers).

Helpers the tests import live in tests/helpers.py: a conftest is loaded by pytest, never imported by a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import s3server, sparkcluster
from tests.helpers import Built, copy_demo, copy_fixture, copy_tree, run_mesh


@pytest.fixture(scope="session")
def plain_mesh_built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The plain_mesh fixture (no mesh.yml) built once with `mesh build`."""
    root = copy_fixture("plain_mesh", tmp_path_factory.mktemp("plain"))
    return Built(root, run_mesh("build", cwd=root))


@pytest.fixture
def plain_mesh(tmp_path: Path) -> Path:
    """A fresh, unbuilt copy of plain_mesh."""
    return copy_fixture("plain_mesh", tmp_path)


@pytest.fixture
def plain_mesh_copy(plain_mesh_built: Built, tmp_path: Path) -> Path:
    """A private copy of the built plain_mesh, for tests that change it."""
    return copy_tree(plain_mesh_built.root, tmp_path / "mesh")


@pytest.fixture(scope="session")
def demo_built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = copy_demo(tmp_path_factory.mktemp("demo") / "mesh")
    data = run_mesh("demo-data", cwd=root)
    assert data.returncode == 0, data.stdout + data.stderr
    return Built(root, run_mesh("build", cwd=root))


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """moto's S3 server on loopback for the session; stopped at its end (the store unit's, and stitching from a release)."""
    if not s3server.available():
        pytest.skip("needs the s3 extra and moto[server]")
    server = s3server.Server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One local Spark cluster for the session (master, 2 workers, Thrift and Connect servers on free ports:
    tests/sparkcluster.py), the Cluster of `mesh spark-cluster`'s launcher; stopped at the session's end, which
    then fails if any process still names its folder. Here, not in tests/dbt/engines/spark/, so the launcher's
    own tests (tests/selfservice/) share it: one start (about 40 s on 2 cores) per session."""
    from mesh_tools.selfservice.spark_cluster import stop_cluster

    reason = sparkcluster.available()
    if reason:
        pytest.skip(f"needs a local Spark cluster: {reason}")
    state = tmp_path_factory.mktemp("spark-cluster")
    try:
        yield sparkcluster.start(state)
    finally:
        stop_cluster(state)
    left = sparkcluster.processes_naming(state)
    assert not left, f"processes of the session's Spark cluster outlived `stop_cluster`: {left}"


# `make test` runs the suite in parallel processes (pytest-xdist, one more than cores). Tests that share an
# expensive session build go to one worker, as one unit, so each build happens once; the rest
# spread freely. The units are named from the test's module (a static map: the controller
# schedules by node id, before any fixture is known), heaviest first so no worker idles at the end.
_UNITS = (
    ("tests/dbt/engines/spark/", "demo"),  # spark's comparison reads the DuckDB demo build: one unit, one build
    ("tests/test_synthetic_and_benchmark.py::test_benchmark_runs_at_tiny_size", "benchmark"),
    ("tests/foreign/", "corpus"),  # every file there reads the corpus build: one build, one worker
    ("tests/test_demo_mesh.py", "demo"),
    ("tests/docsite/", "demo"),
    ("tests/docs/test_screenshots.py", "demo"),  # photographs the demo build
    ("tests/dagster/", "demo"),  # Dagster materializes a copy of the demo build
    ("tests/selfservice/", "demo"),
    ("tests/model/test_demo_contracts.py", "demo"),
    ("tests/governance/test_rules.py", "governance"),  # one parse of the governance fixture
    ("tests/health/", "health"),
    ("tests/exchange/test_type_matrix.py", "types"),
    ("tests/dbt/engines/postgres/", "postgres"),  # one server and one warehouse build, shared
    ("tests/store/", "s3"),  # one S3 server and one producer/consumer pair, shared
)
# Tests on copies of the plain build (exchange, hardening, stitch, build) spread freely: each worker
# builds plain_mesh once (seconds), and one unit of them would take minutes on a single core.
_ORDER = ["demo", "benchmark", "corpus", "postgres", "s3", "governance", "health", "types"]


# The session fixtures behind the units: a test that reads one outside its unit would build it again on
# another worker (minutes), so the collection refuses it (a test file moved without its line above).
# spark_cluster: its readers (tests/selfservice/, tests/dbt/engines/spark/) are in "demo", whose spark tests read
# demo_built too: one worker, one cluster.
_BUILT_BY_UNIT = {"demo_built": "demo", "corpus": "corpus", "pg": "postgres", "pg_mesh": "postgres",
                  "pair": "s3", "health_mesh": "health", "spark_cluster": "demo", "dagster_demo": "demo"}  # fmt: skip


def unit_of(nodeid: str) -> str | None:
    return next((unit for prefix, unit in _UNITS if nodeid.startswith(prefix)), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heaviest units first (every worker collects the same order); every reader of a unit's build in that unit."""
    strays = [
        f"{item.nodeid} reads {name} (unit {unit!r}) but is in unit {unit_of(item.nodeid)!r}"
        for item in items
        for name in getattr(item, "fixturenames", ())
        if (unit := _BUILT_BY_UNIT.get(name)) and unit_of(item.nodeid) != unit
    ]
    if strays:
        raise pytest.UsageError("tests/conftest.py _UNITS: " + "; ".join(strays[:5]))

    # the tests on the session's Spark cluster (directly or through a build on it): `make test-cluster`
    cluster = {"spark_cluster", "thrift_built", "connect_built"}
    for item in items:
        if cluster & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)

    def rank(item: pytest.Item) -> int:
        unit = unit_of(item.nodeid)
        return _ORDER.index(unit) if unit else len(_ORDER)

    items.sort(key=rank)  # stable: a module's tests keep their order


# optional: pytest-xdist defines this hook; without it (`pytest -p no:xdist`) an unknown hook stops the collection
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid) or nodeid

    return UnitScheduling(config, log)
