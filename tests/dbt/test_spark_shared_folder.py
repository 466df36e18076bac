"""Whether a Spark cluster reaches the mesh's files (the shared folder), decided on real folders, without a cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mesh_tools.core.config import ExchangeConfig
from mesh_tools.core.mesh import SHARED_DIR_ENV, Mesh
from mesh_tools.dbt import engines
from mesh_tools.dbt.engines import spark
from mesh_tools.dbt.engines.spark_cluster import SparkCluster, shared_folder_problems
from tests.helpers import copy_demo, mesh_env, run_command

REMOTE = "thrift://10.0.0.7:10000"


def test_a_cluster_on_this_machine_needs_no_shared_folder(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        assert shared_folder_problems(host, "thrift://here", None, tmp_path / "exchange") == []
    (missing,) = shared_folder_problems("10.0.0.7", REMOTE, None, tmp_path / "exchange")
    assert missing.message == f"builds on {REMOTE}, another machine, and no shared folder is set"
    assert f"export {SHARED_DIR_ENV}=<that folder>" in missing.fix


def test_the_exchange_must_lie_below_the_shared_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    assert shared_folder_problems("10.0.0.7", REMOTE, str(shared), shared / "mesh" / "exchange") == []
    assert shared_folder_problems("10.0.0.7", REMOTE, str(shared), shared) == []  # the shared folder itself
    local = tmp_path / "mesh" / "exchange"
    (outside,) = shared_folder_problems("127.0.0.1", REMOTE, str(shared), local)  # set: loopback is checked too
    assert outside.message == (
        f"builds on {REMOTE}, which reads and writes releases at the paths of the exchange {local}, but that is "
        f"not below the shared folder {SHARED_DIR_ENV}={shared}, so the cluster cannot reach it"
    )
    assert f"set `exchange.path` in mesh.yml to a folder below {shared}" in outside.fix
    # a sibling whose name starts like the shared folder's is not below it
    assert shared_folder_problems("10.0.0.7", REMOTE, str(shared), tmp_path / "shared-not" / "exchange")


def test_links_are_followed_as_the_cluster_sees_files_not_this_machines_links(tmp_path: Path) -> None:
    shared, local = tmp_path / "shared", tmp_path / "local"
    (shared / "mesh").mkdir(parents=True)
    (local / "exchange").mkdir(parents=True)
    (shared / "mesh" / "exchange").symlink_to(local / "exchange")  # below by name, on this machine's disk
    (out,) = shared_folder_problems("10.0.0.7", REMOTE, str(shared), shared / "mesh" / "exchange")
    assert f"the exchange {shared}/mesh/exchange (resolves to {local}/exchange)" in out.message
    (tmp_path / "mount").symlink_to(shared)  # the shared folder reached through a link: compared resolved
    (tmp_path / "exchange-link").symlink_to(shared / "mesh", target_is_directory=True)
    assert shared_folder_problems("10.0.0.7", REMOTE, str(tmp_path / "mount"), tmp_path / "exchange-link") == []
    (out,) = shared_folder_problems("10.0.0.7", REMOTE, str(tmp_path / "mount"), local)
    assert f"{SHARED_DIR_ENV}={tmp_path}/mount (resolves to {shared})" in out.message


def test_a_shared_folder_that_is_not_one_is_refused_on_any_cluster(tmp_path: Path) -> None:
    (gone,) = shared_folder_problems("127.0.0.1", REMOTE, str(tmp_path / "unmounted"), tmp_path)
    assert f"the shared folder {SHARED_DIR_ENV}={tmp_path}/unmounted is not a folder here" in gone.message
    (relative,) = shared_folder_problems("10.0.0.7", REMOTE, "mnt/mesh", None)
    assert "is not an absolute path" in relative.message and "<its absolute path>" in relative.fix


def test_an_object_store_exchanges_cache_lives_below_the_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.delenv("MESH_EXCHANGE_URL", raising=False)
    monkeypatch.delenv(SHARED_DIR_ENV, raising=False)
    store = ExchangeConfig.model_validate({"url": "s3://bucket/mesh"})
    mesh = Mesh(root=tmp_path / "root", name="Acme mesh/eu", config_path=None, domains={}, exchange=store)
    assert mesh.exchange_path == tmp_path / "root" / ".mesh" / "exchange-cache"  # no shared folder: in the mesh
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path / "unmounted"))
    assert mesh.exchange_path == tmp_path / "root" / ".mesh" / "exchange-cache"  # never a local folder in its place
    monkeypatch.setenv(SHARED_DIR_ENV, str(shared) + "/")
    assert mesh.exchange_path == shared / "mesh-cache" / "Acme_mesh_eu"
    assert shared_folder_problems("10.0.0.7", REMOTE, str(shared), mesh.exchange_path, object_store=True) == []
    # mesh.yml's own cache wins, and must then lie below the shared folder itself
    chosen = Mesh(root=tmp_path / "root", name="acme", config_path=None, domains={},
                  exchange=ExchangeConfig.model_validate({"url": "s3://bucket/mesh", "cache": "cache"}))  # fmt: skip
    assert chosen.exchange_path == tmp_path / "root" / "cache"
    (out,) = shared_folder_problems("10.0.0.7", REMOTE, str(shared), chosen.exchange_path, object_store=True)
    assert f"the object-store exchange's verified cache {tmp_path}/root/cache" in out.message
    assert f"Remove `exchange.cache` from mesh.yml (with {SHARED_DIR_ENV} set, the cache is {shared}/mesh-cache/" in (
        out.fix
    )
    # a folder exchange stays where mesh.yml puts it
    folder = Mesh(root=tmp_path / "root", name="acme", config_path=None, domains={})
    assert folder.exchange_path == tmp_path / "root" / "exchange"


def test_only_a_cluster_target_has_to_reach_the_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))
    outside = Path("/elsewhere/exchange")
    assert engines.exchange_reach_problems("duckdb", engines.Storage(), outside, False) == []
    session = engines.Storage(warehouse=tmp_path, files=(tmp_path,))
    assert engines.exchange_reach_problems("spark", session, outside, False) == []
    cluster = SparkCluster().storage(Path("/p"), {"method": "thrift", "host": "10.0.0.7", "port": 10000})
    (problem,) = engines.exchange_reach_problems("spark", cluster, outside, False)
    assert "the exchange /elsewhere/exchange" in problem.message
    assert engines.exchange_reach_problems("spark", cluster, tmp_path / "exchange", False) == []


def test_a_spark_stub_reads_a_release_at_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    sql = spark.read_release_sql(str(tmp_path / "link" / "data.parquet"))
    assert sql == f"select * from parquet.`{os.path.realpath(tmp_path)}/real/data.parquet`"


def test_a_build_on_a_cluster_that_cannot_reach_the_exchange_stops_before_dbt(tmp_path: Path) -> None:
    """The real command line: exit 2 and both paths, before any server is asked (10.255.255.1 never answers)."""
    root = copy_demo(tmp_path / "demo")
    shared = tmp_path / "shared"
    shared.mkdir()
    env = {**mesh_env(), SHARED_DIR_ENV: str(shared), "MESH_SPARK_THRIFT_HOST": "10.255.255.1"}
    result = run_command(["mesh", "build", "--target", "spark_thrift"], root, env)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "target spark_thrift in" in message
    assert f"the exchange {root}/exchange, but that is not below the shared folder {SHARED_DIR_ENV}={shared}" in message
    assert "does not answer" not in message and "Traceback" not in result.stderr
    assert not list(root.glob("projects/*/target/run_results.json"))  # no dbt ran


def test_doctor_says_it_once_per_domain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.workflows.doctor import BLOCKING, diagnose

    mesh = load_mesh(copy_demo(tmp_path / "demo"))
    monkeypatch.setenv("MESH_SPARK_THRIFT_HOST", "10.255.255.1")
    monkeypatch.delenv(SHARED_DIR_ENV, raising=False)
    monkeypatch.delenv("MESH_EXCHANGE_URL", raising=False)
    missing = [p for p in diagnose(mesh, "spark_thrift").problems if "shared folder" in p.message]
    assert [p.message.split()[0] for p in missing] == list(mesh.domains)  # the profile's and the exchange's: one
    assert all(p.level == BLOCKING and "no shared folder is set" in p.message for p in missing)
    (tmp_path / "shared").mkdir()
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path / "shared"))
    outside = [p for p in diagnose(mesh, "spark_thrift").problems if "shared folder" in p.message]
    assert [p.message.split()[0] for p in outside] == list(mesh.domains)
    assert all(f"the exchange {mesh.exchange_path}, but that is not below" in p.message for p in outside)
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))  # holds the demo's exchange: nothing to say
    assert not [p for p in diagnose(mesh, "spark_thrift").problems if "shared folder" in p.message]
