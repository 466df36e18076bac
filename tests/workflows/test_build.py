"""`mesh build` over several domains: order, failure isolation, selection, summary."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Built, run_mesh


def test_summary_lists_every_domain(plain_mesh_built: Built):
    out = plain_mesh_built.result.stdout
    assert "mesh build: 5 of 5 domains succeeded" in out
    lines = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.split() and line.split()[0] in {"shop", "reporting", "audit", "billing", "hr"} and "success" in line
    }
    assert lines["shop"][1:5] == ["success", "4", "0", "4/0/0"]  # 4 models (two versions), none reused, 4 tests
    assert lines["reporting"][1:6] == ["success", "2", "0", "1/0/0", "2"]  # 2 models, 1 unit test, 2 upstream views
    assert "ran 9 of 9 models, reused 0" in out  # the first build: every model


def test_upstream_is_built_before_its_consumers(plain_mesh_built: Built):
    out = plain_mesh_built.result.stdout
    assert out.index("shop: ok") < out.index("reporting: started")
    assert out.index("shop: ok") < out.index("audit: started")


def test_failed_upstream_skips_downstream_while_independent_domain_builds(plain_mesh: Path):
    (plain_mesh / "shop" / "models" / "orders_v2.sql").write_text("select * from a_table_that_does_not_exist")
    # a third level: what reads a skipped domain is skipped too, never built on a stale release
    chain = plain_mesh / "chain"
    (chain / "models").mkdir(parents=True)
    (chain / "dbt_project.yml").write_text("name: chain\nprofile: chain\nversion: '1.0'\nconfig-version: 2\n")
    (chain / "profiles.yml").write_text(
        "chain:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: chain.duckdb}\n"
    )
    (chain / "dependencies.yml").write_text("projects:\n  - name: reporting\n")
    (chain / "models/one.sql").write_text("select 1 as one\n")
    result = run_mesh("build", cwd=plain_mesh)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "shop: FAILED" in out
    assert "a_table_that_does_not_exist" in out
    for consumer in ("reporting", "audit", "billing"):
        assert f"{consumer}: skipped (upstream shop did not succeed)" in out
        assert not (plain_mesh / consumer / "target").exists()  # nothing of theirs ran
    assert "chain: skipped (upstream reporting did not succeed)" in out
    assert not (chain / "target").exists()
    assert "hr: ok" in out
    assert "mesh build: 1 of 6 domains succeeded" in out


def test_selection_with_downstream(plain_mesh_copy: Path):
    result = run_mesh("build", "reporting+", "hr", cwd=plain_mesh_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mesh build: 2 of 2 domains succeeded" in result.stdout
    assert "shop: started" not in result.stdout


def test_selection_of_unknown_domain_is_a_usage_error(plain_mesh: Path):
    result = run_mesh("build", "reportin", cwd=plain_mesh)
    assert result.returncode == 2
    assert "error: unknown domain 'reportin' in selection 'reportin'. Did you mean 'reporting'?" in result.stderr


def test_consumer_alone_needs_its_upstream_built(plain_mesh: Path):
    result = run_mesh("build", "reporting", cwd=plain_mesh)
    assert result.returncode == 3
    assert result.stderr.startswith("error: shop/target/manifest.json: manifest not found.")
    assert "mesh build shop" in result.stderr
    assert not (plain_mesh / "reporting" / "target").exists()


def test_stitch_makes_every_domain_ready(plain_mesh: Path):
    result = run_mesh("stitch", cwd=plain_mesh)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reporting: stitched (shop)" in result.stdout
    assert (plain_mesh / "reporting" / "dbt_packages" / "shop" / "models" / "_public_models.yml").is_file()
    assert not (plain_mesh / "shop" / "shop.duckdb").exists()  # stitching parses; it builds nothing


def test_restitching_an_unchanged_upstream_rewrites_nothing(plain_mesh_copy: Path):
    stub = plain_mesh_copy / "reporting" / "dbt_packages" / "shop" / "models" / "_public_models.yml"
    assert run_mesh("stitch", "reporting", cwd=plain_mesh_copy).returncode == 0  # paths moved with the copy
    before = stub.stat().st_mtime_ns
    result = run_mesh("stitch", "reporting", cwd=plain_mesh_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stub.stat().st_mtime_ns == before


def test_removed_upstream_loses_its_stub(plain_mesh_copy: Path):
    (plain_mesh_copy / "reporting" / "dependencies.yml").write_text("projects: []\n")
    for model in ("order_summary.sql", "legacy_orders.sql", "schema.yml"):
        (plain_mesh_copy / "reporting" / "models" / model).unlink()
    (plain_mesh_copy / "reporting" / "models" / "x.sql").write_text("select 1 as x")
    result = run_mesh("stitch", "reporting", cwd=plain_mesh_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (plain_mesh_copy / "reporting" / "dbt_packages" / "shop").exists()
