"""Self-service: create a domain, adopt a plain dbt project, upgrade a domain from a changed template."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, Built, manifest, mesh_env, run_mesh, written_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mesh_copy(demo_built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the built demo mesh, shared by this module's tests in order."""
    assert demo_built.result.returncode == 0, demo_built.output
    return Path(shutil.copytree(demo_built.root, tmp_path_factory.mktemp("selfservice") / "mesh"))


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_new_domain_builds_and_passes_check_as_created(mesh_copy: Path) -> None:
    result = run_mesh("new-domain", "returns", "--owner", "Returns Team <returns@acme.test>",
                      "--description", "Returned orders and why.", "--upstream", "sales", cwd=mesh_copy)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mesh new-domain: returns created in projects/returns" in result.stdout
    mesh_yml = (mesh_copy / "mesh.yml").read_text()
    assert mesh_yml.startswith("# The demo mesh: four business domains")  # comments kept
    assert "  returns:\n    path: projects/returns\n    description: Returned orders and why.\n" in mesh_yml
    assert "owner: {name: Returns Team, email: returns@acme.test}" in mesh_yml
    project = mesh_copy / "projects/returns"
    assert (project / "dependencies.yml").read_text().endswith("projects:\n  - name: sales\n")
    assert (project / "packages.yml").read_text() == "packages:\n  - local: ../../macros\n"
    assert "{{ ref('sales', 'fct_orders') }}" in (project / "models/marts/returns_overview.sql").read_text()

    build = run_mesh("build", "returns", cwd=mesh_copy)
    assert build.returncode == 0, build.stdout + build.stderr
    node = manifest(project)["nodes"]["model.returns.returns_overview"]
    assert node["access"] == "public" and node["contract"]["enforced"] is True
    assert (mesh_copy / "exchange/products/returns/returns_overview/unversioned/current.json").is_file()

    check = run_mesh("check", "returns", "--format", "json", cwd=mesh_copy)
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["violations"] == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Sales-2", "'Sales-2' is not a valid domain name: use lower-case letters, digits and underscores"),
        ("select", "'select' is a reserved word (SQL, dbt or the mesh's own); choose another domain name."),
        ("sales", "a domain named 'sales' already exists (projects/sales); choose another name."),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(mesh_copy: Path, name: str, message: str) -> None:
    before = written_files(mesh_copy)
    result = run_mesh("new-domain", name, cwd=mesh_copy)
    assert result.returncode == 2
    assert result.stderr == f"error: {message}\n" or message in result.stderr, result.stderr
    assert written_files(mesh_copy) == before


def test_unknown_upstream_is_refused_with_a_close_match(mesh_copy: Path) -> None:
    result = run_mesh("new-domain", "refunds", "--upstream", "salse", cwd=mesh_copy)
    assert result.returncode == 2
    assert "unknown upstream domain 'salse'. Did you mean 'sales'?" in result.stderr


# A seam, in the test only: the real `mesh new-domain` runs in a new interpreter with one step replaced by a
# failure, once the domain's folder is in place (the script prints whether it was).
FAULT = """import os, sys
from mesh_tools.core import files
from mesh_tools.selfservice import newdomain
original = {target}
def fail(*args, **kwargs):
    if {when}:
        print("placed:", os.path.isdir("projects/refunds"), flush=True)
        raise OSError(28, "No space left on device (fault injected)", "mesh.yml")
    return original(*args, **kwargs)
{target} = fail
from mesh_tools.cli import main
sys.argv = ["mesh", "new-domain", "refunds", "--upstream", "sales"]
main()
"""


@pytest.mark.parametrize(
    ("target", "when"),
    [
        ("files.write_atomic", "str(args[0]).endswith('mesh.yml')"),  # registering it in mesh.yml fails
        ("newdomain.load_mesh", "True"),  # registered; the mesh with it then fails to load: mesh.yml restored
    ],
    ids=["registering-fails", "loading-fails"],
)
def test_a_failure_half_way_leaves_no_domain_behind(mesh_copy: Path, target: str, when: str) -> None:
    before, mesh_yml = written_files(mesh_copy), (mesh_copy / "mesh.yml").read_text()
    script = FAULT.format(target=target, when=when)
    result = subprocess.run([sys.executable, "-c", script], cwd=mesh_copy, env=mesh_env(), capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert "placed: True" in result.stdout, result.stdout + result.stderr  # the fault came after the folder
    assert result.returncode == 3 and "no space left on the device" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert written_files(mesh_copy) == before and (mesh_copy / "mesh.yml").read_text() == mesh_yml
    assert not (mesh_copy / "projects/refunds").exists()


def test_adopt_a_plain_dbt_project_and_add_contracts(mesh_copy: Path) -> None:
    shutil.copytree(FIXTURES / "legacy_shop", mesh_copy / "imported/legacy_shop")
    result = run_mesh("adopt", "imported/legacy_shop", "--owner", "Legacy Team <legacy@acme.test>", cwd=mesh_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "legacy_shop: registered in mesh.yml" in result.stdout
    assert "legacy_shop: 2 models, 0 public (data products)" in result.stdout
    assert "  no enforced contract: customers, orders" in result.stdout
    assert "  no description: customers" in result.stdout
    assert "  no owner (a group with an owner): customers, orders" in result.stdout
    assert "path: imported/legacy_shop" in (mesh_copy / "mesh.yml").read_text()

    build = run_mesh("build", "legacy_shop", "--no-publish", cwd=mesh_copy)
    assert build.returncode == 0, build.stdout + build.stderr

    schema = mesh_copy / "imported/legacy_shop/models/schema.yml"
    before = schema.read_text()
    dry = run_mesh("adopt", "imported/legacy_shop", "--contracts", "orders", "--contracts", "customers",
                   "--dry-run", cwd=mesh_copy)  # fmt: skip
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "+      - name: amount\n+        data_type: decimal(10,2)" in dry.stdout
    assert "+++ b/imported/legacy_shop/models/_customers.yml" in dry.stdout
    assert "mesh adopt --dry-run: 2 file(s) would change" in dry.stdout
    # the catalog came from `dbt docs generate --static`, beside the build's own artifacts
    assert (mesh_copy / "imported/legacy_shop/target/docs/static_index.html").is_file()
    assert schema.read_text() == before and not (schema.parent / "_customers.yml").exists()

    done = run_mesh("adopt", "imported/legacy_shop", "--contracts", "orders", "--contracts", "customers",
                    cwd=mesh_copy)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# Keep: the finance team reads this table every morning." in schema.read_text()

    rebuilt = run_mesh("build", "legacy_shop", "--no-publish", cwd=mesh_copy)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    nodes = manifest(mesh_copy / "imported/legacy_shop")["nodes"]
    orders = nodes["model.legacy_shop.orders"]
    assert orders["contract"]["enforced"] is True
    assert {c: v["data_type"] for c, v in orders["columns"].items()} == {
        "order_id": "integer",
        "customer": "varchar",
        "amount": "decimal(10,2)",
        "ordered_on": "date",
    }
    assert nodes["model.legacy_shop.customers"]["contract"]["enforced"] is True


def test_adopt_refuses_a_model_that_is_not_there(mesh_copy: Path) -> None:
    result = run_mesh("adopt", "imported/legacy_shop", "--contracts", "order", cwd=mesh_copy)
    assert result.returncode == 2
    assert "legacy_shop has no model 'order'. Did you mean 'orders'?" in result.stderr


def test_upgrade_domain_from_a_changed_template(mesh_copy: Path) -> None:
    project = mesh_copy / "projects/returns"
    # the mesh takes its own copy of the template and changes it
    template = mesh_copy / "templates/domain"
    shutil.copytree(Path(__file__).resolve().parents[2] / "mesh_tools/selfservice/template", template)
    with open(mesh_copy / "mesh.yml", "a") as handle:
        handle.write("self_service:\n  template: templates/domain\n")
    profiles = template / "files/profiles.yml"
    profiles.write_text(
        profiles.read_text() + "    ci:\n      type: duckdb\n      path: ci_[[ name ]].duckdb\n      threads: 1\n"
    )
    dbt_project = template / "files/dbt_project.yml"
    dbt_project.write_text(dbt_project.read_text().replace("flags:\n", "on-run-end: []\n\nflags:\n"))
    # and the domain team has changed its dbt_project.yml on its own
    own = project / "dbt_project.yml"
    own.write_text(own.read_text() + "\nvars:\n  returns_window_days: 30\n")
    models_before = tree_digest(project / "models")

    dry = run_mesh("upgrade-domain", "returns", "--dry-run", cwd=mesh_copy)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "  dbt_project.yml: merge\n  profiles.yml: replace\n  packages.yml: up to date\n" in dry.stdout
    assert "+    ci:\n+      type: duckdb\n+      path: ci_returns.duckdb" in dry.stdout
    assert "+on-run-end: []" in dry.stdout
    assert "ci:" not in (project / "profiles.yml").read_text()

    done = run_mesh("upgrade-domain", "returns", "--yes", cwd=mesh_copy)
    assert done.returncode == 0, done.stdout + done.stderr
    text = own.read_text()
    assert "on-run-end: []" in text and "returns_window_days: 30" in text  # template change and own change
    assert "path: ci_returns.duckdb" in (project / "profiles.yml").read_text()
    assert tree_digest(project / "models") == models_before
    again = run_mesh("upgrade-domain", "returns", cwd=mesh_copy)
    assert "mesh upgrade-domain: returns is up to date with the template" in again.stdout

    build = run_mesh("build", "returns", cwd=mesh_copy)
    assert build.returncode == 0, build.stdout + build.stderr


def test_upgrade_conflict_is_shown_and_nothing_written(mesh_copy: Path) -> None:
    project = mesh_copy / "projects/returns"
    profiles = mesh_copy / "templates/domain/files/profiles.yml"
    profiles.write_text(profiles.read_text().replace("threads: 4", "threads: 8"))
    own = project / "profiles.yml"
    own.write_text(own.read_text().replace("threads: 4", "threads: 2"))
    before = own.read_text()
    result = run_mesh("upgrade-domain", "returns", "--yes", cwd=mesh_copy)
    assert result.returncode == 1
    assert "  profiles.yml: conflict" in result.stdout
    assert "<<<<<<< domain" in result.stdout and ">>>>>>> template" in result.stdout
    assert own.read_text() == before


def test_upgrade_without_record_needs_force(mesh_copy: Path) -> None:
    result = run_mesh("upgrade-domain", "sales", "--dry-run", cwd=mesh_copy)
    assert result.returncode == 1
    assert "dbt_project.yml: differs (no record of the template it came from)" in result.stdout
