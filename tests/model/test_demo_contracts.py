"""The demo mesh's products as ODCS contracts: every one valid against the standard's schema."""

from __future__ import annotations

from pathlib import Path

import yaml

from mesh_tools.model import odcs
from tests.helpers import Built, run_mesh


def test_every_demo_product_has_a_valid_contract_beside_its_release_and_in_the_export(
    demo_built: Built, tmp_path: Path
) -> None:
    assert demo_built.result.returncode == 0, demo_built.output
    beside = sorted((demo_built.root / "exchange/products").glob(f"*/*/*/releases/*/{odcs.CONTRACT_FILE}"))
    assert len(beside) >= 5
    for path in beside:
        contract = yaml.safe_load(path.read_text())
        assert odcs.schema_problems(contract) == [], path
        assert contract["customProperties"][0] == {"property": "releaseId", "value": path.parent.name,
                                                   "vendor": odcs.VENDOR}  # fmt: skip
    out = tmp_path / "contracts"
    result = run_mesh("contracts", "export", "-o", str(out), cwd=demo_built.root)
    assert result.returncode == 0, result.stdout + result.stderr
    exported = {
        p.name.removesuffix(odcs.CONTRACT_SUFFIX): yaml.safe_load(p.read_text()) for p in out.rglob("*.odcs.yaml")
    }
    products = {yaml.safe_load(p.read_text())["name"] for p in beside}
    assert set(exported) == products
    for name, contract in exported.items():
        assert odcs.schema_problems(contract) == [], name
        assert contract["servers"][0]["type"] == "local" and Path(contract["servers"][0]["path"]).is_file()
        assert all("logicalType" in p for p in contract["schema"][0]["properties"]), name
    # an SLO the model declares is the contract's latency SLA
    with_slo = [c for c in exported.values() if c.get("slaProperties")]
    assert with_slo and all(c["slaProperties"][0]["property"] == "latency" for c in with_slo)
