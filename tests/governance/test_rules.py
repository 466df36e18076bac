"""Every governance rule, failing on the governance_mesh fixture and passing on the demo mesh."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import copy_fixture, run_dbt, run_mesh


@pytest.fixture(scope="session")
def governance_mesh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """crm and billing parsed the mesh way; ads parsed the plain-dbt way, with crm and billing as
    local packages, so its manifest holds refs the stitcher would refuse (what GOV201/203 catch)."""
    root = copy_fixture("governance_mesh", tmp_path_factory.mktemp("gov"))
    stitched = run_mesh("stitch", "crm", "billing", cwd=root)
    assert stitched.returncode == 0, stitched.stdout + stitched.stderr
    for command in (("deps",), ("parse",)):
        result = run_dbt(*command, cwd=root / "ads")
        assert result.returncode == 0, result.stdout
    return root


@pytest.fixture(scope="session")
def report(governance_mesh: Path) -> dict:
    result = run_mesh("check", "--format", "json", cwd=governance_mesh)
    assert result.returncode == 1, result.stderr
    return json.loads(result.stdout)


def found(report: dict, code: str) -> list[tuple[str, str, str]]:
    return [(v["domain"], v["severity"], v["message"]) for v in report["violations"] if v["code"] == code]


EXPECTED = {
    "GOV101": [("crm", "error", "public model 'bad_product' has no enforced contract")],
    "GOV102": [("crm", "error", "public model 'bad_product': columns without data_type: id, secret_email")],
    "GOV103": [("crm", "error", "public model 'bad_product' has no description")],
    "GOV104": [("crm", "error", "public model 'bad_product' belongs to no group")],
    "GOV105": [("crm", "error", "public model 'bad_product' has no unique + not_null tests")],
    "GOV201": [
        ("ads", "error", "'audience' reads model.crm.internal_scores, which is protected in crm"),
        ("ads", "error", "'invoices_copy' reads model.billing.invoices, which is protected in billing"),
    ],
    "GOV203": [
        (
            "ads",
            "error",
            "ads reads project 'billing' (model.billing.invoices) without declaring it in dependencies.yml",
        )
    ],
    "GOV204": [("billing", "error", "cycle between domains: billing -> crm -> billing")],
    "GOV205": [
        ("ads", "error", "on-run-start hook attaches crm's storage: '../crm/crm.duckdb'"),
        ("ads", "error", "'vips' (post-hook) writes crm's storage: INSERT INTO crm_db.main.events SELECT 1"),
        ("ads", "error", "'vips' (post-hook) writes the exchange: '../exchange/products/crm/customers/forged.parquet'"),
    ],
    "GOV302": [("crm", "error", "'accounts' v1 is older than latest v2 but has no deprecation_date")],
    "GOV303": [("ads", "warn", "'legacy' reads model.crm.old_report, deprecated since 2020-01-01")],
    "GOV401": [
        (
            "billing",
            "error",
            "'invoices' reads PII (email) of model.crm.customers, whose policy does not allow billing",
        ),
        (
            "crm",
            "error",
            "public model 'bad_product' exposes PII (secret_email) with no policy: set "
            "meta.pii_allowed_consumers (an empty list allows no other domain)",
        ),
    ],
    "GOV402": [("ads", "error", "'vips' reads model.crm.vip_list, which crm restricts to: billing")],
    "GOV601": [("crm", "warn", "source 'raw.events' has no freshness threshold")],
    "GOV602": [
        ("ads", "error", "'audience' promises 1 h freshness but reads model.crm.customers, which promises 24 h")
    ],
}


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_rule_fails_where_it_should(report: dict, code: str):
    assert sorted(found(report, code)) == sorted(EXPECTED[code])


def test_column_descriptions_raised_to_error_by_the_mesh(report: dict):
    assert sorted(found(report, "GOV106")) == [
        ("ads", "error", "public model 'audience': columns without description: score"),
        ("crm", "error", "public model 'bad_product': columns without description: id, secret_email"),
    ]


def test_domain_raises_a_severity_for_itself_only(report: dict):
    assert sorted(found(report, "GOV501")) == [
        ("ads", "error", "'helper' is in intermediate/ but is not named int_*"),
        ("crm", "warn", "'customers_clean' is in staging/ but is not named stg_*"),
    ]


def test_sql_style_through_sqlfluff(report: dict):
    style = found(report, "GOV502")
    assert ("crm", "warn", "CP01: Keywords must be consistently upper case.") in style
    assert ("billing", "warn", "LT05: Line is too long (141 > 120).") in style
    lines = [v["line"] for v in report["violations"] if v["code"] == "GOV502" and v["domain"] == "crm"]
    assert lines == [1]


def test_storage_bypass_is_found_and_waived_with_a_reason(report: dict):
    assert found(report, "GOV202") == []
    [waived] = [v for v in report["waived"] if v["code"] == "GOV202"]
    assert waived["message"] == "'sneaky' reads crm's storage directly: crm.main.customers"
    assert waived["waived_by"] == "Migration to ref('crm', 'customers') scheduled for Q1. (until 2099-12-31)"


def test_broken_and_unused_waivers_are_violations(report: dict):
    assert found(report, "GOV001") == [("ads", "error", "waiver #2 of GOV303 for legacy has no reason")]
    assert found(report, "GOV002") == [("ads", "error", "waiver #3 of GOV201 for audience expired on 2020-06-30")]
    assert found(report, "GOV003") == [("ads", "warn", "waiver of GOV103 for nothing_here matches no violation")]


def test_the_waiver_rules_take_the_severity_mesh_yml_sets(governance_mesh: Path, tmp_path: Path):
    # GOV001-003 were accepted in `governance.rules` and then ignored: a setting is honoured as any rule's
    root = tmp_path / "mesh"
    shutil.copytree(governance_mesh, root, symlinks=True)
    config = root / "mesh.yml"
    config.write_text(
        config.read_text().replace("    GOV106: error", "    GOV106: error\n    GOV003: off\n    GOV002: warn")
    )
    result = run_mesh("check", "--format", "json", "--no-sqlfluff", cwd=root)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert found(report, "GOV003") == []
    assert found(report, "GOV002") == [("ads", "warn", "waiver #3 of GOV201 for audience expired on 2020-06-30")]
    assert found(report, "GOV001") == [("ads", "error", "waiver #2 of GOV303 for legacy has no reason")]
    # GOV107 is on but needs datacontract-cli: the check says it did not run (on stderr, beside the JSON)
    assert "GOV107 (product-data-contract) not checked: `mesh check --datacontract`" in result.stderr


def test_breaking_change_against_the_published_release(plain_mesh_copy: Path):
    root = plain_mesh_copy
    schema = root / "shop/models/schema.yml"
    schema.write_text(
        schema.read_text()
        .replace("      - name: amount\n", "      - name: amount_eur\n")
        .replace("[amount]", "[amount_eur]")
    )
    sql = root / "shop/models/orders_v2.sql"
    sql.write_text(sql.read_text().replace("as amount\n", "as amount_eur\n"))
    assert run_mesh("stitch", "shop", cwd=root).returncode == 0
    result = run_mesh("check", "--no-sqlfluff", "--format", "json", cwd=root)
    [violation] = [v for v in json.loads(result.stdout)["violations"] if v["code"] == "GOV301"]
    message = violation["message"]
    assert re.match(
        r"shop\.orders\.v2: column 'amount' removed or renamed since release r\d{8}T\d{12}Z-\w{6} "
        r"without a new version; affected: ",
        message,
    ), message
    assert "audit.audited_orders (selects 'amount')" in message
    assert "billing.invoices (selects 'amount')" in message
    assert "reporting.order_summary (selects 'amount')" in message
    assert "reporting.legacy_orders" not in message  # it reads v1, which did not change
    # and the gate: the breaking change blocks publishing
    build = run_mesh("build", "shop", cwd=root)
    assert build.returncode == 1
    # plain_mesh has no mesh.yml, so governance is advisory; a breaking change to an enforced contract still blocks
    assert "publish refused: findings that block a release even where governance is advisory" in build.stdout
    assert "GOV301 shop.orders.v2: column 'amount'" in build.stdout


def test_text_output_is_grouped_by_domain_with_the_fix(governance_mesh: Path):
    result = run_mesh("check", "--no-sqlfluff", "ads", cwd=governance_mesh)
    assert result.returncode == 1
    out = result.stdout
    assert out.startswith("ads:\n")
    assert "  ERROR GOV201 ref-to-non-public-model: 'audience' reads model.crm.internal_scores" in out
    assert "        at ads/models/audience.sql\n        fix: Use a public product of that domain" in out
    assert re.search(r"mesh check: 1 domain, 21 rules, \d+ errors?, \d+ warnings?, 0 info, 1 waived", out)


def test_junit_and_sarif(governance_mesh: Path, tmp_path: Path):
    junit = run_mesh("check", "--no-sqlfluff", "--format", "junit", cwd=governance_mesh)
    suites = ET.fromstring(junit.stdout)
    by_name = {s.get("name"): s for s in suites}
    assert int(by_name["mesh check: crm"].get("failures")) == 8
    sarif = json.loads(run_mesh("check", "--no-sqlfluff", "--format", "sarif", cwd=governance_mesh).stdout)
    run = sarif["runs"][0]
    assert sarif["version"] == "2.1.0" and run["tool"]["driver"]["name"] == "mesh check"
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} >= {"GOV101", "GOV201", "GOV001"}
    first = next(r for r in run["results"] if r["ruleId"] == "GOV101")
    assert first["level"] == "error"
    assert first["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "crm/models/marts/bad_product.sql"


def test_baseline_fails_only_on_new_violations(governance_mesh: Path, tmp_path: Path):
    baseline = tmp_path / "baseline.json"
    first = run_mesh("check", "--no-sqlfluff", "--write-baseline", str(baseline), cwd=governance_mesh)
    assert first.returncode == 1 and baseline.is_file()
    again = run_mesh("check", "--no-sqlfluff", "--baseline", str(baseline), cwd=governance_mesh)
    assert again.returncode == 0, again.stdout
    assert "0 at or above 'error'" in again.stdout and "(baseline)" in again.stdout


def test_fail_on_threshold(governance_mesh: Path):
    result = run_mesh("check", "--no-sqlfluff", "--fail-on", "warn", "crm", cwd=governance_mesh)
    assert result.returncode == 1
    assert "at or above 'warn'" in result.stdout


def test_missing_manifest_is_exit_3(tmp_path: Path):
    root = copy_fixture("governance_mesh", tmp_path)
    result = run_mesh("check", cwd=root)
    assert result.returncode == 3
    assert result.stderr.startswith(
        "error: crm/target/manifest.json: manifest not found. Parse or build the domain first"
    )


def test_rules_lists_every_rule_with_its_documentation(plain_mesh: Path):
    result = run_mesh("rules", cwd=plain_mesh)
    assert result.returncode == 0
    codes = re.findall(r"^(GOV\d{3})  ", result.stdout, re.M)
    assert len(codes) == 25 and codes == sorted(codes[:22]) + ["GOV001", "GOV002", "GOV003"]
    for section in ("Rationale:", "Example:", "Fix:"):  # the waiver rules too (docs/reference/rules.md shows them)
        assert result.stdout.count(section) == 25


def test_company_rule_from_a_plugin(governance_mesh: Path, tmp_path: Path):
    root = tmp_path / "mesh"
    import shutil

    shutil.copytree(governance_mesh, root, symlinks=True)
    (root / "company_rules.py").write_text(
        "from mesh_tools.governance.rule import Finding, rule\n\n"
        "@rule('ACME001', 'no-x-columns', severity='error')\n"
        "def no_x(ctx):\n"
        "    '''No column may be called x.\n\n    Rationale:\n        x says nothing.\n    Example:\n        select 1 as x\n"
        "    Fix:\n        Name it.\n    '''\n"
        "    for domain in ctx.manifests:\n"
        "        for node in ctx.nodes(domain):\n"
        "            if 'as x' in (node.get('raw_code') or ''):\n"
        "                yield Finding(domain, f\"'{node['name']}' has a column called x\", node=node['unique_id'])\n"
    )
    mesh_yml = root / "mesh.yml"
    mesh_yml.write_text(mesh_yml.read_text().replace("governance:\n", "governance:\n  plugins: [company_rules.py]\n"))
    result = run_mesh("check", "--no-sqlfluff", "--format", "json", cwd=root)
    assert [v["message"] for v in json.loads(result.stdout)["violations"] if v["code"] == "ACME001"] == [
        "'helper' has a column called x"
    ]


def test_breaking_change_against_a_saved_contract_baseline(plain_mesh_copy: Path, tmp_path: Path):
    root = plain_mesh_copy
    saved = tmp_path / "contracts.json"
    assert run_mesh("check", "--no-sqlfluff", "--write-contracts", str(saved), cwd=root).returncode in (0, 1)
    assert "shop.orders.v2" in json.loads(saved.read_text())["contracts"]
    shutil.rmtree(root / "exchange")  # no release to compare with: only the saved contracts
    schema = root / "shop/models/schema.yml"
    schema.write_text(schema.read_text().replace("data_type: decimal(10,2)", "data_type: double"))
    assert run_mesh("stitch", "shop", cwd=root).returncode == 0
    result = run_mesh("check", "--no-sqlfluff", "--format", "json", "--contracts", str(saved), cwd=root)
    messages = [v["message"] for v in json.loads(result.stdout)["violations"] if v["code"] == "GOV301"]
    assert messages and messages[0].startswith(
        "shop.orders.v2: column 'amount' type changed decimal(10,2) -> double without a new version; affected: "
    )


def test_two_checks_in_one_process_with_a_domains_own_rule(governance_mesh: Path, tmp_path: Path):
    """The registry is made per check: a plugin loads again in the same process, and a domain's
    own rule judges that domain only (ADS001 flags every model of every domain it is shown)."""
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.governance.engine import run_check

    root = tmp_path / "mesh"
    shutil.copytree(governance_mesh, root, symlinks=True)
    (root / "ads" / "ads_rules.py").write_text(
        "from mesh_tools.governance.rule import rule\n\n"
        "@rule('ADS001', 'flag-every-model', severity='warn')\n"
        "def flag(ctx):\n"
        "    '''Flags every model.\n\n    Fix:\n        None.\n    '''\n"
        "    for domain in ctx.manifests:\n"
        "        for node in ctx.nodes(domain):\n"
        "            yield ctx.finding(domain, node, f'{node.name} flagged')\n"
    )
    domain_yml = root / "ads" / "mesh_domain.yml"
    domain_yml.write_text(
        domain_yml.read_text().replace("governance:\n", "governance:\n  plugins: [ads_rules.py]\n", 1)
    )
    reports = [run_check(load_mesh(root), sqlfluff=False) for _ in range(2)]
    for report in reports:
        flagged = [v for v in report.violations if v.code == "ADS001"]
        assert flagged and {v.finding.domain for v in flagged} == {"ads"}
        assert report.registry.owners("ADS001") == {"ads"}
    assert [v.fingerprint for v in reports[0].violations] == [v.fingerprint for v in reports[1].violations]
    crm_only = run_check(load_mesh(root), ["crm"], sqlfluff=False)
    assert "ADS001" in crm_only.rules and not [v for v in crm_only.violations if v.code == "ADS001"]
