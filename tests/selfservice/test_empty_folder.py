"""A mesh started from an empty folder: `mesh init`, then `mesh new-domain` lists each domain in mesh.yml (no dbt)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_mesh


def test_init_and_new_domain_start_a_mesh_in_an_empty_folder(tmp_path: Path) -> None:
    root = tmp_path / "acme"
    root.mkdir()
    built = run_mesh("build", cwd=root)  # nothing to build: one error that names the way in
    assert built.returncode == 2
    assert "no dbt project found" in built.stderr and "`mesh new-domain NAME`" in built.stderr
    init = run_mesh("init", cwd=root)
    assert init.returncode == 0, init.stderr
    assert "mesh init: wrote mesh.yml with no domain yet. Next: `mesh new-domain NAME`." in init.stdout
    assert (
        (root / "mesh.yml")
        .read_text()
        .endswith("# None yet: `mesh new-domain NAME` creates a domain and lists it here.\ndomains: {}\n")
    )
    for name, owner in (("orders", "Orders Team <orders@acme.test>"), ("billing", "Billing Team <billing@acme.test>")):
        created = run_mesh("new-domain", name, "--owner", owner, "--description", f"The {name}.", cwd=root)
        assert created.returncode == 0, created.stderr
        assert f"  register {name} in mesh.yml" in created.stdout
    text = (root / "mesh.yml").read_text()
    assert text.endswith(  # block style, after the comment, in the order created
        "domains:\n"
        "  orders:\n    path: projects/orders\n    description: The orders.\n"
        "    owner: {name: Orders Team, email: orders@acme.test}\n"
        "  billing:\n    path: projects/billing\n    description: The billing.\n"
        "    owner: {name: Billing Team, email: billing@acme.test}\n"
    )
    assert "governance:\n  enforce: true" in text
    listed = run_mesh("ls", cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()[1:]) == ["billing", "orders"]


def test_new_domain_without_mesh_yml_says_the_description_is_not_recorded(tmp_path: Path) -> None:
    created = run_mesh(
        "new-domain", "orders", "--owner", "Orders Team <o@acme.test>", "--description", "Orders.", cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    assert "register" not in created.stdout and not (tmp_path / "mesh.yml").exists()
    assert (
        "note: --description is not recorded: the mesh has no list of domains (mesh.yml `domains:`) to write it in; "
        "`mesh init` writes a mesh.yml that lists them"
    ) in created.stdout
