"""The shape of the `mesh` command line: -s/--select and --exclude everywhere, the old forms still accepted,
-o a file and --output-dir a folder, one --fail-on vocabulary, --format json, exit codes in --help. Cheap:
no dbt run (the built plain_mesh is read, or a copy of it written by health and contracts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mesh_tools.cli import main
from tests.helpers import Built, run_mesh


def test_every_exit_code_is_in_the_help() -> None:
    top = CliRunner().invoke(main, ["--help"]).output
    for line in ("0  ok", "1  findings", "2  usage or configuration", "3  dbt could not run", "4  an unexpected"):
        assert line in top
    for command in (["build"], ["check"], ["ls"], ["contracts", "export"], ["status"], ["doctor"]):
        shown = " ".join(CliRunner().invoke(main, [*command, "--help"]).output.split())
        assert "Exit codes: 0 ok, 1 " in shown and "4 a bug of mesh- tools" in shown.replace(
            "mesh-tools", "mesh- tools"
        )
    assert "1 a domain failed or was skipped" in " ".join(CliRunner().invoke(main, ["build", "--help"]).output.split())


def ls(root: Path, *args: str) -> dict:
    result = run_mesh("ls", "--format", "json", *args, cwd=root)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ls_json_and_the_positional_alias_of_select(plain_mesh_built: Built) -> None:
    root = plain_mesh_built.root
    everything = ls(root)
    assert everything["schema"] == "mesh-ls/1" and everything["config"] == "discovered"
    assert [d["name"] for d in everything["domains"]] == ["hr", "shop", "audit", "billing", "reporting"]
    assert everything["domains"][4]["upstreams"] == ["shop"] and "models" not in everything["domains"][0]
    assert ls(root, "shop+", "--exclude", "audit") == ls(root, "-s", "shop+", "--exclude", "audit")
    # as in dbt: -s and --exclude take every word up to the next option, or one quoted argument of several
    two = ls(root, "-s", "shop+", "--exclude", "audit billing")
    assert [d["name"] for d in two["domains"]] == ["shop", "reporting"]
    assert ls(root, "--exclude", "audit", "billing", "-s", "shop+") == two
    assert [d["name"] for d in ls(root, "-s", "shop", "hr")["domains"]] == ["hr", "shop"]
    models = ls(root, "--models", "-s", "shop")["domains"][0]["models"]
    assert [(m["label"], m["access"]) for m in models] == [
        ("shop.customers_internal", "protected"), ("shop.orders.v1", "public"), ("shop.orders.v2", "public"),
        ("shop.secret_margin", "private")]  # fmt: skip


def test_status_and_doctor_json(plain_mesh_built: Built) -> None:
    root = plain_mesh_built.root
    status = run_mesh("status", "--format", "json", "-s", "+reporting", cwd=root)
    assert status.returncode == 0, status.stderr
    assert [d["domain"] for d in json.loads(status.stdout)["domains"]] == ["shop", "reporting"]
    doctor = run_mesh("doctor", "--format", "json", cwd=root)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    found = json.loads(doctor.stdout)
    assert found["schema"] == "mesh-doctor/1" and found["blocking"] == 0
    assert sorted(p["name"] for p in found["projects"]) == ["audit", "billing", "hr", "reporting", "shop"]
    assert {"consumer": "reporting", "producer": "shop"}.items() <= next(
        e for e in found["edges"] if e["consumer"] == "reporting").items()  # fmt: skip


def test_selection_errors_are_usage_errors(plain_mesh_built: Built) -> None:
    root = plain_mesh_built.root
    stitch = run_mesh("stitch", "-s", "shop.orders+", cwd=root)
    assert stitch.returncode == 2
    assert "error: 'shop.orders+' names models; `mesh stitch` selects whole domains" in stitch.stderr
    unknown = run_mesh("build", "--full", "-s", "shop.ordres+", cwd=root)  # --full: its old spelling, with a note
    assert unknown.returncode == 2
    assert "note: --full is now spelled --no-state" in unknown.stderr
    assert "no model, seed or snapshot 'shop.ordres' in the mesh (selection 'shop.ordres+'). Did you mean " \
        "'shop.orders'?" in unknown.stderr  # fmt: skip
    refresh = run_mesh("build", "--full-refresh", cwd=root)
    assert refresh.returncode == 2 and "mesh build has no --full-refresh" in refresh.stderr
    publish = run_mesh("publish", cwd=root)
    assert publish.returncode == 2 and "name the domains to publish: `mesh publish -s DOMAIN`" in publish.stderr


@pytest.mark.parametrize(("fail_on", "code"), [("warning", 1), ("warn", 1), ("never", 0), ("sometimes", 2)])
def test_check_fail_on_words(plain_mesh_built: Built, fail_on: str, code: int) -> None:
    result = run_mesh("check", "--no-sqlfluff", "--fail-on", fail_on, "-s", "reporting", cwd=plain_mesh_built.root)
    assert result.returncode == code, result.stdout + result.stderr


def test_output_is_a_file_output_dir_a_folder_old_spellings_kept(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    as_file = run_mesh("health", "--format", "json", "-o", "report.json", "--fail-on", "failing", cwd=root)
    assert as_file.returncode == 0, as_file.stderr
    assert json.loads((root / "report.json").read_text())["products"] and as_file.stdout.startswith("mesh health: json")
    old = run_mesh("health", "-o", "reports", "--fail-on", "error", cwd=root)  # no extension: the old -o FOLDER
    assert old.returncode == 0, old.stderr
    assert "note: mesh health -o FOLDER is now --output-dir FOLDER" in old.stderr
    assert {"report.html", "report.json", "report.md"} <= {p.name for p in (root / "reports").iterdir()}
    contracts = run_mesh("contracts", "export", "-s", "shop", "--output-dir", "odcs", cwd=root)
    assert contracts.returncode == 0 and not contracts.stderr.startswith("note:"), contracts.stderr
    old = run_mesh("contracts", "export", "shop", "-o", "odcs2", cwd=root)
    assert old.returncode == 0 and "note: mesh contracts export -o/--output FOLDER is now --output-dir" in old.stderr
    assert sorted(p.name for p in (root / "odcs2/shop").iterdir()) == sorted(
        p.name for p in (root / "odcs/shop").iterdir()
    )


def test_rules_shows_only_the_rules_named_by_code_or_name(tmp_path: Path):
    shown = run_mesh("rules", "gov301", "waiver-unused", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    headings = [line.split()[0] for line in shown.stdout.splitlines() if line[:3] == "GOV"]
    assert headings == ["GOV301", "GOV003"]
    unknown = run_mesh("rules", "GOV1O7", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no rule 'GOV1O7'. Did you mean 'GOV107'?" in unknown.stderr
