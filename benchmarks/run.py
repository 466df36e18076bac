"""The mesh benchmark: one command, every comparison measured in the same run, medians reported.

    .venv/bin/python benchmarks/run.py                 # everything, full size (tens of minutes)
    .venv/bin/python benchmarks/run.py --tiny          # every section at a tiny size (CI: does it still run?)
    .venv/bin/python benchmarks/run.py --only naive,loom --runs 5

Sections:
  naive  `mesh build` on the demo mesh beside the naive loop (`cd projects/X && dbt build` per
         domain, in dependency order, after one `mesh stitch`), alternating runs.
  loom   the same demo mesh stitched by dbt-loom (installed into its own virtualenv, since it
         patches dbt): the per-domain loop with the dbt-loom plugin, unit tests excluded (dbt-loom
         rejects unit tests that mock an upstream model: "protected to the 'sales' package").
  large  `mesh build --no-publish` on the demo mesh with many orders beside the floor: the
         compiled SQL of every model run directly, in dependency order, in one DuckDB connection;
         `mesh build` with publishing beside the same floor; and `mesh publish sales` beside a bare
         DuckDB `COPY ... TO '...parquet'` of the same tables (publish throughput, rows per second).
  postgres  the demo mesh on a throwaway PostgreSQL server: `mesh build --target postgres` beside
         the naive loop on the same server, and `mesh publish` (release tables, pointer views, grants)
         beside a bare CREATE TABLE AS of the same products.
  objectstore  the exchange in an S3 API on loopback (moto): `mesh publish` of every domain beside a
         bare boto3 put_object of the same files; the first consume (`mesh stitch` with an empty cache,
         fetching and verifying every release read) beside a bare boto3 download of the same files.
  big    a mesh of many small domains (default 200 x 5): `mesh stitch` cold, `mesh check` (first run and with
         nothing changed, and --no-sqlfluff), `mesh health`, `docs`, `doctor`, `ls`, `status`.
  goals  (with --only) naive, state, big and large: every row of the performance goals table in one run.
  scale  synthetic meshes of D domains x M models: time and peak memory (whole process tree) of
         `mesh stitch`, `mesh check --no-sqlfluff`, `mesh build`, and `mesh sync` when nothing changed.
  cluster  the demo mesh (--cluster-orders, default 1M) on a Spark cluster started on loopback (master,
         two workers, Thrift and Connect servers): `mesh build --no-state` through Thrift and through
         Connect beside the local session and DuckDB, alternating; `mesh publish sales` through the
         engine beside a bare `insert overwrite directory`; the cluster's start-up on its own.
Results: benchmarks/results/benchmark.json and benchmark.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOOM_VENV = REPO / "benchmarks" / ".venv-loom"


# ---------------------------------------------------------------- measuring


def env() -> dict[str, str]:
    return {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}


def _tree_rss_kb(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def measure(cmd: list[str], cwd: Path, *, check: bool = True) -> dict[str, float]:
    """Wall time, peak memory and CPU seconds (user + system, every process it waited for) of ``cmd``'s tree."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd} (exit {proc.returncode}):\n{output[-4000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"seconds": seconds, "peak_mb": peak[0] / 1024, "cpu_s": round(cpu, 2)}


def seconds(cmd: list[str], cwd: Path) -> float:
    return measure(cmd, cwd)["seconds"]


def mesh(*args: str) -> list[str]:
    return [str(BIN / "mesh"), *args]


def copy_demo(dest: Path) -> Path:
    from mesh_tools.demo_data import copy_demo_mesh

    return copy_demo_mesh(REPO, dest)


def domain_order(root: Path) -> list[str]:
    listing = subprocess.run(mesh("ls"), cwd=root, env=env(), capture_output=True, text=True, check=True)
    return [line.split()[0] for line in listing.stdout.splitlines()[1:]]


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


# ---------------------------------------------------------------- sections


SECTIONS = (
    "naive",
    "loom",
    "large",
    "scale",
    "observe",
    "big",
    "engines",
    "state",
    "postgres",
    "objectstore",
    "cluster",
)
GOALS = ("naive", "state", "big", "large")  # `--only goals`: every row of the performance goals table, in one run


def bench_naive(work: Path, runs: int, orders: int, warm_up: bool = True) -> dict[str, Any]:
    """``warm_up=False`` (the smoke run): no warm-up build; the measured `mesh build` comes first."""
    root = copy_demo(work / "naive")
    seconds(mesh("demo-data", "--orders", str(orders)), root)
    domains = domain_order(root)
    if warm_up:
        seconds(mesh("stitch"), root)
        seconds(mesh("build", "--no-state"), root)  # warm-up: databases and partial-parse files exist for both
    naive, meshed = [], []
    for _ in range(runs):
        meshed.append(seconds(mesh("build", "--no-state"), root))  # (publishes what the naive loop's consumers read)
        naive.append(sum(seconds([str(BIN / "dbt"), "build"], root / "projects" / d) for d in domains))
    return {
        "naive_loop_s": median(naive),
        "mesh_build_s": median(meshed),
        "ratio": round(median(meshed) / median(naive), 2),
        "samples": {"naive": naive, "mesh": meshed},
    }


def ensure_loom(install: bool) -> Path | None:
    dbt = LOOM_VENV / "bin" / "dbt"
    if dbt.exists():
        return dbt
    if not install:
        return None
    subprocess.run([sys.executable, "-m", "venv", str(LOOM_VENV)], check=True)
    pip = [str(LOOM_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    result = subprocess.run([*pip, "dbt-core>=1.11,<1.12", "dbt-duckdb>=1.9,<1.12", "dbt-loom"], capture_output=True)
    return dbt if result.returncode == 0 and dbt.exists() else None


def prepare_loom(root: Path, domains: list[str], ups: dict[str, list[str]]) -> None:
    """The demo mesh the dbt-loom way: loom config + read-only attaches in each consumer's profile."""
    import yaml

    for name in domains:
        folder = root / "projects" / name
        if not ups[name]:
            continue
        manifests = [{"name": u, "type": "file", "config": {"path": f"../{u}/target/manifest.json"}} for u in ups[name]]
        (folder / "dbt_loom.config.yml").write_text(yaml.safe_dump({"manifests": manifests}))
        profile_text = (folder / "profiles.yml").read_text().replace("{{ env_var('MESH_STORAGE_DIR', '.') }}", ".")
        profile = yaml.safe_load(profile_text)
        profile[name]["outputs"]["dev"]["attach"] = [
            {"path": f"../{u}/{u}.duckdb", "alias": u, "read_only": True} for u in ups[name]
        ]
        (folder / "profiles.yml").write_text(yaml.safe_dump(profile))


def bench_loom(work: Path, runs: int, orders: int, install: bool) -> dict[str, Any]:
    loom_dbt = ensure_loom(install)
    if loom_dbt is None:
        return {"skipped": f"dbt-loom is not installed in {LOOM_VENV} (run without --no-install-loom)"}
    root = copy_demo(work / "loom")
    seconds(mesh("demo-data", "--orders", str(orders)), root)
    domains = domain_order(root)
    sys.path.insert(0, str(REPO))
    from mesh_tools.core.mesh import load_mesh

    ups = {n: list(d.upstream_names) for n, d in load_mesh(root).domains.items()}
    prepare_loom(root, domains, ups)
    loom_cmd = [str(loom_dbt), "build", "--exclude-resource-type", "unit_test"]
    mesh_root = copy_demo(work / "loom-mesh")
    seconds(mesh("demo-data", "--orders", str(orders)), mesh_root)
    for name in domains:  # dbt-loom reads the upstream manifests even for `dbt deps`: go in order
        seconds([str(loom_dbt), "deps"], root / "projects" / name)
        seconds(loom_cmd, root / "projects" / name)  # warm-up
    seconds(mesh("build", "--no-state"), mesh_root)
    loom, meshed = [], []
    for _ in range(runs):
        loom.append(sum(seconds(loom_cmd, root / "projects" / d) for d in domains))
        meshed.append(seconds(mesh("build", "--no-state"), mesh_root))
    version = subprocess.run(
        [str(LOOM_VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('dbt-loom'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "dbt_loom_version": version,
        "loom_loop_s": median(loom),
        "mesh_build_s": median(meshed),
        "ratio": round(median(meshed) / median(loom), 2),
        "samples": {"loom": loom, "mesh": meshed},
    }


def floor_build(root: Path, domains: list[str], tests: bool = False) -> float:
    """Run every model's compiled SQL (and, with ``tests``, every data test's), in dependency order,
    in one DuckDB connection; return seconds."""
    import duckdb

    floor = root / "floor"
    floor.mkdir(exist_ok=True)
    statements: list[tuple[Path, str]] = []
    for name in domains:
        project = root / "projects" / name
        manifest = json.loads((project / "target" / "manifest.json").read_text())
        nodes = {uid: n for uid, n in manifest["nodes"].items() if n["resource_type"] in ("model", "seed")}
        done: set[str] = set()

        def visit(uid: str, nodes: dict = nodes, done: set = done, project: Path = project) -> None:
            if uid in done or uid not in nodes:
                return
            done.add(uid)
            for parent in nodes[uid].get("depends_on", {}).get("nodes", []):
                visit(parent)
            node = nodes[uid]
            if node["resource_type"] == "seed":
                types = node["config"].get("column_types") or {}
                csv = str(project / node["original_file_path"]).replace("'", "''")
                sql = f"select * from read_csv('{csv}', header = true, types = {types!r})"
            else:
                sql = node["compiled_code"].replace('"mesh_upstream_', '"')
            kind = "view" if node["config"]["materialized"] == "view" else "table"
            schema = f'"{node["database"]}"."{node["schema"]}"'
            statements.append((project, f"create schema if not exists {schema}"))
            statements.append((project, f"create or replace {kind} {node['relation_name']} as ({sql})"))

        for uid in sorted(nodes):
            visit(uid)
        if tests:
            for node in sorted(manifest["nodes"].values(), key=lambda n: n["unique_id"]):
                if node["resource_type"] == "test" and node.get("compiled_code"):
                    sql = node["compiled_code"].replace('"mesh_upstream_', '"')
                    statements.append((project, f"select count(*) from ({sql}) as dbt_internal_test"))
    con = duckdb.connect()
    for name in domains:
        con.execute(f"attach '{floor / (name + '.duckdb')}' as \"{name}\"")
    start = time.perf_counter()
    cwd = os.getcwd()
    try:
        for project, sql in statements:
            os.chdir(project)  # landing paths in sources are relative to the project, as for dbt
            con.execute(sql)
    finally:
        os.chdir(cwd)
        con.close()
    return time.perf_counter() - start


def bare_copy(root: Path, domain: str) -> tuple[float, int]:
    """The floor for publishing: DuckDB's own COPY of the domain's public tables to Parquet."""
    import duckdb

    manifest = json.loads((root / "projects" / domain / "target" / "manifest.json").read_text())
    public = [n for n in manifest["nodes"].values() if n.get("package_name") == domain and n.get("access") == "public"]
    out = root / "bare-copy"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    con = duckdb.connect(str(root / "projects" / domain / f"{domain}.duckdb"), read_only=True)
    start, rows = time.perf_counter(), 0
    for node in public:
        target = out / f"{node['alias']}.parquet"
        relation = f'"{node["schema"]}"."{node["alias"]}"'
        sql = f"copy (select * from {relation}) to '{target}' (format parquet, compression zstd)"
        rows += con.execute(sql).fetchone()[0]
    seconds_taken = time.perf_counter() - start
    con.close()
    return seconds_taken, rows


def time_by_kind(root: Path, domains: list[str]) -> dict[str, Any]:
    """Per domain: dbt's elapsed time and the summed execution time of models, tests and seeds."""
    out = {}
    for name in domains:
        results = json.loads((root / "projects" / name / "target" / "run_results.json").read_text())
        kinds: dict[str, float] = {}
        for result in results["results"]:
            kind = result["unique_id"].split(".")[0]
            kinds[kind] = round(kinds.get(kind, 0.0) + float(result["execution_time"]), 2)
        out[name] = {"dbt_elapsed_s": round(float(results["elapsed_time"]), 2), **kinds}
    return out


def bench_large(work: Path, runs: int, orders: int, reuse: Path | None = None, built_s: float = 0) -> dict[str, Any]:
    """``reuse`` (the smoke run): a demo mesh built and published already, with its data, and that build's
    seconds (``built_s``): no copy, no warm-up, and no second publishing build."""
    root = reuse or copy_demo(work / "large")
    if reuse is None:
        seconds(mesh("demo-data", "--orders", str(orders)), root)
    domains = domain_order(root)
    if reuse is None:
        seconds(mesh("build", "--no-state"), root)  # warm-up, and the manifests with compiled SQL for the floor
    built, published, floors, floors_tests, publish, copy = [], [], [], [], [], []
    rows = 0
    for _ in range(runs):
        built.append(seconds(mesh("build", "--no-state", "--no-publish"), root))
        published.append(built_s if reuse else seconds(mesh("build", "--no-state"), root))
        shutil.rmtree(root / "floor", ignore_errors=True)
        floors.append(floor_build(root, domains))
        if reuse is None:  # the smoke run measures the floor once, without its tests
            shutil.rmtree(root / "floor", ignore_errors=True)
            floors_tests.append(floor_build(root, domains, tests=True))
        publish.append(seconds(mesh("publish", "sales"), root))
        copy_s, rows = bare_copy(root, "sales")
        copy.append(copy_s)
    if reuse is None:
        seconds(mesh("build", "--no-state", "--no-publish"), root)  # once more, to read where its time went
    return {
        "orders": orders,
        "time_by_kind": time_by_kind(root, domains),
        "mesh_build_no_publish_s": median(built),
        "mesh_build_s": median(published),
        "floor_s": median(floors),
        "floor_with_tests_s": median(floors_tests) if floors_tests else None,
        "ratio": round(median(built) / median(floors), 2),
        "ratio_vs_floor_with_tests": round(median(built) / median(floors_tests), 2) if floors_tests else None,
        "ratio_with_publish": round(median(published) / median(floors), 2),
        "publish": {
            "domain": "sales",
            "rows": rows,
            "mesh_publish_s": median(publish),
            "bare_copy_s": median(copy),
            "mesh_rows_per_s": round(rows / median(publish)),
            "copy_rows_per_s": round(rows / median(copy)),
            "ratio": round(median(publish) / median(copy), 2),
        },
        "samples": {
            "build": built,
            "build_publish": published,
            "floor": floors,
            "floor_with_tests": floors_tests,
            "publish": publish,
            "copy": copy,
        },
    }


def bench_scale(
    work: Path, sizes: list[tuple[int, int]], runs: int, progress: Any = None, keep: tuple[int, int] | None = None
) -> dict[str, Any]:
    """``keep``: the size whose built mesh stays for 'observe' (the smoke run measures both on one mesh)."""
    rows = []
    for domains, models in sizes:
        root = work / f"scale-{domains}x{models}"
        seconds(mesh("generate-mesh", str(root), "--domains", str(domains), "--models", str(models),
                     "--refs", str(domains * 2), "--rows", "1000"), REPO)  # fmt: skip
        stitch = measure(mesh("stitch"), root)
        checks = [measure(mesh("check", "--no-sqlfluff"), root, check=False) for _ in range(runs)]
        builds = [measure(mesh("build", "--no-state"), root) for _ in range(runs)]
        build = {"seconds": median([b["seconds"] for b in builds]), "peak_mb": max(b["peak_mb"] for b in builds)}
        syncs = [measure(mesh("sync"), root) for _ in range(runs)]
        rows.append(
            {
                "domains": domains,
                "models_per_domain": models,
                "models": domains * models,
                "stitch_s": round(stitch["seconds"], 2),
                "stitch_peak_mb": round(stitch["peak_mb"]),
                "build_s": round(build["seconds"], 2),
                "build_peak_mb": round(build["peak_mb"]),
                "build_ms_per_model": round(1000 * build["seconds"] / (domains * models), 1),
                "check_s": round(median([c["seconds"] for c in checks]), 2),
                "check_peak_mb": round(max(c["peak_mb"] for c in checks)),
                "sync_idle_s": round(median([x["seconds"] for x in syncs]), 2),
            }
        )
        if progress:
            progress({"rows": rows, "growth": growth(rows)})
        if (domains, models) != keep:
            shutil.rmtree(root, ignore_errors=True)
        print(f"  scale {domains}x{models}: {rows[-1]}", flush=True)
    return {"rows": rows, "growth": growth(rows)}


def bench_big(work: Path, size: tuple[int, int], runs: int, reuse: Path | None = None) -> dict[str, Any]:
    """The mesh-wide commands on a mesh of many small domains (default 200 x 5), generated and stitched cold.

    ``mesh check`` with sqlfluff is measured twice: the first run lints every file; the second, with nothing
    changed, is what a team sees on its next check. ``reuse`` (the smoke run): a generated mesh built already."""
    domains, models = size
    if reuse is not None:
        root, stitch, build = reuse, None, None
    else:
        root = work / f"big-{domains}x{models}"
        seconds(mesh("generate-mesh", str(root), "--domains", str(domains), "--models", str(models),
                     "--refs", str(domains * 2), "--rows", "1000"), REPO)  # fmt: skip
        stitch = measure(mesh("stitch", "-j", "2"), root)
        build = measure(mesh("build", "-j", "2"), root)

    def runs_of(*args: str) -> dict[str, float]:
        taken = [measure(mesh(*args), root, check=False) for _ in range(runs)]
        return {"seconds": median([t["seconds"] for t in taken]), "peak_mb": round(max(t["peak_mb"] for t in taken)),
                "cpu_s": median([t["cpu_s"] for t in taken])}  # fmt: skip

    check_cold = measure(mesh("check"), root, check=False)  # the first check of this mesh: every file linted
    check_bare = runs_of("check", "--no-sqlfluff")
    check_warm = runs_of("check")
    result: dict[str, Any] = {
        "domains": domains,
        "models_per_domain": models,
        "models": domains * models,
        "stitch_s": round(stitch["seconds"], 2) if stitch else None,
        "stitch_peak_mb": round(stitch["peak_mb"]) if stitch else None,
        "stitch_cpu_s": stitch["cpu_s"] if stitch else None,
        "build_s": round(build["seconds"], 2) if build else None,
        "check_no_sqlfluff_s": check_bare["seconds"],
        "check_no_sqlfluff_peak_mb": check_bare["peak_mb"],
        "check_no_sqlfluff_cpu_s": check_bare["cpu_s"],
        "check_first_s": round(check_cold["seconds"], 2),
        "check_first_peak_mb": round(check_cold["peak_mb"]),
        "check_first_cpu_s": check_cold["cpu_s"],
        "check_s": check_warm["seconds"],
        "check_peak_mb": check_warm["peak_mb"],
        "check_cpu_s": check_warm["cpu_s"],
    }
    for name, args in (("health", ("health",)), ("docs", ("docs",)), ("doctor", ("doctor",)), ("ls", ("ls",)),
                       ("status", ("status",))):  # fmt: skip
        taken = runs_of(*args)
        result[f"{name}_s"], result[f"{name}_peak_mb"], result[f"{name}_cpu_s"] = (taken["seconds"], taken["peak_mb"],
                                                                                  taken["cpu_s"])  # fmt: skip
    print(f"  big {domains}x{models}: {result}", flush=True)
    return result


def bench_engines(work: Path, runs: int) -> dict[str, Any]:
    """The demo mesh built on DuckDB and on local Spark (`method: session`), in the same run."""
    times: dict[str, list[float]] = {"duckdb": [], "spark": []}
    for run in range(runs):
        for engine in ("duckdb", "spark"):
            root = copy_demo(work / f"engines-{engine}-{run}")
            seconds(mesh("demo-data"), root)
            args = ("build", "--no-state") if engine == "duckdb" else ("build", "--no-state", "--target", "spark")
            times[engine].append(seconds(mesh(*args), root))
            shutil.rmtree(root, ignore_errors=True)
    duck, spark = median(times["duckdb"]), median(times["spark"])
    return {"duckdb_build_s": round(duck, 2), "spark_build_s": round(spark, 2), "ratio": round(spark / duck, 2)}


def bench_cluster(work: Path, runs: int, orders: int) -> dict[str, Any]:
    """The demo mesh at ``orders`` on a Spark cluster started on loopback (`mesh spark-cluster`'s launcher: master,
    two workers, Thrift and Connect servers), through Thrift and through Connect, beside the local session and
    DuckDB, alternating; then publishing one product through the engine beside a bare
    `insert overwrite directory` of the same relation. The cluster's start-up is reported on its own."""
    sys.path.insert(0, str(REPO))
    from mesh_tools.selfservice.spark_cluster import ClusterSpec, start_cluster, stop_cluster

    state = work / "spark-cluster"
    start = time.perf_counter()
    cluster = start_cluster(ClusterSpec(state_dir=state, master_port=0, thrift_port=0, connect_port=0), timeout=300)
    started_s = time.perf_counter() - start
    os.environ.update(cluster.env())  # the targets read the servers' addresses from the environment
    targets = {"duckdb": None, "spark_local": "spark", "spark_thrift": "spark_thrift", "spark_connect": "spark_connect"}
    times: dict[str, list[float]] = {name: [] for name in targets}
    publish: list[float] = []
    bare: list[float] = []
    try:
        for run in range(runs):
            for name, target in targets.items():
                root = copy_demo(work / f"cluster-{name}-{run}")
                seconds(mesh("demo-data", "--orders", str(orders)), root)
                chosen = ("--target", target) if target else ()
                times[name].append(seconds(mesh("build", "--no-state", *chosen), root))
                if name == "spark_thrift":
                    publish.append(seconds(mesh("publish", "-s", "sales", "--target", target), root))
                    bare.append(_bare_insert_directory(cluster, root, work / f"bare-{run}"))
                shutil.rmtree(root, ignore_errors=True)
    finally:
        stop_cluster(state)
    duck = median(times["duckdb"])
    builds = {f"{name}_build_s": median(values) for name, values in times.items()}
    return {
        "orders": orders,
        "cluster_start_s": round(started_s, 1),
        **builds,
        "ratios_to_duckdb": {name: round(median(v) / duck, 2) for name, v in times.items() if name != "duckdb"},
        "publish_through_engine_s": median(publish),
        "bare_insert_directory_s": median(bare),
        "publish_ratio": round(median(publish) / median(bare), 2) if median(bare) else None,
    }


def _bare_insert_directory(cluster: Any, root: Path, folder: Path) -> float:
    """One `insert overwrite directory ... using parquet` of sales' current product, on a Thrift connection of
    its own: what publishing through the engine costs at the least."""
    from pyhive import hive

    manifest = json.loads((root / "projects/sales/target/manifest.json").read_text())
    relation = next(
        n["relation_name"] for n in manifest["nodes"].values()
        if n.get("name") == "fct_orders" and str(n.get("version")) == "2"
    )  # fmt: skip
    connection = hive.connect(host=cluster.thrift_host, port=cluster.thrift_port)
    try:
        cursor = connection.cursor()
        start = time.perf_counter()
        cursor.execute(
            f"insert overwrite directory '{folder}' using parquet select /*+ REPARTITION(1) */ * from {relation}"
        )
        return time.perf_counter() - start
    finally:
        connection.close()


def bench_postgres(work: Path, runs: int, orders: int) -> dict[str, Any]:
    """The demo mesh on a throwaway PostgreSQL server (tests/pgserver.py), one login role per domain:
    `mesh build --no-state --target postgres` beside the naive loop (`dbt build --target postgres` per
    domain, in dependency order, after the same stitching), alternating; then each domain's
    `mesh publish` (release tables, pointers, grants in one transaction) beside a bare
    `CREATE TABLE AS` of the same products on a connection of the same role."""
    sys.path.insert(0, str(REPO))
    from tests import pgserver

    problem = pgserver.available()
    if problem:
        return {"skipped": problem}
    server = pgserver.start()
    saved = dict(os.environ)
    try:
        root = copy_demo(work / "postgres")
        seconds(mesh("demo-data", "--orders", str(orders)), root)
        os.environ.update({"MESH_PG_HOST": "127.0.0.1", "MESH_PG_PORT": str(server.port), "MESH_PG_DATABASE": "mesh"})
        bootstrap = subprocess.run(mesh("grants", "--bootstrap", "--target", "postgres"), cwd=root, env=env(),
                                   capture_output=True, text=True, check=True)  # fmt: skip
        server.admin("create database mesh")
        server.admin(bootstrap.stdout, dbname="mesh")
        domains = domain_order(root)
        for name in domains:
            server.admin(f"alter role {name} password 'bench-{name}'")
            os.environ[f"MESH_PG_PASSWORD_{name.upper()}"] = f"bench-{name}"
        first = seconds(mesh("build", "--no-state", "--target", "postgres"), root)  # loads the landing files too
        naive, meshed = [], []
        for _ in range(runs):
            meshed.append(seconds(mesh("build", "--no-state", "--target", "postgres"), root))
            naive.append(sum(seconds([str(BIN / "dbt"), "build", "--target", "postgres"], root / "projects" / d)
                             for d in domains))  # fmt: skip
        publish, bare, rows = [], [], 0
        for _ in range(runs):
            publish.append(sum(seconds(mesh("publish", d, "--target", "postgres"), root) for d in domains))
            taken, rows = bare_ctas(server, root, domains)
            bare.append(taken)
        return {
            "orders": orders,
            "first_build_s": round(first, 2),
            "naive_loop_s": median(naive),
            "mesh_build_s": median(meshed),
            "ratio": round(median(meshed) / median(naive), 2),
            "publish_s": median(publish),
            "bare_ctas_s": median(bare),
            "publish_ratio": round(median(publish) / median(bare), 2) if median(bare) else None,
            "published_rows": rows,
            "samples": {"naive": naive, "mesh": meshed, "publish": publish, "bare": bare},
        }
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()


def bench_objectstore(work: Path, runs: int, orders: int) -> dict[str, Any]:
    """The demo mesh's exchange in an S3 API on loopback (moto's server, tests/s3server.py).

    Publish: each domain's `mesh publish` into the store, beside a bare boto3 `put_object` of the same
    release files (and beside `mesh publish` into a folder, the same work without the store). First
    consume: `mesh stitch` of every domain with an empty cache (every release read is fetched and
    verified) beside the same stitch with the cache warm, and a bare boto3 download of the same files.
    """
    sys.path.insert(0, str(REPO))
    from tests import s3server

    if not s3server.available():
        return {"skipped": "needs the s3 extra and moto[server]"}
    server = s3server.Server(work / "moto.log")
    saved = dict(os.environ)
    try:
        root = copy_demo(work / "objectstore")
        seconds(mesh("demo-data", "--orders", str(orders)), root)
        seconds(mesh("build", "--no-state"), root)  # publishes into the folder exchange: consumers need releases
        domains = domain_order(root)
        folder = [sum(seconds(mesh("publish", d), root) for d in domains) for _ in range(runs)]
        bucket = server.bucket("mesh-bench")
        os.environ.update({**s3server.CREDENTIALS, "AWS_ENDPOINT_URL": server.endpoint,
                           "MESH_EXCHANGE_URL": f"s3://{bucket}/exchange"})  # fmt: skip
        client = server.client()
        publish, bare_up, sizes = [], [], 0
        for _ in range(runs):
            publish.append(sum(seconds(mesh("publish", d), root) for d in domains))
            files = sorted((root / "exchange" / "products").glob("*/*/*/releases/*/*.parquet"))
            newest = {}
            for path in files:  # the folder exchange's newest release of each product: the same files
                newest[path.parent.parent.parent] = [p for p in files if p.parent == path.parent]
            chosen = [p for group in newest.values() for p in group]
            sizes = sum(p.stat().st_size for p in chosen)
            start = time.perf_counter()
            for i, path in enumerate(chosen):
                client.put_object(Bucket=bucket, Key=f"bare/{i}/{path.name}", Body=path.read_bytes())
            bare_up.append(time.perf_counter() - start)
        cache = root / ".mesh" / "exchange-cache" / "objects"
        cold, warm, bare_down, fetched = [], [], [], 0
        for _ in range(runs):
            shutil.rmtree(cache, ignore_errors=True)
            cold.append(seconds(mesh("stitch"), root))
            warm.append(seconds(mesh("stitch"), root))
            digests = {p.name.split(".")[0] for p in cache.rglob("*.parquet")}
            keys = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="exchange/products/"):
                for item in page.get("Contents", []):
                    if item["Key"].endswith("/release.json"):
                        descriptor = json.loads(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
                        folder_key = item["Key"].rsplit("/", 1)[0]
                        keys += [f"{folder_key}/{f['path']}" for f in descriptor["files"]
                                 if f["sha256"].removeprefix("sha256:") in digests]  # fmt: skip
            keys = sorted(set(keys))[: len(digests)]
            fetched = len(keys)
            start = time.perf_counter()
            for key in keys:
                (work / "bare-download.parquet").write_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            bare_down.append(time.perf_counter() - start)
        return {
            "orders": orders,
            "published_bytes": sizes,
            "publish_s": median(publish),
            "publish_to_folder_s": median(folder),
            "bare_upload_s": median(bare_up),
            "publish_ratio": round(median(publish) / median(bare_up), 2) if median(bare_up) else None,
            "first_consume_s": median(cold),
            "warm_stitch_s": median(warm),
            "bare_download_s": median(bare_down),
            "fetched_files": fetched,
            "consume_ratio": round((median(cold) - median(warm)) / median(bare_down), 2) if median(bare_down) else None,
            "samples": {
                "publish": publish,
                "folder": folder,
                "bare_up": bare_up,
                "cold": cold,
                "warm": warm,
                "bare_down": bare_down,
            },  # fmt: skip
        }
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()


def bare_ctas(server: Any, root: Path, domains: list[str]) -> tuple[float, int]:
    """The floor for publishing on the warehouse: `create table ... as select *` of every product, as its role."""
    total, rows = 0.0, 0
    for name in domains:
        manifest = json.loads((root / "projects" / name / "target" / "manifest.json").read_text())
        public = [
            n for n in manifest["nodes"].values() if n.get("package_name") == name and n.get("access") == "public"
        ]
        con = server.connect(user=name, password=f"bench-{name}", dbname="mesh")
        try:
            with con.cursor() as cur:
                cur.execute(f'create schema if not exists "{name}_bare"')
                con.commit()
                start = time.perf_counter()
                for node in public:
                    target = f'"{name}_bare"."{node["alias"]}"'
                    cur.execute(f"drop table if exists {target}")
                    cur.execute(f"create table {target} as select * from {node['relation_name']}")
                    rows += cur.rowcount
                con.commit()
                total += time.perf_counter() - start
        finally:
            con.close()
    return total, rows


SEEDED_TABLES = {
    # table -> (columns shifted back in time, columns made unique per copy)
    "collections": (["collected_at"], ["collection_id"]),
    "runs": (["started_at", "finished_at"], ["collection_id", "invocation_id"]),
    "node_results": (["completed_at"], ["collection_id", "invocation_id"]),
    "source_freshness": (["max_loaded_at", "snapshotted_at"], ["collection_id"]),
    "findings": ([], ["collection_id"]),
    "measurements": (["measured_at"], ["collection_id", "basis", "release_id", "invocation_id"]),
    "product_status": (["evaluated_at"], ["collection_id"]),
    "domain_status": (["evaluated_at"], ["collection_id"]),
}


def seed_history(db: Path, days: int, per_day: int) -> dict[str, int]:
    """Give a history of one build a past: copies of it, every 24/per_day hours, back ``days`` days.

    Row counts of the copies wander by up to ±3 % so the volume monitor has a band to judge with.
    """
    import duckdb

    copies, step = days * per_day, 24 / per_day
    with duckdb.connect(str(db)) as con:
        for table, (times, unique) in SEEDED_TABLES.items():
            columns = [r[0] for r in con.execute(f"describe {table}").fetchall()]
            exprs = []
            for c in columns:
                if c in times:
                    exprs.append(f"{c} - to_hours(cast(k * {step} as bigint)) as {c}")
                elif c in unique:
                    exprs.append(f"case when {c} is null then null else {c} || '-h' || k end as {c}")
                elif table == "measurements" and c == "rows":
                    exprs.append("cast(rows * (1 + 0.03 * sin(k)) as bigint) as rows")
                else:
                    exprs.append(c)
            con.execute(f"insert into {table} select {', '.join(exprs)} from {table}, range(1, {copies + 1}) r(k)")
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in SEEDED_TABLES}


LAST_BUILD: dict[str, int] = {}  # what the last `_build_counts` build's output said beyond its counts


def _build_counts(root: Path, *args: str) -> tuple[float, int, int]:
    """Seconds of one `mesh build`, and the models it ran of all (its summary line); products it confirmed
    (early cutoff) and domains it pipelined go to LAST_BUILD."""
    start = time.perf_counter()
    done = subprocess.run(mesh("build", *args), cwd=root, env=env(), capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mesh build {' '.join(args)} failed in {root}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    found = re.search(r"ran (\d+) of (\d+) models, reused \d+\s*$", done.stdout, re.M)
    confirmed = re.search(r"^(\d+) product\(s\) rebuilt with unchanged rows", done.stdout, re.M)
    LAST_BUILD["confirmed"] = int(confirmed.group(1)) if confirmed else 0
    LAST_BUILD["pipelined"] = len(re.findall(r"\(stage 1 of 2: its data products\): started", done.stdout))
    return took, int(found.group(1)) if found else -1, int(found.group(2)) if found else -1


def _new_landing_row(path: Path, key: str, loaded_at: str) -> None:
    """Append one row to a landing Parquet file: the last row again, with the next key and loaded now."""
    import duckdb

    scratch = path.with_name(path.name + ".new")
    src, dst = str(path).replace("'", "''"), str(scratch).replace("'", "''")
    con = duckdb.connect()
    try:
        con.execute(
            f"copy (select * from read_parquet('{src}') union all "
            f"(select * replace ({key} + 1 as {key}, now()::timestamp as {loaded_at}) from read_parquet('{src}') "
            f"order by {key} desc limit 1)) to '{dst}' (format parquet)"
        )
    finally:
        con.close()
    os.replace(scratch, path)


def readers_rebuilt(root: Path, changed: str, since: float) -> tuple[int, int]:
    """The domains other than ``changed`` whose dbt ran a model since ``since`` (their run_results.json was
    written by this build), and how many models they ran."""
    domains = models = 0
    for results in sorted((root / "projects").glob("*/target/run_results.json")):
        domain = results.parent.parent.name
        if domain == changed or results.stat().st_mtime < since:
            continue
        ran = [r for r in json.loads(results.read_text()).get("results", [])
               if str(r.get("unique_id", "")).startswith("model.") and r.get("status") == "success"]  # fmt: skip
        domains, models = domains + bool(ran), models + len(ran)
    return domains, models


def bench_state(work: Path, runs: int, meshes: list[tuple[str, Path, str, str, str]]) -> dict[str, Any]:
    """State-aware `mesh build` vs `mesh build --no-state` on built meshes: nothing changed, one model changed
    in the most upstream domain, new rows in one source. ``meshes``: (label, root, model file relative to
    the root, landing Parquet file, its key column and loaded-at column joined by ':')."""
    rows = []
    for label, root, model_file, landing, columns in meshes:
        key, loaded_at = columns.split(":")
        full, idle, model, fresh = [], [], [], []
        share_model = share_rows = (0, 0)
        readers = (0, 0)
        confirmed = pipelined = 0
        _build_counts(root)  # the state a state-aware build compares with
        for i in range(runs):
            full.append(_build_counts(root, "--no-state")[0])
            idle.append(_build_counts(root)[0])
            with open(root / model_file, "a") as sql:
                sql.write(f"\n-- benchmark change {time.time_ns()} {i}\n")
            since = time.time()
            took, ran, total = _build_counts(root)
            model.append(took)
            share_model = (ran, total)
            readers = readers_rebuilt(root, Path(model_file).parts[1], since)  # its rows did not change
            confirmed = LAST_BUILD["confirmed"]
            _new_landing_row(root / landing, key, loaded_at)
            took, ran, total = _build_counts(root)
            fresh.append(took)
            share_rows = (ran, total)
            pipelined = LAST_BUILD["pipelined"]
        f = median(full)
        rows.append(
            {
                "mesh": label,
                "full_s": f,
                "idle_s": median(idle),
                "model_change_s": median(model),
                "new_rows_s": median(fresh),
                "idle_ratio": round(median(idle) / f, 3),
                "model_change_ratio": round(median(model) / f, 3),
                "model_change_share": round(share_model[0] / share_model[1], 3) if share_model[1] > 0 else None,
                "model_change_ran": f"{share_model[0]} of {share_model[1]}",
                "model_change_readers_rebuilt": {"domains": readers[0], "models": readers[1]},
                "model_change_products_confirmed": confirmed,
                "new_rows_domains_pipelined": pipelined,
                "new_rows_ratio": round(median(fresh) / f, 3),
                "new_rows_share": round(share_rows[0] / share_rows[1], 3) if share_rows[1] > 0 else None,
                "new_rows_ran": f"{share_rows[0]} of {share_rows[1]}",
                "samples": {"full": full, "idle": idle, "model_change": model, "new_rows": fresh},
            }
        )
        print(f"  state {label}: {rows[-1]}", flush=True)
    return {"rows": rows}


def state_meshes(work: Path, tiny: bool, size: str | None, orders: int | None) -> list[tuple[str, Path, str, str, str]]:
    """The meshes of section 'state': a generated one and the demo (the smoke run: the scale section's, once)."""
    domains, models = (int(p) for p in (size or ("2x4" if tiny else "20x100")).split("x"))
    generated = work / f"scale-{domains}x{models}"
    if not generated.is_dir():
        seconds(mesh("generate-mesh", str(generated), "--domains", str(domains), "--models", str(models),
                     "--refs", str(domains * 2), "--rows", "1000"), REPO)  # fmt: skip
    first = domain_order(generated)[0]
    found = [
        (
            f"generated {domains}x{models}",
            generated,
            next(str(p.relative_to(generated)) for p in sorted((generated / "projects" / first).rglob("stg_*.sql"))),
            f"projects/{first}/landing/events.parquet",
            "id:ts",
        )
    ]
    if tiny:
        return found
    demo = copy_demo(work / "state-demo")
    count = orders or 1_000_000
    seconds(mesh("demo-data", "--orders", str(count)), demo)
    found.append((f"demo mesh, {count:,} orders", demo, "projects/customers/models/staging/stg_customers.sql",
                  "projects/sales/landing/orders.parquet", "order_id:_loaded_at"))  # fmt: skip
    return found


def bench_observe(
    work: Path, size: tuple[int, int], runs: int, days: int, reuse: tuple[Path, float] | None = None
) -> dict[str, Any]:
    """`mesh health` on a generated mesh, built once, with ``days`` of history (4 builds a day).

    ``reuse`` (the smoke run): the 'scale' section's mesh of the same size, built already, and its build time."""
    domains, models = size
    if reuse:
        root, build = reuse[0], {"seconds": reuse[1]}
    else:
        root = work / f"observe-{domains}x{models}"
        seconds(mesh("generate-mesh", str(root), "--domains", str(domains), "--models", str(models),
                     "--refs", str(domains * 2), "--rows", "1000"), REPO)  # fmt: skip
        build = measure(mesh("build", "--no-state"), root)
    rows = seed_history(root / "health" / "history.duckdb", days, 4)
    healths = [measure(mesh("health"), root, check=False) for _ in range(runs)]
    report = json.loads((root / "health" / "report.json").read_text())
    docs = [measure(mesh("docs"), root) for _ in range(runs)]
    site = root / "site"
    files = [p for p in site.rglob("*") if p.is_file()]
    pages = [p for p in files if p.suffix == ".html"]
    searches = [p.stat().st_size for p in (site / "search").iterdir()]
    result = {
        "domains": domains,
        "models": domains * models,
        "products": len(report["products"]),
        "history_days": days,
        "history_rows": rows,
        "build_s": round(build["seconds"], 2),
        "health_s": round(median([h["seconds"] for h in healths]), 2),
        "health_peak_mb": round(max(h["peak_mb"] for h in healths)),
        "report_in_process_s": report["seconds"],
        "report_html_kb": round((root / "health" / "report.html").stat().st_size / 1024),
        "report_json_kb": round((root / "health" / "report.json").stat().st_size / 1024),
        "history_mb": round((root / "health" / "history.duckdb").stat().st_size / 2**20, 1),
        "docs_s": round(median([d["seconds"] for d in docs]), 2),
        "docs_peak_mb": round(max(d["peak_mb"] for d in docs)),
        "docs_pages": len(pages),
        "docs_total_mb": round(sum(p.stat().st_size for p in files) / 2**20, 2),
        "docs_largest_page_kb": round(max(p.stat().st_size for p in pages) / 1024),
        "docs_median_page_kb": round(median([p.stat().st_size for p in pages]) / 1024),
        "docs_home_kb": round((site / "index.html").stat().st_size / 1024),
        "docs_search_kb_per_domain": round(median(searches) / 1024),
    }
    shutil.rmtree(root, ignore_errors=True)
    return result


def growth(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Log-log slope of time against total models (1.0 = linear), per command."""
    out = {}
    for key in ("stitch_s", "build_s", "check_s"):
        points = [(math.log(r["models"]), math.log(r[key])) for r in rows if r[key] > 0]
        if len(points) < 2:
            continue
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        var = sum((x - mean_x) ** 2 for x, _ in points)
        if var:
            out[key] = round(sum((x - mean_x) * (y - mean_y) for x, y in points) / var, 2)
    return out


# ---------------------------------------------------------------- report


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("dbt-core", "dbt-duckdb", "duckdb"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def machine() -> str:
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()} {model}, {os.cpu_count()} cores, {memory:.0f} GiB"


def _engine_lines(s: dict[str, Any]) -> list[str]:
    """The engines' tables: DuckDB against the local Spark session, and the Spark cluster section."""
    lines: list[str] = []
    if "engines" in s:
        e = s["engines"]
        lines += [
            "",
            "| engine, demo mesh (4 domains, clean copy each) | `mesh build` s |",
            "| --- | --- |",
            f"| DuckDB (default) | {e['duckdb_build_s']} |",
            f"| Spark, local session (`--target spark`) | {e['spark_build_s']} ({e['ratio']} × DuckDB) |",
        ]
    if "cluster" in s:
        c = s["cluster"]
        lines += [
            "",
            f"| Spark cluster on loopback, demo at {c['orders']:,} orders | `mesh build --no-state` s | × DuckDB |",
            "| --- | --- | --- |",
            f"| DuckDB | {c['duckdb_build_s']} | 1 |",
        ] + [
            f"| {label} | {c[key + '_build_s']} | {c['ratios_to_duckdb'][key]} |"
            for key, label in (("spark_local", "Spark, local session"), ("spark_thrift", "Spark cluster, Thrift"),
                               ("spark_connect", "Spark cluster, Connect"))
        ] + [
            "",
            f"Cluster start-up (master, two workers, Thrift and Connect servers): {c['cluster_start_s']} s. "
            f"Publishing sales through the engine: {c['publish_through_engine_s']} s against a bare "
            f"`insert overwrite directory` of the same product: {c['bare_insert_directory_s']} s "
            f"({c['publish_ratio']} ×).",
        ]  # fmt: skip
    return lines


def goal_lines(s: dict[str, Any]) -> list[str]:
    """The performance goals (issue 33), each with its figure from this run and whether it is met."""
    rows: list[tuple[str, Any, str, bool | None]] = []

    def add(label: str, value: Any, goal: str, met: bool | None) -> None:
        rows.append((label, value, goal, met))

    if "naive" in s:
        add("full `mesh build` ÷ naive loop, demo", s["naive"]["ratio"], "≤ 0.5", s["naive"]["ratio"] <= 0.5)
    generated = [r for r in s.get("state", {}).get("rows", []) if r["mesh"].startswith("generated")]
    for r in generated:
        size = r["mesh"].removeprefix("generated ").replace("x", " × ")
        add(f"one upstream model changed ÷ full, {size} ({r['model_change_ran']} models ran)",
            r["model_change_ratio"], "≤ 0.30", r["model_change_ratio"] <= 0.30)  # fmt: skip
        add(f"new rows in one source ÷ full, {size} ({r['new_rows_ran']} models ran)", r["new_rows_ratio"],
            "≤ 0.30", r["new_rows_ratio"] <= 0.30)  # fmt: skip
        rebuilt = r.get("model_change_readers_rebuilt")
        if rebuilt is not None:
            shown = f"{rebuilt['domains']} domains ({rebuilt['models']} models)"
            add("a rebuilt product with unchanged rows: readers rebuilt", shown, "none", rebuilt["domains"] == 0)
    if "big" in s:
        b = s["big"]
        size = f"{b['domains']} × {b['models_per_domain']}"
        for label, key, limit in (("`mesh check --no-sqlfluff`", "check_no_sqlfluff_s", 5),
                                  ("`mesh check` (first run: every file linted)", "check_first_s", 20),
                                  ("`mesh health`", "health_s", 5),
                                  ("`mesh stitch -j 2` (cold)", "stitch_s", 60)):  # fmt: skip
            if b.get(key) is not None:
                add(f"{size}: {label}", f"{b[key]} s", f"< {limit} s", b[key] < limit)
    if "large" in s:
        la = s["large"]
        add(f"{la['orders']:,} orders, `mesh build --no-publish` ÷ models-only floor", la["ratio"], "≤ 1.5",
            la["ratio"] <= 1.5)  # fmt: skip
    if not rows:
        return []
    lines = ["", "| performance goal | this run | goal | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {label} | {value} | {goal} | {'yes' if met else 'no'} |" for label, value, goal, met in rows]
    return lines + [""]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Machine: {report['machine']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + f". Runs per figure: {report['runs']} (medians). Command: `{report['command']}`.",
        *goal_lines(report["sections"]),
        "",
        "| comparison | mesh | other | ratio (goal) |",
        "| --- | --- | --- | --- |",
    ]
    s = report["sections"]
    for row in s.get("state", {}).get("rows", []):
        lines.append(
            f"| g. state-aware `mesh build`, {row['mesh']}: nothing changed vs `--no-state` | {row['idle_s']} s "
            f"| {row['full_s']} s | {row['idle_ratio']} (≤ 0.05) |"
        )
        lines.append(
            f"| g. one model changed in the most upstream domain ({row['model_change_ran']} models ran) "
            "vs `--no-state` "
            f"| {row['model_change_s']} s | {row['full_s']} s | {row['model_change_ratio']} "
            f"(≈ {row['model_change_share']}, the share of models downstream) |"
        )
        lines.append(
            f"| g. new rows in one source ({row['new_rows_ran']} models ran) vs `--no-state` | {row['new_rows_s']} s "
            f"| {row['full_s']} s | {row['new_rows_ratio']} (share {row['new_rows_share']}) |"
        )
    if "naive" in s:
        n = s["naive"]
        lines.append(
            f"| a. `mesh build` vs naive loop, demo mesh | {n['mesh_build_s']} s | {n['naive_loop_s']} s "
            f"| {n['ratio']} (≤ 0.5) |"
        )
    if "loom" in s:
        lo = s["loom"]
        if "skipped" in lo:
            lines.append(f"| b. `mesh build` vs dbt-loom loop | – | – | skipped: {lo['skipped']} |")
        else:
            lines.append(
                f"| b. `mesh build` vs dbt-loom {lo['dbt_loom_version']} loop (unit tests excluded for dbt-loom) "
                f"| {lo['mesh_build_s']} s | {lo['loom_loop_s']} s | {lo['ratio']} |"
            )
    if "large" in s:
        la = s["large"]
        lines.append(
            f"| c. `mesh build --no-publish`, {la['orders']:,} orders, vs compiled SQL of every model in one "
            f"DuckDB connection | {la['mesh_build_no_publish_s']} s | {la['floor_s']} s | {la['ratio']} (≤ 1.5) |"
        )
        lines.append(
            f"| c. the same `mesh build --no-publish` vs the floor running the data tests' compiled SQL too "
            f"| {la['mesh_build_no_publish_s']} s | {la['floor_with_tests_s']} s | {la['ratio_vs_floor_with_tests']} |"
        )
        lines.append(
            f"| c'. `mesh build` (publishing every product) vs the models-only floor "
            f"| {la['mesh_build_s']} s | {la['floor_s']} s | {la['ratio_with_publish']} |"
        )
        p = la["publish"]
        lines.append(
            f"| publish: `mesh publish sales` ({p['rows']:,} rows) vs bare DuckDB `COPY ... TO parquet` "
            f"| {p['mesh_publish_s']} s ({p['mesh_rows_per_s']:,} rows/s) | {p['bare_copy_s']} s "
            f"({p['copy_rows_per_s']:,} rows/s) | {p['ratio']} |"
        )
    if "postgres" in s:
        pg = s["postgres"]
        if "skipped" in pg:
            lines.append(f"| h. PostgreSQL | – | – | skipped: {pg['skipped']} |")
        else:
            lines.append(
                f"| h. `mesh build --target postgres` vs naive loop on the same server, {pg['orders']:,} orders "
                f"| {pg['mesh_build_s']} s | {pg['naive_loop_s']} s | {pg['ratio']} |"
            )
            lines.append(
                f"| h. `mesh publish` of every domain on PostgreSQL ({pg['published_rows']:,} rows: release tables, "
                f"pointer views, grants) vs bare `CREATE TABLE AS` | {pg['publish_s']} s | {pg['bare_ctas_s']} s "
                f"| {pg['publish_ratio']} |"
            )
    if "objectstore" in s:
        o = s["objectstore"]
        if "skipped" in o:
            lines.append(f"| i. object store | – | – | skipped: {o['skipped']} |")
        else:
            lines.append(
                f"| i. `mesh publish` of every domain into the object store, {o['orders']:,} orders "
                f"({o['published_bytes']:,} bytes; into a folder: {o['publish_to_folder_s']} s) vs bare boto3 upload "
                f"| {o['publish_s']} s | {o['bare_upload_s']} s | {o['publish_ratio']} |"
            )
            lines.append(
                f"| i. first consume: `mesh stitch` with an empty cache ({o['fetched_files']} files fetched and "
                f"verified) minus the same stitch warm ({o['warm_stitch_s']} s) vs bare boto3 download "
                f"| {round(o['first_consume_s'] - o['warm_stitch_s'], 2)} s | {o['bare_download_s']} s "
                f"| {o['consume_ratio']} |"
            )
    if "scale" in s:
        lines += [
            "",
            "| domains × models | total models | `mesh stitch` s (peak MB) | `mesh build` s (peak MB) "
            "| ms per model | `mesh check --no-sqlfluff` s (peak MB) | `mesh sync`, nothing changed, s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in s["scale"]["rows"]:
            lines.append(
                f"| {r['domains']} × {r['models_per_domain']} | {r['models']} "
                f"| {r['stitch_s']} ({r['stitch_peak_mb']}) "
                f"| {r['build_s']} ({r['build_peak_mb']}) | {r['build_ms_per_model']} "
                f"| {r['check_s']} ({r['check_peak_mb']}) | {r['sync_idle_s']} |"
            )
        g = s["scale"]["growth"]
        if g:
            lines += ["", "Growth (log-log slope of time against total models; 1.0 is linear): "
                      + ", ".join(f"{k.removesuffix('_s')} {v}" for k, v in g.items()) + "."]  # fmt: skip
    lines += _engine_lines(s)
    if "observe" in s:
        o = s["observe"]
        lines += [
            "",
            "| observability, generated mesh | products | history | `mesh health` s (peak MB) "
            "| of which in-process | report.html | report.json | history.duckdb |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {o['domains']} domains, {o['models']:,} models | {o['products']} | {o['history_days']} days, "
            f"{o['history_rows']['collections']} collections, {o['history_rows']['node_results']:,} results "
            f"| {o['health_s']} ({o['health_peak_mb']}) | {o['report_in_process_s']} s | {o['report_html_kb']} KB "
            f"| {o['report_json_kb']} KB | {o['history_mb']} MB |",
            "",
            "| documentation site, same mesh | `mesh docs` s (peak MB) | pages | total | home page | median page "
            "| largest page | search index per domain |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {o['domains']} domains, {o['models']:,} models | {o['docs_s']} ({o['docs_peak_mb']}) "
            f"| {o['docs_pages']} | {o['docs_total_mb']} MB | {o['docs_home_kb']} KB | {o['docs_median_page_kb']} KB "
            f"| {o['docs_largest_page_kb']} KB | {o['docs_search_kb_per_domain']} KB |",
        ]
    lines += _big_lines(s)
    return "\n".join(lines) + "\n"


def _big_lines(s: dict[str, Any]) -> list[str]:
    """The mesh-wide commands on many small domains (section 'big')."""
    lines: list[str] = []
    if "big" in s:
        b = s["big"]
        lines += [
            "",
            f"| mesh-wide command, {b['domains']} domains × {b['models_per_domain']} models | seconds | CPU seconds "
            "| peak MB |",
            "| --- | --- | --- | --- |",
        ]
        for label, key in (("`mesh stitch -j 2`, cold", "stitch"), ("`mesh check --no-sqlfluff`", "check_no_sqlfluff"),
                           ("`mesh check`, first run", "check_first"), ("`mesh check`, nothing changed", "check"),
                           ("`mesh health`", "health"), ("`mesh docs`", "docs"), ("`mesh doctor`", "doctor"),
                           ("`mesh ls`", "ls"), ("`mesh status`", "status")):  # fmt: skip
            if b.get(f"{key}_s") is not None:
                lines.append(f"| {label} | {b[f'{key}_s']} | {b.get(f'{key}_cpu_s', '–')} "
                             f"| {b.get(f'{key}_peak_mb', '–')} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="every section at a tiny size, one run")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help="comma-separated sections; 'goals' = " + ",".join(GOALS) + " (every performance goal, one run)",
    )
    parser.add_argument("--state-orders", type=int, default=None, help="demo orders for 'state' (default 1,000,000)")
    parser.add_argument("--pg-orders", type=int, default=None, help="demo orders for 'postgres' (default 1,000,000)")
    parser.add_argument("--s3-orders", type=int, default=None, help="demo orders for 'objectstore' (default 10M)")
    parser.add_argument("--cluster-orders", type=int, default=None, help="demo orders for 'cluster' (default 1M)")
    parser.add_argument("--state-size", default=None, help="generated mesh for 'state' (default 20x100)")
    parser.add_argument("--observe-size", default=None, help="mesh for 'observe' (default 20x500)")
    parser.add_argument("--big-size", default=None, help="mesh for 'big' (default 200x5)")
    parser.add_argument("--history-days", type=int, default=30, help="days of history for 'observe'")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 5, tiny 1)")
    parser.add_argument("--orders", type=int, default=None, help="orders for 'large' (default 10,000,000)")
    parser.add_argument("--sizes", default=None, help="scale sizes, e.g. 5x100,10x100 (default: the full curve)")
    parser.add_argument("--scale-runs", type=int, default=1, help="runs per size in 'scale' (default 1: it is long)")
    parser.add_argument("--no-install-loom", action="store_true", help="skip dbt-loom unless already installed")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    runs = args.runs or (1 if args.tiny else 5)
    orders = args.orders or (2000 if args.tiny else 10_000_000)
    default_sizes = "2x4" if args.tiny else "5x100,10x100,20x100,50x100,5x500,10x500,20x500,50x500"
    sizes = [tuple(int(p) for p in size.split("x")) for size in (args.sizes or default_sizes).split(",")]
    only = {s.strip() for s in args.only.split(",")}
    if "goals" in only:
        only = (only - {"goals"}) | set(GOALS)
    report: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(),
        "runs": runs,
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        work = Path(tmp)
        for name in SECTIONS:
            if name not in only:
                continue
            print(f"benchmark: {name} ...", flush=True)
            start = time.perf_counter()
            if name == "naive":
                result = bench_naive(work, runs, 500, warm_up=not args.tiny)
            elif name == "loom":
                result = bench_loom(work, runs, 500, install=not args.no_install_loom)
            elif name == "large":
                # the smoke run (--tiny) reuses the naive section's demo mesh, built with the same data
                built = work / "naive" if args.tiny and (work / "naive" / "exchange").is_dir() else None
                naive_s = report["sections"].get("naive", {}).get("mesh_build_s", 0)
                result = bench_large(work, runs, 500 if built else orders, reuse=built, built_s=naive_s)
            elif name == "engines":
                result = bench_engines(work, runs)
            elif name == "postgres":
                result = bench_postgres(work, runs, args.pg_orders or (2000 if args.tiny else 1_000_000))
            elif name == "cluster":
                result = bench_cluster(work, runs, args.cluster_orders or (2000 if args.tiny else 1_000_000))
            elif name == "objectstore":
                result = bench_objectstore(work, runs, args.s3_orders or (2000 if args.tiny else 10_000_000))
            elif name == "big":
                big = tuple(int(p) for p in (args.big_size or ("2x4" if args.tiny else "200x5")).split("x"))
                scaled = work / f"scale-{big[0]}x{big[1]}"
                reuse_big = scaled if args.tiny and (scaled / "exchange").is_dir() else None
                result = bench_big(work, big, runs, reuse_big)  # type: ignore[arg-type]
            elif name == "state":
                result = bench_state(work, runs, state_meshes(work, args.tiny, args.state_size, args.state_orders))
            elif name == "observe":
                observe = args.observe_size or ("2x4" if args.tiny else "20x500")
                size = tuple(int(p) for p in observe.split("x"))
                scaled = work / f"scale-{size[0]}x{size[1]}"
                rows = report["sections"].get("scale", {}).get("rows", [])
                built_s = next((r["build_s"] for r in rows if (r["domains"], r["models_per_domain"]) == size), 0)
                reuse = (scaled, built_s) if args.tiny and scaled.is_dir() else None
                result = bench_observe(work, size, runs, 2 if args.tiny else args.history_days, reuse)  # type: ignore[arg-type]
            else:

                def partial(result: dict[str, Any]) -> None:
                    report["sections"]["scale"] = result
                    write(report, args.out)

                keep = tuple(int(p) for p in (args.observe_size or "2x4").split("x")) if args.tiny else None
                result = bench_scale(work, sizes, args.scale_runs, partial, keep)  # type: ignore[arg-type]
            report["sections"][name] = result
            write(report, args.out)
            print(f"benchmark: {name} done in {time.perf_counter() - start:.0f}s", flush=True)
    print(write(report, args.out))


def write(report: dict[str, Any], out: Path) -> str:
    """Write the report so far (a long run keeps what it measured if it is stopped)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / "benchmark.md").write_text(table)
    return table


if __name__ == "__main__":
    main()
