"""Adopting a mesh written by someone else: doctor, init, profiles found like dbt, stale artifacts, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.foreign.corpus import CORPUS, MESHES, BuiltForeign, run_foreign
from tests.helpers import FIXTURES, copy_tree, mesh_env, run_command, written_files


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_command(["mesh", *args], root, {**mesh_env(), **(env or {})})


def test_profiles_are_found_where_dbt_finds_them(tmp_path: Path) -> None:
    """--profiles-dir, DBT_PROFILES_DIR and ~/.dbt, one profile name shared by every project, env_var() targets."""
    root = copy_tree(CORPUS / "jaffle_cloud", tmp_path / "mesh")
    expected = (
        "profile duckdb, target dev (duckdb); storage jaffle-shop-mesh-platform/jaffle_shop.duckdb, schema DAVIDE"
    )
    flag = run(root, "--profiles-dir", "profiles", "doctor")
    assert flag.returncode == 0, flag.stdout + flag.stderr
    assert expected in flag.stdout
    home = tmp_path / "home"
    shutil.copytree(root / "profiles", home / ".dbt")
    in_home = run(root, "doctor", env={"HOME": str(home)})
    assert in_home.returncode == 0 and expected in in_home.stdout, in_home.stdout
    # DBT_PROFILES_DIR, and a target chosen by env_var('DBT_TARGET', 'dev'): another file and schema
    prod = run(root, "doctor", env={"DBT_PROFILES_DIR": str(root / "profiles"), "DBT_TARGET": "prod"})
    assert prod.returncode == 0, prod.stdout
    assert "target prod (duckdb); storage jaffle-shop-mesh-platform/jaffle_shop_prod.duckdb, schema prod" in prod.stdout
    # nowhere to be found: one blocking problem per project, with the way out
    lost = run(root, "doctor", env={"HOME": str(tmp_path / "empty")})
    assert lost.returncode == 1, lost.stdout
    assert "[blocking] jaffle-shop-mesh-finance/dbt_project.yml: " in lost.stdout
    assert "dbt cannot read its profile from" in lost.stdout and "mesh --profiles-dir DIR" in lost.stdout
    assert "Traceback" not in lost.stdout + lost.stderr


def test_doctor_shows_projects_edges_and_what_it_ignored(tmp_path: Path) -> None:
    root = copy_tree(CORPUS / "loom_chain", tmp_path / "mesh")
    result = run(root, "doctor", env={"CORPUS_ROOT": str(root)})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "  platform_core  platform/\n      profile platform_core, target dev (duckdb); storage database.db" in out
    assert "  revenue reads platform_core   revenue/dbt_loom.config.yml:2 (dbt_loom manifest 'potato')" in out
    assert "  customer_success reads revenue   customer_success/dbt_loom.config.yml:2 (dbt_loom manifest" in out
    assert "ignored (1):\n  revenue/dbt_loom.config.yml:10: optional dbt-loom manifest of 'customer_success'" in out
    assert "[warning] database.db: platform_core, revenue, customer_success build into the same database" in out
    assert "nothing would stop `mesh build` (1 warning)." in out
    # without the variable its dbt_loom path needs: the unset variable is named, and the build would stop
    broken = run(root, "doctor")
    assert broken.returncode == 1, broken.stdout
    assert "customer_success/dbt_loom.config.yml:6: $CORPUS_ROOT is not set; dbt-loom reads it as an empty string" in (
        broken.stdout
    )
    assert (
        "[blocking] customer_success/dbt_loom.config.yml:2: manifest of 'revenue_manifest' not found" in broken.stdout
    )


def test_doctor_on_an_unreadable_mesh_says_why_and_exits_1(tmp_path: Path) -> None:
    root = copy_tree(CORPUS / "no_contracts", tmp_path / "mesh")
    (root / "jaffle_analytics/dbt_loom.config.yml").write_text(
        "manifests:\n  - name: shop\n    type: s3\n    config: {bucket_name: b, object_name: m.json}\n"
    )
    result = run(root, "doctor")
    assert result.returncode == 1
    assert (
        "[blocking] jaffle_analytics/dbt_loom.config.yml:3: manifest type 's3' is not read by the mesh" in result.stdout
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "manifests:\n  - name: up\n    config: {path: ../jaffle_shop/target/manifest.json}\n"
            "    excluded_packages: [a]\n    included_packages: [b]\n",
            "jaffle_analytics/dbt_loom.config.yml:2: set 'excluded_packages' or 'included_packages', not both",
        ),
        (
            "manifests:\n  - name: up\n    type: file\n    config: {path: https://example.test/manifest.json}\n",
            "jaffle_analytics/dbt_loom.config.yml:3: a manifest over HTTP (https://example.test/manifest.json) is not "
            "read by the mesh",
        ),
        ("manifests:\n  - name: up\n    config: {}\n", "jaffle_analytics/dbt_loom.config.yml:2: a file manifest needs"),
    ],
    ids=["both-filters", "http", "no-path"],
)
def test_bad_dbt_loom_config_is_one_located_error(tmp_path: Path, config: str, message: str) -> None:
    root = copy_tree(CORPUS / "no_contracts", tmp_path / "mesh")
    (root / "jaffle_analytics/dbt_loom.config.yml").write_text(config)
    before = written_files(root)
    result = run(root, "ls")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert written_files(root) == before


def test_loom_labels_paths_and_optional_manifests_without_a_build(tmp_path: Path) -> None:
    """A manifest path into a sibling project is an edge before the file exists; a missing optional one is a note."""
    root = copy_tree(CORPUS / "no_contracts", tmp_path / "mesh")
    (root / "jaffle_analytics/dependencies.yml").unlink()
    (root / "jaffle_analytics/dbt_loom.config.yml").write_text(
        "manifests:\n"
        "  - name: the_shop\n    config: {path: '$SHOP_DIR/target/manifest.json'}\n"
        "  - name: elsewhere\n    optional: true\n    config: {path: /nowhere/manifest.json}\n"
    )
    result = run(root, "doctor", env={"SHOP_DIR": "../jaffle_shop"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "jaffle_analytics reads jaffle_shop   jaffle_analytics/dbt_loom.config.yml:2 (dbt_loom manifest 'the_shop')"
        in (result.stdout)
    )
    assert "optional manifest 'elsewhere' skipped: /nowhere/manifest.json does not exist" in result.stdout


def test_discovery_finds_nested_projects_not_a_package_s_integration_tests(tmp_path: Path) -> None:
    root = copy_tree(CORPUS / "nested_split", tmp_path / "mesh")
    package = root / "vendored_utils"
    (package / "integration_tests").mkdir(parents=True)
    (package / "dbt_project.yml").write_text("name: vendored_utils\nconfig-version: 2\n")
    (package / "integration_tests/dbt_project.yml").write_text("name: integration_tests\nprofile: integration_tests\n")
    result = run(root, "ls")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == ["my_new_project", "split_proj"]


def test_a_declared_project_outside_the_mesh_is_a_note_unless_it_looks_like_a_typo(tmp_path: Path) -> None:
    root = copy_tree(CORPUS / "no_contracts", tmp_path / "mesh")
    deps = root / "jaffle_analytics/dependencies.yml"
    deps.write_text("projects:\n  - name: jaffle_shop\n  - name: finance_platform\n")
    assert run(root, "ls").returncode == 0
    deps.write_text("projects:\n  - name: jaffle_shopp\n")
    typo = run(root, "ls")
    assert typo.returncode == 2
    assert "unknown project 'jaffle_shopp': no domain of the mesh has that name. Did you mean 'jaffle_shop'?" in (
        typo.stderr
    )


def test_init_writes_the_recommended_floor_and_then_governance_blocks(
    corpus: dict[str, BuiltForeign], tmp_path: Path
) -> None:
    root = copy_tree(corpus["no_contracts"].root, tmp_path / "mesh")
    dry = run(root, "init", "--dry-run")
    assert dry.returncode == 0 and not (root / "mesh.yml").exists()
    assert "governance:\n  enforce: true" in dry.stdout
    result = run(root, "init")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mesh init: wrote mesh.yml with 2 domains: jaffle_shop, jaffle_analytics" in result.stdout
    assert "error-level finding(s) in jaffle_shop would block their releases" in result.stdout
    text = (root / "mesh.yml").read_text()
    assert text == dry.stdout
    assert "    GOV101: error     # product-contract-enforced: Every public model has an enforced contract." in text
    again = run(root, "init")
    assert again.returncode == 2 and "mesh.yml already exists; `mesh init` never replaces it" in again.stderr
    assert (root / "mesh.yml").read_text() == text
    # the floor is now enforced: the same build no longer publishes
    published = run(root, "publish", "jaffle_shop")
    assert published.returncode == 1
    assert "jaffle_shop: publish refused: error-level governance findings: GOV101 public model 'customers'" in (
        published.stdout
    )  # the findings in one order (by code, then text), whatever order the filesystem lists the models in
    assert "GOV101 public model 'orders' has no enforced contract" in published.stdout


def test_a_stale_manifest_is_parsed_before_it_is_judged(corpus: dict[str, BuiltForeign], tmp_path: Path) -> None:
    root = copy_tree(corpus["no_contracts"].root, tmp_path / "mesh")

    def findings() -> subprocess.CompletedProcess[str]:
        return run(root, "check", "--no-sqlfluff", "--format", "json")

    first = findings()
    messages = [v["message"] for v in json.loads(first.stdout)["violations"]]
    assert "public model 'customers' has no description" in messages
    (root / "jaffle_shop/models/marts/customers.yml").write_text(
        "models:\n  - name: customers\n    description: One row per customer, with their orders.\n"
    )
    second = findings()
    assert second.returncode in (0, 1), second.stderr
    assert "note: jaffle_shop/models/marts/customers.yml changed after jaffle_shop's manifest was written" in (
        second.stderr
    )
    messages = [v["message"] for v in json.loads(second.stdout)["violations"]]
    assert "public model 'customers' has no description" not in messages  # judged on the new YAML
    # health does not re-parse (it reports on the last build) but names the file whose content changed since
    # (the check's parse went elsewhere: the build's manifest is as it was); a file only touched is no change
    os.utime(root / "jaffle_shop/models/marts/customers.sql")
    health = run(root, "health", "--format", "json", "--fail-on", "never")
    problems = [p for p in json.loads(health.stdout)["problems"] if p["kind"] == "stale_artifacts"]
    assert [p["domain"] for p in problems] == ["jaffle_shop"]
    assert "customers.yml changed after jaffle_shop's manifest was written" in problems[0]["message"]


@pytest.mark.parametrize(
    ("mesh", "domain", "file", "text", "message"),
    [
        (
            "no_contracts",
            "jaffle_analytics",
            "jaffle_analytics/packages.yml",
            "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.1.1\n",
            "dbt deps could not download dbt-labs/dbt_utils (declared in jaffle_analytics/packages.yml): this machine "
            "cannot reach dbt Hub or the package's git host. Vendor the package into the repository and declare it "
            "with '- local: <path>' instead",
        ),
        (
            "attached_raw",
            "ingest",
            "ingest/profiles.yml",
            None,
            "DuckDB could not install the extension 'httpfs' listed under `extensions:` in the profile",
        ),
    ],
    ids=["hub-package", "extension"],
)
def test_what_needs_the_network_says_so_and_the_way_out(
    corpus: dict[str, BuiltForeign], tmp_path: Path, mesh: str, domain: str, file: str, text: str | None, message: str
) -> None:
    root = copy_tree(corpus[mesh].root, tmp_path / "mesh")
    path = root / file
    path.write_text(
        text
        if text is not None
        else path.read_text().replace("threads: 2\n", "threads: 2\n      extensions: [httpfs]\n")
    )
    result = run_foreign(MESHES[mesh], root, "build", domain)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_fixture_folders_are_untouched() -> None:
    """The corpus is copied for every test: the fixtures themselves never hold build output."""
    for mesh in MESHES:
        assert not list((CORPUS / mesh).rglob("manifest.json")), mesh
    assert not list((FIXTURES / "type_matrix").rglob("*.duckdb"))
