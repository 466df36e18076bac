"""The synthetic mesh generator and the benchmark command, at a tiny size (they must keep running)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, mesh_env, run_mesh


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".sql", ".yml")
    }


def test_generator_is_deterministic_and_acyclic(tmp_path: Path):
    args = ("--domains", "6", "--models", "60", "--refs", "9", "--rows", "10", "--seed", "3")
    assert run_mesh("generate-mesh", str(tmp_path / "a"), *args, cwd=tmp_path).returncode == 0
    assert run_mesh("generate-mesh", str(tmp_path / "b"), *args, cwd=tmp_path).returncode == 0
    assert files(tmp_path / "a") == files(tmp_path / "b")
    listing = run_mesh("ls", cwd=tmp_path / "a")
    assert listing.returncode == 0, listing.stderr  # loads: no cycle, every upstream known
    models = list((tmp_path / "a" / "projects").glob("*/models/*.sql"))
    assert len(models) == 6 * 60
    cross = [m for m in models if "ref('domain_" in m.read_text()]
    assert len(cross) == 9


def test_generator_refuses_a_non_empty_folder(tmp_path: Path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    result = run_mesh("generate-mesh", str(tmp_path / "x"), cwd=tmp_path)
    assert result.returncode == 2
    assert "folder is not empty" in result.stderr
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_benchmark_runs_at_tiny_size(tmp_path: Path):
    # the generated mesh at scale and the observation commands; 'naive' (the demo's `mesh build` against a loop of
    # fresh `dbt build` processes: 40 s of CPU at this size, `time benchmarks/run.py --tiny --only naive`) and
    # 'large' (the demo at 10M orders against its floor) are left to `benchmarks/run.py --tiny`
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--tiny",
            "--no-install-loom",
            "--only",
            "scale,observe",
            "--out",
            str(tmp_path),
        ],  # fmt: skip
        env=mesh_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    sections = report["sections"]
    assert [(r["domains"], r["models_per_domain"]) for r in sections["scale"]["rows"]] == [(2, 4)]
    observe = sections["observe"]
    assert observe["health_s"] > 0 and observe["docs_pages"] == observe["products"] + observe["domains"] + 1
    assert observe["history_rows"]["collections"] == 9  # 2 days x 4 a day, plus the build itself
    assert "\n| 2 × 4 | 8 | " in (tmp_path / "benchmark.md").read_text()
