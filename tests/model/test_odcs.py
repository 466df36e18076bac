"""Data contracts in the Open Data Contract Standard (ODCS v3): beside every release, exported, compared
(`mesh check --contracts-from`), and tested against the released data with datacontract-cli."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mesh_tools.core.files import file_sha256
from mesh_tools.model import odcs
from tests.helpers import REPO, Built, run_command, run_mesh

V2 = "shop.orders.v2"


def releases(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "exchange/products").glob("*/*/*/releases/*/release.json"))


def props(items: list[dict]) -> dict:
    return {i["property"]: i["value"] for i in items or []}


def test_every_release_carries_a_valid_contract_that_round_trips(plain_mesh_built: Built) -> None:
    from open_data_contract_standard.model import OpenDataContractStandard

    assert plain_mesh_built.result.returncode == 0, plain_mesh_built.output
    assert "OpenLineage" not in plain_mesh_built.output  # lineage is off unless configured
    found = releases(plain_mesh_built.root)
    assert len(found) == 2
    for folder in found:
        descriptor = json.loads((folder / "release.json").read_text())
        text = (folder / odcs.CONTRACT_FILE).read_text()
        contract = yaml.safe_load(text)
        assert odcs.schema_problems(contract) == [], folder
        again = yaml.safe_load(OpenDataContractStandard.model_validate(contract).to_yaml())
        assert again == contract  # the standard's own model reads and writes back every field we fill
        assert contract["apiVersion"] == odcs.API_VERSION and contract["kind"] == "DataContract"
        assert contract["name"] == descriptor["product"] and contract["domain"] == "shop"
        assert contract["version"] == f"{descriptor['version']}.0.0" and contract["status"] in ("active", "deprecated")
        custom = props(contract["customProperties"])
        data = folder / "data.parquet"
        assert custom["releaseId"] == folder.name and custom["rowCount"] == descriptor["row_count"] == 3
        assert custom["sha256"] == file_sha256(data) and custom["contractHash"] == descriptor["contract_hash"]
        (server,) = contract["servers"]
        assert server["type"] == "local" and Path(server["path"]) == data.resolve() and server["format"] == "parquet"
        assert contract["team"]["members"][0] == {"username": "shop@example.test", "role": "owner", "name": "Shop Team"}
        columns = {p["name"]: p for p in contract["schema"][0]["properties"]}
        order_id = columns["order_id"]
        assert order_id["required"] and order_id["unique"] and order_id["primaryKey"]
        assert (order_id["logicalType"], order_id["physicalType"]) == ("integer", "INTEGER")
        assert {q["metric"] for q in order_id["quality"]} == {"nullValues", "duplicateValues"}
        # PII: NULL in the file every consumer reads, in clear only for audit
        customer = columns["customer_id"]
        assert customer["classification"] == "pii" and "required" not in customer
        assert props(customer["customProperties"])["piiReaders"] == ["audit"]
    v1 = yaml.safe_load((found[0] / odcs.CONTRACT_FILE).read_text())
    assert v1["name"] == "shop.orders.v1" and v1["status"] == "deprecated"
    assert "amount" not in {p["name"] for p in v1["schema"][0]["properties"]}


def test_export_writes_each_products_contract_and_a_proposed_one_before_its_first_release(
    plain_mesh_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "contracts"
    result = run_mesh("contracts", "export", "-o", str(out), cwd=plain_mesh_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.odcs.yaml"))
    assert files == ["shop/shop.orders.v1.odcs.yaml", "shop/shop.orders.v2.odcs.yaml"]
    current = json.loads((plain_mesh_copy / "exchange/products/shop/orders/v2/current.json").read_text())["release_id"]
    exported = yaml.safe_load((out / "shop/shop.orders.v2.odcs.yaml").read_text())
    assert props(exported["customProperties"])["releaseId"] == current
    # a new public model, built but never published: a proposed contract, no server
    schema = plain_mesh_copy / "shop/models/schema.yml"
    schema.write_text(
        schema.read_text().replace(
            "  - name: customers_internal\n",
            """  - name: refunds
    description: Refunds.
    config: {access: public, group: shop_team, contract: {enforced: true}, meta: {freshness_slo_hours: 6}}
    columns:
      - {name: refund_id, data_type: bigint, description: Refund id., constraints: [{type: not_null}]}
  - name: customers_internal
""",
        )
    )
    (plain_mesh_copy / "shop/models/refunds.sql").write_text("select cast(1 as bigint) as refund_id\n")
    assert run_mesh("stitch", "shop", cwd=plain_mesh_copy).returncode == 0
    result = run_mesh("contracts", "export", "shop", "-o", str(out), cwd=plain_mesh_copy)
    assert result.returncode == 0 and "not released yet" in result.stdout, result.stdout + result.stderr
    proposed = yaml.safe_load((out / "shop/shop.refunds.odcs.yaml").read_text())
    assert odcs.schema_problems(proposed) == []
    assert proposed["status"] == "proposed" and "servers" not in proposed and proposed["version"] == "1.0.0"
    assert proposed["slaProperties"] == [{"property": "latency", "value": 6.0, "unit": "h", "description": (
        "The product's data is at most 6 hours old (meta.freshness_slo_hours).")}]  # fmt: skip
    (refund,) = proposed["schema"][0]["properties"]
    assert refund["required"] is True and refund["physicalType"] == "bigint" and refund["logicalType"] == "integer"
    # a channel with no release of it: said, and the contract is a proposed one
    dev = run_mesh("--env", "dev", "contracts", "export", "shop", "-o", str(tmp_path / "dev"), cwd=plain_mesh_copy)
    assert dev.returncode == 0 and "shop.orders.v2" in dev.stdout, dev.stdout + dev.stderr
    assert "no release in channel 'dev' (prod has one): a proposed contract" in dev.stdout
    # -o on a file: one clear error, nothing written
    bad = tmp_path / "a-file"
    bad.write_text("mine")
    result = run_mesh("contracts", "export", "-o", str(bad), cwd=plain_mesh_copy)
    assert result.returncode == 2 and "Traceback" not in result.stderr and bad.read_text() == "mine"


def test_contracts_from_a_folder_report_breaking_changes_with_the_consumers_affected(
    plain_mesh_copy: Path, tmp_path: Path
) -> None:
    baseline = tmp_path / "main"
    assert run_mesh("contracts", "export", "-o", str(baseline), cwd=plain_mesh_copy).returncode == 0
    same = run_mesh("check", "--no-sqlfluff", "--contracts-from", str(baseline), "shop", cwd=plain_mesh_copy)
    assert "GOV301" not in same.stdout, same.stdout
    schema = plain_mesh_copy / "shop/models/schema.yml"
    schema.write_text(schema.read_text().replace("data_type: decimal(10,2)", "data_type: double"))
    sql = plain_mesh_copy / "shop/models/orders_v2.sql"
    sql.write_text(sql.read_text().replace("cast(amount as decimal(10, 2))", "cast(amount as double)"))
    assert run_mesh("stitch", "shop", cwd=plain_mesh_copy).returncode == 0
    result = run_mesh("check", "--no-sqlfluff", "--contracts-from", str(baseline), "shop", cwd=plain_mesh_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [x for x in result.stdout.splitlines() if "GOV301" in x]
    assert "shop.orders.v2: column 'amount' type changed decimal(10,2) -> double" in line
    assert "affected: audit.audited_orders (selects 'amount'), billing.invoices (selects 'amount'), " \
           "reporting.order_summary (selects 'amount')" in line  # fmt: skip
    # a product version gone from the mesh is breaking for whoever read it
    gone = yaml.safe_load((baseline / "shop" / f"{V2}.odcs.yaml").read_text())
    gone["name"], gone["id"] = "shop.orders.v3", "shop-orders-v3"
    (baseline / "shop/shop.orders.v3.odcs.yaml").write_text(yaml.safe_dump(gone))
    result = run_mesh("check", "--no-sqlfluff", "--contracts-from", str(baseline), "shop", cwd=plain_mesh_copy)
    assert "shop.orders.v3: the product version is gone" in result.stdout, result.stdout
    # a baseline that is not ODCS: one located error, exit 2, no traceback
    (baseline / "shop/broken.odcs.yaml").write_text("apiVersion: v3.2.0\nkind: DataContract\nid: x\nversion: 1\n")
    result = run_mesh("check", "--contracts-from", str(baseline), cwd=plain_mesh_copy)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "broken.odcs.yaml:4: not a valid ODCS v3 contract: version: 1 is not of type 'string'" in result.stderr


@pytest.fixture(scope="session")
def datacontract() -> Path:
    """datacontract-cli in its own environment (`make test` installs it in .venv-datacontract)."""
    program = Path(os.environ.get("MESH_DATACONTRACT") or REPO / ".venv-datacontract/bin/datacontract")
    if not program.is_file():
        if os.environ.get("MESH_TESTS_REQUIRE_DATACONTRACT") == "1":
            pytest.fail(f"datacontract-cli is not installed at {program}: `make test` installs it")
        pytest.skip("datacontract-cli is not installed (`make test` installs it in .venv-datacontract)")
    return program


def test_datacontract_lints_every_contract_and_tests_releases_catching_a_planted_bad_row(
    plain_mesh_copy: Path, datacontract: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "MESH_DATACONTRACT": str(datacontract)}
    for folder in releases(plain_mesh_copy):
        lint = subprocess.run([str(datacontract), "lint", "--no-inline-references", odcs.CONTRACT_FILE], cwd=folder,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert lint.returncode == 0, lint.stdout + lint.stderr
    clean = run_command(["mesh", "check", "--no-sqlfluff", "--datacontract", "shop"], plain_mesh_copy, env)
    assert "GOV107" not in clean.stdout, clean.stdout + clean.stderr
    # a check only the contract makes (`meta.odcs_quality`, which dbt does not run) and a test dbt runs on
    # some rows (its `where` becomes the same rows' SQL check); then a planted row breaks the contract's
    # own check, and a status outside the test's rows breaks nothing
    schema = plain_mesh_copy / "shop/models/schema.yml"
    text = schema.read_text().replace(
        """        description: Order total in EUR.
""",
        """        description: Order total in EUR.
        meta:
          odcs_quality:
            - {type: sql, description: every order has a positive amount, mustBe: 0,
               query: "SELECT COUNT(*) FROM orders WHERE amount <= 0"}
""",
    )
    text = text.replace("""        description: Order status.
        data_type: varchar
""", """        description: Order status.
        data_type: varchar
        data_tests:
          - accepted_values:
              arguments: {values: [completed, returned]}
              config: {where: "order_id < 3"}
""")  # fmt: skip
    schema.write_text(text)
    sql = plain_mesh_copy / "shop/models/orders_v2.sql"
    sql.write_text(sql.read_text().replace("(3, 11, 'completed', 7.25)", "(3, 11, 'lost', 0.0)"))
    built = run_mesh("build", "shop", cwd=plain_mesh_copy)
    assert built.returncode == 0, built.stdout + built.stderr
    current = json.loads((plain_mesh_copy / "exchange/products/shop/orders/v2/current.json").read_text())
    contract = yaml.safe_load((plain_mesh_copy / "exchange/products/shop/orders/v2/releases" / current["release_id"]
                               / odcs.CONTRACT_FILE).read_text())  # fmt: skip
    status = next(p for p in contract["schema"][0]["properties"] if p["name"] == "status")
    assert status["quality"][0]["type"] == "sql" and "WHERE (order_id < 3) AND \"status\" NOT IN" in (
        status["quality"][0]["query"])  # fmt: skip
    result = run_command(["mesh", "check", "--no-sqlfluff", "--datacontract", "shop"], plain_mesh_copy, env)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [x for x in result.stdout.splitlines() if "GOV107" in x]
    assert line.startswith("  ERROR GOV107 product-data-contract: shop.orders.v2: every order has a positive amount"), (
        line
    )
    assert "status" not in line
    # a release file changed after it was published is a finding of its own, and the others are still tested
    data = plain_mesh_copy / "exchange/products/shop/orders/v1/releases"
    (v1,) = [p for p in data.glob("*/data.parquet") if p.parent.name == json.loads(
        (data.parent / "current.json").read_text())["release_id"]]  # fmt: skip
    v1.chmod(0o644)
    raw = bytearray(v1.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    v1.write_bytes(bytes(raw))
    tampered = run_command(["mesh", "check", "--no-sqlfluff", "--datacontract", "shop"], plain_mesh_copy, env)
    found = [x for x in tampered.stdout.splitlines() if "GOV107" in x]
    assert any("shop.orders.v1: the release cannot be tested" in x and "SHA-256" in x for x in found), found
    assert any("shop.orders.v2: every order has a positive amount" in x for x in found), found
    # without datacontract-cli: one clear error naming the way to install it
    bare = {k: v for k, v in env.items() if k != "MESH_DATACONTRACT"}
    bare["PATH"] = "/usr/bin:/bin"
    missing = run_command(["mesh", "check", "--datacontract"], plain_mesh_copy, bare)
    assert missing.returncode == 2 and "datacontract-cli is not installed" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)
