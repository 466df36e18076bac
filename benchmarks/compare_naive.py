"""Benchmark: `mesh build` on the demo mesh beside the naive loop, measured in the same run.

The naive loop is what a team scripts by hand: for each domain in dependency order,
`cd projects/<domain> && dbt build` (after one `mesh stitch`, without which cross-project refs
cannot resolve at all). Both run on the same fresh copy of the demo mesh, alternating, and the
medians are reported.

    .venv/bin/python benchmarks/compare_naive.py --runs 5 [--orders 500] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
IGNORED = shutil.ignore_patterns("target", "dbt_packages", "logs", "*.duckdb", "*.wal", "landing", ".user.yml")


def env() -> dict[str, str]:
    return {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}


def run(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def copy_demo(dest: Path) -> Path:
    shutil.copy(REPO / "mesh.yml", dest / "mesh.yml")
    shutil.copytree(REPO / "projects", dest / "projects", ignore=IGNORED)
    shutil.copytree(REPO / "macros", dest / "macros", ignore=IGNORED)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        root = copy_demo(Path(tmp))
        mesh = [str(BIN / "mesh")]
        run([*mesh, "demo-data", "--orders", str(args.orders)], root)
        order = subprocess.run([*mesh, "ls"], cwd=root, env=env(), capture_output=True, text=True, check=True)
        domains = [line.split()[0] for line in order.stdout.splitlines()[1:]]
        run([*mesh, "stitch"], root)
        naive_cmd = [str(BIN / "dbt"), "build"]
        # warm-up: first builds create the databases and partial-parse files
        run([*mesh, "build"], root)
        naive, meshed = [], []
        for _ in range(args.runs):
            naive.append(sum(run(naive_cmd, root / "projects" / d) for d in domains))
            meshed.append(run([*mesh, "build"], root))

    naive_median, mesh_median = statistics.median(naive), statistics.median(meshed)
    result = {
        "benchmark": "mesh build vs naive loop (demo mesh)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "orders": args.orders,
        "runs": args.runs,
        "domains": domains,
        "naive_loop_seconds": naive,
        "mesh_build_seconds": meshed,
        "naive_loop_median": round(naive_median, 2),
        "mesh_build_median": round(mesh_median, 2),
        "ratio": round(mesh_median / naive_median, 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare_naive.json").write_text(json.dumps(result, indent=2) + "\n")
    table = (
        "| what | median wall time (s) |\n| --- | --- |\n"
        f"| naive loop: `cd projects/X && dbt build` per domain, in order | {naive_median:.2f} |\n"
        f"| `mesh build` | {mesh_median:.2f} |\n"
        f"| ratio mesh / naive | {mesh_median / naive_median:.2f} |\n"
    )
    (args.out / "compare_naive.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
