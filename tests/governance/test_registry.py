"""The registry of one check: built-in rules, the mesh's plugins and each domain's own (no dbt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh_tools.core.config import DomainGovernance, GovernanceConfig
from mesh_tools.core.errors import ConfigError
from mesh_tools.governance.registry import BUILTIN, Registry
from mesh_tools.governance.testing import MeshSpec, check_fails, run_rule


def plugin(code: str, name: str = "every-model", body: str = "") -> str:
    """A plugin declaring one rule that flags every model of every domain."""
    return (
        "from mesh_tools.governance.rule import Finding, rule\n"
        f"{body}\n"
        f"@rule('{code}', '{name}', severity='warn')\n"
        "def flag(ctx):\n"
        "    '''Flags every model.\n\n    Fix:\n        None.\n    '''\n"
        "    for domain in ctx.manifests:\n"
        "        for node in ctx.nodes(domain):\n"
        "            yield ctx.finding(domain, node, f'{node.name} flagged')\n"
    )


@pytest.fixture
def mesh(tmp_path: Path) -> MeshSpec:
    spec = MeshSpec(root=tmp_path)
    spec.domain("crm").model("customers")
    spec.domain("ads", upstreams=["crm"]).model("audience", refs=["crm.customers"])
    return spec


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_builtin_rules_are_collected_once_and_immutable():
    assert len(BUILTIN) == 22 and list(Registry()) == sorted(BUILTIN)
    with pytest.raises(TypeError):
        BUILTIN["ACME001"] = BUILTIN["GOV101"]  # type: ignore[index]
    assert all(Registry().owners(code) is None for code in BUILTIN)


def test_a_mesh_plugin_loads_in_every_check_of_one_process(mesh: MeshSpec, tmp_path: Path):
    write(tmp_path / "company_rules.py", plugin("ACME001"))
    mesh.governance = GovernanceConfig(plugins=["company_rules.py"])
    first, second = Registry.for_mesh(mesh.mesh()), Registry.for_mesh(mesh.mesh())
    for registry in (first, second):
        assert "ACME001" in registry and registry.owners("ACME001") is None
        assert sorted(f.message for f in run_rule(mesh, registry["ACME001"])) == [
            "audience flagged",
            "customers flagged",
        ]
    assert "ACME001" not in Registry()  # nothing leaks into later checks


def test_a_domain_plugin_judges_that_domain_only(mesh: MeshSpec, tmp_path: Path):
    write(tmp_path / "ads" / "rules" / "ads_rules.py", plugin("ADS001"))
    mesh.domains["ads"].governance = DomainGovernance(plugins=["rules/ads_rules.py"])
    registry = Registry.for_mesh(mesh.mesh())
    assert registry.owners("ADS001") == {"ads"}
    assert registry.judges("ADS001", "ads") and not registry.judges("ADS001", "crm")
    assert registry.judges("GOV101", "crm")
    assert "ads/mesh_domain.yml: plugin 'rules/ads_rules.py'" in registry.origin("ADS001")


def test_one_plugin_named_by_two_domains_judges_both(mesh: MeshSpec, tmp_path: Path):
    write(tmp_path / "shared.py", plugin("ACME002"))
    mesh.domain("billing").model("invoices")
    for name in ("crm", "ads"):
        mesh.domains[name].governance = DomainGovernance(plugins=["../shared.py"])
    registry = Registry.for_mesh(mesh.mesh())
    assert registry.owners("ACME002") == {"crm", "ads"}
    assert not registry.judges("ACME002", "billing")


def test_a_module_plugin_of_a_domain_stays_that_domains(mesh: MeshSpec, tmp_path: Path, monkeypatch):
    write(tmp_path / "site" / "acme_ads_rules.py", plugin("ADS002"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    mesh.domains["ads"].governance = DomainGovernance(plugins=["acme_ads_rules"])
    for _ in range(2):  # imported once by Python; attributed again by every check
        registry = Registry.for_mesh(mesh.mesh())
        assert registry.owners("ADS002") == {"ads"}


def test_the_mesh_and_a_domain_naming_one_plugin_make_it_everyones(mesh: MeshSpec, tmp_path: Path):
    write(tmp_path / "company_rules.py", plugin("ACME001"))
    mesh.governance = GovernanceConfig(plugins=["company_rules.py"])
    mesh.domains["ads"].governance = DomainGovernance(plugins=["../company_rules.py"])
    assert Registry.for_mesh(mesh.mesh()).owners("ACME001") is None


def test_two_rules_with_one_code_are_one_clear_error(mesh: MeshSpec, tmp_path: Path):
    write(tmp_path / "company_rules.py", plugin("ACME001", "no-x"))
    write(tmp_path / "ads" / "ads_rules.py", plugin("ACME001", "no-y"))
    mesh.governance = GovernanceConfig(plugins=["company_rules.py"])
    mesh.domains["ads"].governance = DomainGovernance(plugins=["ads_rules.py"])
    with pytest.raises(ConfigError) as raised:
        Registry.for_mesh(mesh.mesh())
    message = str(raised.value)
    assert "ads/mesh_domain.yml: plugin 'ads_rules.py': rule code ACME001 is registered twice: 'no-x'" in message
    assert "mesh.yml: plugin 'company_rules.py'" in message and "'no-y'" in message


def test_a_plugin_may_not_take_a_builtin_code(mesh: MeshSpec, tmp_path: Path):
    write(tmp_path / "company_rules.py", plugin("GOV101", "mine"))
    mesh.governance = GovernanceConfig(plugins=["company_rules.py"])
    with pytest.raises(
        ConfigError, match="rule code GOV101 is registered twice: 'product-contract-enforced' \\(built in\\)"
    ):
        Registry.for_mesh(mesh.mesh())


def test_a_builtin_rule_imported_by_a_plugin_stays_builtin(mesh: MeshSpec, tmp_path: Path):
    body = "from mesh_tools.governance.rules.products import owner  # noqa: F401\n"
    write(tmp_path / "ads" / "ads_rules.py", plugin("ADS003", body=body))
    mesh.domains["ads"].governance = DomainGovernance(plugins=["ads_rules.py"])
    registry = Registry.for_mesh(mesh.mesh())
    assert registry.owners("ADS003") == {"ads"} and registry.owners("GOV104") is None


def test_a_broken_plugin_is_a_located_config_error(mesh: MeshSpec, tmp_path: Path):
    write(tmp_path / "ads" / "ads_rules.py", "raise RuntimeError('boom')\n")
    mesh.domains["ads"].governance = DomainGovernance(plugins=["ads_rules.py", "missing.py"])
    with pytest.raises(ConfigError, match="ads/mesh_domain.yml: cannot load rules plugin 'ads_rules.py': boom"):
        Registry.for_mesh(mesh.mesh())


def test_a_plugin_rule_is_tested_like_a_builtin(mesh: MeshSpec, tmp_path: Path):
    write(tmp_path / "company_rules.py", plugin("ACME001"))
    mesh.governance = GovernanceConfig(plugins=["company_rules.py"])
    rule = Registry.for_mesh(mesh.mesh())["ACME001"]
    assert len(check_fails(mesh, rule)) == 2
