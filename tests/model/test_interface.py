"""The published interface is a model type: written from a manifest, merged by a promotion, read back validated and
bounded; a malformed one (anyone who can write the exchange may write one) is one error naming the file, the place
in it and what to do, whether stitching or a promotion reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mesh_tools.core.errors import ArtifactError
from mesh_tools.model import interface as interface_module
from mesh_tools.model.interface import PublishedInterface, interface_schema, schema_text
from tests.stitch.test_stitch_from_release import GROUP, _node, _read, _release, _small_mesh

FIX = "Publish shop again."


def _manifest() -> dict[str, Any]:
    """shop's manifest: a public versioned model with its SQL, a public seed, a protected model, and a stub of
    another project's product (which shop reads, never offers)."""
    orders = _node("orders", ["id"], version=2, latest_version=2, raw_code="select 1", compiled_code="select 1")
    orders["unique_id"] = "model.shop.orders.v2"
    seed = {"unique_id": "seed.shop.codes", "resource_type": "seed", "package_name": "shop", "name": "codes",
            "config": {"access": "public"}, "columns": {}}  # fmt: skip
    private = _node("internal", ["id"], access="protected", config={"access": "protected"})
    stub = {**_node("customers", ["id"]), "unique_id": "model.crm.customers", "package_name": "crm"}
    nodes = {n["unique_id"]: n for n in (orders, seed, private, stub)}
    metadata = {"project_name": "shop", "dbt_version": "1.11.16", "adapter_type": "duckdb", "invocation_id": "i-1",
                "generated_at": "2026-12-01T00:00:00Z", "dbt_schema_version": "v12", "env": {"SECRET": "x"}}  # fmt: skip
    return {"metadata": metadata, "nodes": nodes, "groups": {GROUP["unique_id"]: GROUP},
            "sources": {"source.shop.raw.orders": {}}, "macros": {"macro.shop.m": {}}}  # fmt: skip


def test_written_from_a_manifest_it_offers_the_public_products_without_their_sql_and_reads_back_the_same() -> None:
    published = PublishedInterface.of_manifest(_manifest(), "shop")
    assert sorted(published.nodes) == ["model.shop.orders.v2", "seed.shop.codes"]
    data = json.loads(published.to_bytes())
    assert set(data) == {"metadata", "nodes", "groups", "sources", "macros"}
    assert data["sources"] == data["macros"] == {} and list(data["groups"]) == ["group.shop.shop_team"]
    assert "env" not in data["metadata"] and data["metadata"]["project_name"] == "shop"
    orders = data["nodes"]["model.shop.orders.v2"]
    assert "raw_code" not in orders and "compiled_code" not in orders
    assert orders["version"] == 2 and orders["description"] == "orders"  # every field as dbt wrote it
    assert "access" not in data["nodes"]["seed.shop.codes"]  # nothing added that dbt did not write
    again = PublishedInterface.parse(published.to_bytes(), "shop", "interfaces/shop/prod.json", FIX)
    assert again.as_json() == data


def test_a_promotion_takes_the_promoted_nodes_and_keeps_the_targets_others() -> None:
    dev = PublishedInterface.of_manifest(_manifest(), "shop")
    legacy = _node("legacy", ["id"])
    prod = PublishedInterface.model_validate({"metadata": {"project_name": "shop"}, "nodes": {
        "model.shop.legacy": legacy, "seed.shop.codes": {**dev.nodes["seed.shop.codes"].model_dump(), "columns": {
            "old": {"name": "old"}}}}, "groups": {"group.shop.old": {"name": "old"}}})  # fmt: skip
    merged = dev.promoted(prod, ["model.shop.orders.v2", "model.shop.gone"]).as_json()
    assert sorted(merged["nodes"]) == ["model.shop.legacy", "model.shop.orders.v2", "seed.shop.codes"]
    assert merged["nodes"]["seed.shop.codes"]["columns"] == {"old": {"name": "old"}}  # not promoted: prod's own
    assert sorted(merged["groups"]) == ["group.shop.old", "group.shop.shop_team"]
    assert merged["metadata"] == {"project_name": "shop"}  # the target's
    first = dev.promoted(None, ["seed.shop.codes"]).as_json()  # the target had none yet
    assert list(first["nodes"]) == ["seed.shop.codes"] and first["metadata"]["invocation_id"] == "i-1"


def test_a_promotion_reads_the_envelope_and_copies_the_nodes_as_they_are() -> None:
    """A promotion moves what dev published to prod without interpreting a node (its consumers' stitch reads them
    validated); an interface that is not even an envelope of nodes is refused naming the file."""
    from mesh_tools.model.interface import InterfaceShape

    dev = InterfaceShape.parse(b'{"metadata": {}, "nodes": {"v2": {"from": "dev"}}}', "shop", "dev.json", FIX)
    prod = InterfaceShape.parse(b'{"nodes": {"v1": {"from": "prod"}}, "groups": {}}', "shop", "prod.json", FIX)
    assert dev.promoted(prod, ["v2"]).as_json()["nodes"] == {"v1": {"from": "prod"}, "v2": {"from": "dev"}}
    with pytest.raises(ArtifactError, match=r"^dev.json: the interface shop published is not one the mesh wrote: "
                                            r"at nodes.v2: Input should be a valid dictionary. Publish shop again.$"):  # fmt: skip
        InterfaceShape.parse(b'{"nodes": {"v2": "dev"}}', "shop", "dev.json", FIX)


def _good() -> dict[str, Any]:
    return json.loads(PublishedInterface.of_manifest(_manifest(), "shop").to_bytes())


def _with(edit: Any) -> bytes:
    data = _good()
    edit(data)
    return json.dumps(data).encode()


MALFORMED = {
    "not JSON": (b'{"nodes": ', "is no JSON"),
    "a list": (b"[]", "at the top: Input should be a valid dictionary"),
    "nodes a list": (_with(lambda d: d.update(nodes=[])), "at nodes: Input should be a valid dictionary"),
    "a node without its name": (
        _with(lambda d: d["nodes"]["model.shop.orders.v2"].pop("name")),
        "at nodes.model.shop.orders.v2.name: Field required",
    ),
    "columns a list": (
        _with(lambda d: d["nodes"]["model.shop.orders.v2"].update(columns=["id"])),
        "at nodes.model.shop.orders.v2.columns: Input should be a valid dictionary",
    ),
    "a source offered": (
        _with(lambda d: d["nodes"]["model.shop.orders.v2"].update(resource_type="source")),
        "at nodes.model.shop.orders.v2.resource_type: Input should be 'model', 'seed' or 'snapshot'",
    ),
    "filed under another id": (
        _with(lambda d: d["nodes"].update({"model.shop.other": d["nodes"].pop("model.shop.orders.v2")})),
        "nodes.model.shop.other holds the node model.shop.orders.v2",
    ),
    "another project's node": (
        _with(lambda d: d["nodes"]["model.shop.orders.v2"].update(package_name="crm")),
        "nodes.model.shop.orders.v2 is a node of 'crm', not of 'shop'",
    ),
    "another project's interface": (
        _with(lambda d: d["metadata"].update(project_name="crm")),
        "metadata.project_name is 'crm', not 'shop'",
    ),
    "nested too deep": (b"[" * 100_000 + b"]" * 100_000, "is no JSON (it is nested deeper than any file"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_interface_is_one_error_naming_the_file_the_place_and_the_fix(case: str) -> None:
    raw, said = MALFORMED[case]
    with pytest.raises(ArtifactError) as refused:
        PublishedInterface.parse(raw, "shop", "s3://bucket/interfaces/shop/prod.json", FIX)
    message = str(refused.value)
    assert message.startswith("s3://bucket/interfaces/shop/prod.json: the interface shop published ")
    assert said in message and message.endswith(FIX)


def test_one_over_the_limit_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interface_module, "INTERFACE_LIMIT", 4096)
    path = tmp_path / "prod.json"
    path.write_bytes(PublishedInterface.of_manifest(_manifest(), "shop").to_bytes() + b" " * 5000)
    with pytest.raises(ArtifactError, match=r"prod.json: the interface shop published is [\d,]+ bytes, over the "
                                             r"limit of 4,096. Publish shop again.$"):  # fmt: skip
        PublishedInterface.read(path, "shop", FIX)


def test_stitching_a_malformed_interface_names_it_and_what_to_do(tmp_path: Path) -> None:
    """The finding: a column of the published interface that is no mapping was dropped without a word (the product
    read as one without that column); now the read of the interface is refused, naming the file and the place."""
    root = _small_mesh(tmp_path, None)
    _release(tmp_path, _node("orders", ["id"]), interface=["orders"])
    path = root / "exchange/interfaces/shop/prod.json"
    data = json.loads(path.read_text())
    data["nodes"]["model.shop.orders"]["columns"] = {"id": "integer"}
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError) as refused:
        _read(root)
    assert str(refused.value).endswith(
        "/exchange/interfaces/shop/prod.json: the interface shop published is not one the mesh wrote: at "
        "nodes.model.shop.orders.columns.id: Input should be a valid dictionary. The interface shop published in "
        "the exchange is unusable: publish shop again."
    )


def test_its_schema_can_be_exported_and_the_documented_one_is_current() -> None:
    documented = Path(__file__).resolve().parents[2] / "docs" / "interface.schema.json"
    assert documented.read_text() == schema_text(), (
        "regenerate: python -c 'from mesh_tools.model.interface import schema_text; print(schema_text(), end=\"\")' "
        "> docs/interface.schema.json"
    )
    schema = interface_schema()
    assert schema["title"] == "Published interface"
    assert set(schema["properties"]) == {"metadata", "nodes", "groups", "sources", "macros"}
    node = schema["$defs"]["InterfaceNode"]
    assert set(node["required"]) == {"unique_id", "resource_type", "package_name", "name"}
    json.dumps(schema)  # plain JSON, for docs and other tools
