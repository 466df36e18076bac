"""Refs that must not resolve fail with a message naming the model, its access and its project."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_mesh


def stitch_with(mesh: Path, sql: str, domain: str = "reporting"):
    (mesh / domain / "models" / "bad.sql").write_text(sql)
    return run_mesh("stitch", domain, cwd=mesh)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "select * from {{ ref('shop', 'customers_internal') }}",
            "reporting/models/bad.sql:1: ref('shop', 'customers_internal'): 'customers_internal' is a protected "
            "model of project 'shop' (model.shop.customers_internal). Only public models can be referenced from "
            "another project: ask its owner (Shop Team <shop@example.test>)",
        ),
        (
            "select 1 as x\n-- margin\n, * from {{ ref('shop', 'secret_margin') }}",
            "reporting/models/bad.sql:3: ref('shop', 'secret_margin'): 'secret_margin' is a private model of "
            "project 'shop' (model.shop.secret_margin)",
        ),
        (
            "select * from {{ ref('shop', 'order') }}",
            "ref('shop', 'order'): project 'shop' has no model 'order'. Did you mean 'orders'? "
            "Public models of shop: orders.",
        ),
        (
            "select * from {{ ref('shop', 'orders', v=7) }}",
            "ref('shop', 'orders', v=7): model 'orders' of project 'shop' has no version 7. Versions: 1, 2.",
        ),
        (
            "select * from {{ ref('shopp', 'orders') }}",
            "ref('shopp', 'orders'): no project named 'shopp' in the mesh. Did you mean 'shop'?",
        ),
        (
            "select * from {{ ref('hr', 'headcount') }}",
            "ref('hr', 'headcount') uses project 'hr', which reporting does not declare. "
            "Add '- name: hr' under 'projects:' in reporting/dependencies.yml.",
        ),
    ],
    ids=["protected", "private", "missing-model", "missing-version", "unknown-project", "undeclared-project"],
)
def test_bad_ref_is_rejected_before_dbt_runs(plain_mesh_copy: Path, sql: str, expected: str):
    before = (plain_mesh_copy / "reporting" / "target" / "manifest.json").stat().st_mtime
    result = stitch_with(plain_mesh_copy, sql)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout
    assert (plain_mesh_copy / "reporting" / "target" / "manifest.json").stat().st_mtime == before


def test_ref_built_dynamically_is_explained_from_dbts_error(plain_mesh_copy: Path):
    """A ref the scanner cannot see still fails with the access level, at dbt's parse time."""
    (plain_mesh_copy / "reporting" / "models" / "bad.sql").write_text(
        "{% set name = 'customers_' ~ 'internal' %}\nselect * from {{ ref('shop', name) }}"
    )
    result = run_mesh("build", "reporting", cwd=plain_mesh_copy)
    assert result.returncode == 1
    assert (
        "models/bad.sql (model.reporting.bad): ref('shop', 'customers_internal'): 'customers_internal' is a "
        "protected model of project 'shop'" in result.stdout
    )


def test_plain_dbt_cannot_reach_a_protected_model_either(plain_mesh_copy: Path):
    """The stub holds public models only, so even plain `dbt build` in the consumer refuses the ref."""
    from tests.helpers import run_dbt

    (plain_mesh_copy / "reporting" / "models" / "bad.sql").write_text(
        "select * from {{ ref('shop', 'customers_internal') }}"
    )
    result = run_dbt("parse", cwd=plain_mesh_copy / "reporting")
    assert result.returncode != 0
    assert "'customers_internal' in package or project 'shop' which was not found" in result.stdout
