"""`mesh health` says what its numbers say: a corrupt artifact is a failing domain (and fails the command), the
summary counts domains as well as products, and health.path is a folder of its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import Built, copy_fixture, run_mesh, written_files

pytestmark = pytest.mark.slow


def test_a_corrupt_artifact_is_a_failing_domain_and_fails_the_command(health_mesh: Built, tmp_path: Path) -> None:
    root = shutil.copytree(health_mesh.root, tmp_path / "mesh")
    (root / "finance/target/run_results.json").write_text('{"results": [')  # finance held the failing product
    result = run_mesh("health", "--format", "json", "--fail-on", "failing", cwd=root)
    report = json.loads(result.stdout)
    domains = {d["domain"]: d for d in report["domains"]}
    finance = domains["finance"]
    assert finance["status"] == "failing" and finance["reason"].startswith("finance/target/run_results.json:1:")
    assert "run results is corrupt" in finance["reason"]
    assert [p["kind"] for p in finance["problems"]] == ["corrupt_artifact"]
    assert all(p["status"] != "failing" for p in report["products"]), report["products"]  # only the domain fails
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    assert report["status"] == "failing" and report["domains_by_status"]["failing"] == 1

    text = run_mesh("health", "--fail-on", "never", cwd=root).stdout
    counts = report["products_by_status"]
    first = (
        f"mesh health: health_demo is failing — {len(report['products'])} products: {counts['healthy']} healthy, "
        f"{counts['warning']} warning, {counts['stale']} stale, 0 failing; 4 domains: "
    )
    assert text.startswith(first) and text.splitlines()[0].endswith(", 1 failing"), text
    assert "  [failing] finance: finance/target/run_results.json:1:" in text


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("finance", "health.path 'finance' overlaps domain 'finance' (finance)"),
        ("finance/health", "health.path 'finance/health' overlaps domain 'finance' (finance)"),
        ("exchange", "health.path 'exchange' overlaps the exchange (exchange)"),
        ("site/health", "health.path 'site/health' overlaps the docs site (`mesh docs` replaces it whole) (site)"),
        (".", "health.path '.' is the mesh root or holds it"),
        ("..", "health.path '..' is the mesh root or holds it"),
    ],
    ids=["a-domain", "inside-a-domain", "the-exchange", "inside-the-site", "the-root", "around-the-root"],
)
def test_health_path_is_a_folder_of_its_own(tmp_path: Path, path: str, message: str) -> None:
    root = copy_fixture("health_mesh", tmp_path)
    config = root / "mesh.yml"
    config.write_text(config.read_text().replace("health:\n", f"health:\n  path: {path}\n"))
    before = written_files(tmp_path)
    line = config.read_text().splitlines().index(f"  path: {path}") + 1
    for command in (("health",), ("build", "orders")):
        result = run_mesh(*command, cwd=root)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr == (
            f"error: mesh.yml:{line}: {message}; the health history and reports need a folder of their own "
            "(the default is 'health').\n"
        )
    assert written_files(tmp_path) == before
