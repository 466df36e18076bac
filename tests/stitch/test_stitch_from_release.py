"""A consumer reads the letter, not the sender's draft: its stub of a product is made from the release it reads.

A producer's working copy ahead of its release (its YAML edited and parsed, not built; a build refused at the
gate after a contract change) changes nothing for its consumers until it publishes, and a consumer's CI in a
fresh clone of a monorepo (every project folder there, none built) builds from the exchange alone.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from tests import s3server
from tests.helpers import FIXTURES, copy_tree, run_dbt, run_mesh, written_files
from tests.store.checkouts import Store, mesh, ok

CLEAN_FIXTURE = FIXTURES / "foreign_meshes" / "ci_fresh_clone"


def current_descriptor(exchange: Path, product: str) -> dict[str, Any]:
    """The descriptor of the current release of ``product`` (``project/model/vN``) in a folder exchange."""
    folder = exchange / "products" / product
    release_id = json.loads((folder / "current.json").read_text())["release_id"]
    return json.loads((folder / "releases" / release_id / "release.json").read_text())


def stub_columns(consumer: Path, upstream: str, model: str, version: str | None) -> list[tuple[str, str]]:
    """(name, data_type) of the stub's columns for one version of an upstream product, as its YAML declares them."""
    doc = yaml.safe_load((consumer / "dbt_packages" / upstream / "models" / "_public_models.yml").read_text())
    (entry,) = [m for m in doc["models"] if m["name"] == model]
    if version is not None:
        (entry,) = [v for v in entry["versions"] if str(v["v"]) == version]
    return [(c["name"], c["data_type"]) for c in entry["columns"]]


def released_columns(descriptor: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["data_type"]) for c in descriptor["contract"]["columns"]]


def rows(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(database), read_only=True) as con:
        return sorted(con.execute(sql).fetchall())


def release_rows(descriptor: dict[str, Any], folder: Path, sql: str) -> list[tuple[Any, ...]]:
    """``sql`` over the release's own data file (``{data}``), read with DuckDB outside any domain."""
    data = folder / "products" / descriptor["product"].replace(".", "/") / "releases"
    path = data / descriptor["release_id"] / "data.parquet"
    with duckdb.connect() as con:
        return sorted(con.execute(sql.format(data=f"read_parquet('{path}')")).fetchall())


SUMMARY = "select status, count(*), sum(amount) from {data} group by status"


def _consumer_reads_the_release(root: Path, explained: str) -> None:
    """reporting built against shop's current releases: stub columns and rows are the release's."""
    exchange = root / "exchange"
    for version in ("1", "2"):
        descriptor = current_descriptor(exchange, f"shop/orders/v{version}")
        assert stub_columns(root / "reporting", "shop", "orders", version) == released_columns(descriptor)
    v2 = current_descriptor(exchange, "shop/orders/v2")
    stub = (root / "reporting/dbt_packages/shop/models/orders_v2.sql").read_text()
    assert f"releases/{v2['release_id']}/data.parquet" in stub
    built = rows(root / "reporting/reporting.duckdb", "select status, orders, revenue from main.order_summary")
    assert built == release_rows(v2, exchange, SUMMARY)
    assert f"differs from release {v2['release_id']} of shop.orders.v2" in explained


@pytest.mark.slow
def test_a_producers_yaml_edited_and_parsed_not_built_changes_nothing_for_its_consumer(plain_mesh_copy: Path) -> None:
    """shop renames a column in its YAML and parses (its target/manifest.json now says `state`); reporting still
    reads the release it was given, whose column is `status`, and says that shop's working copy is ahead."""
    root = plain_mesh_copy
    schema = root / "shop/models/schema.yml"
    schema.write_text(schema.read_text().replace("      - name: status\n", "      - name: state\n"))
    ok(run_dbt("parse", "--quiet", cwd=root / "shop"))
    parsed = json.loads((root / "shop/target/manifest.json").read_text())
    assert "state" in parsed["nodes"]["model.shop.orders.v2"]["columns"]  # the working copy is ahead

    built = run_mesh("build", "reporting", "--explain", cwd=root)
    out = built.stdout + built.stderr
    assert built.returncode == 0, out
    _consumer_reads_the_release(root, out)
    assert "stitched: shop's working copy (shop/target/manifest.json) differs from release" in out
    assert "(columns not released: state; released columns it no longer has: status)" in out

    doctor = run_mesh("doctor", cwd=root)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "[warning] reporting: shop's working copy (shop/target/manifest.json) differs from release" in doctor.stdout
    assert "`mesh build shop` releases shop's working copy" in doctor.stdout


@pytest.mark.slow
def test_a_build_refused_at_the_gate_after_a_contract_change_changes_nothing_for_its_consumer(
    plain_mesh_copy: Path,
) -> None:
    """shop changes orders' contract (status becomes state) and its build fails a test: nothing is published, its
    target/manifest.json holds the new contract; reporting builds against the release it reads, as it was."""
    root = plain_mesh_copy
    before = {v: current_descriptor(root / "exchange", f"shop/orders/v{v}")["release_id"] for v in ("1", "2")}
    schema = root / "shop/models/schema.yml"
    text = schema.read_text().replace("      - name: status\n", "      - name: state\n")
    schema.write_text(text.replace("data_tests: [unique, not_null]", "data_tests: [unique, not_null, {accepted_values: "
                                   "{arguments: {values: [9]}}}]"))  # fmt: skip
    for sql, old, new in (
        ("orders_v1.sql", "customer_id, status)", "customer_id, state)"),
        ("orders_v2.sql", "    status,", "    status as state,"),
    ):
        model = root / "shop/models" / sql
        model.write_text(model.read_text().replace(old, new, 1))
    refused = run_mesh("build", "shop", cwd=root)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    after = {v: current_descriptor(root / "exchange", f"shop/orders/v{v}")["release_id"] for v in ("1", "2")}
    assert after == before  # refused at the gate: the releases stay current
    working = json.loads((root / "shop/target/manifest.json").read_text())["nodes"]["model.shop.orders.v2"]
    assert "state" in working["columns"] and "status" not in working["columns"]

    built = run_mesh("build", "reporting", "--explain", cwd=root)
    out = built.stdout + built.stderr
    assert built.returncode == 0, out
    _consumer_reads_the_release(root, out)


# -- one domain's CI from a fresh clone (tests/fixtures/foreign_meshes/ci_fresh_clone)


def _independent_monthly_revenue() -> list[tuple[str, int, Decimal]]:
    """Completed orders per month, from the raw CSV with Python alone."""
    months: dict[str, list[Decimal]] = defaultdict(list)
    with open(CLEAN_FIXTURE / "projects/sales/seeds/raw_orders.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["state"] == "completed":
                months[row["ordered_on"][:7] + "-01"].append(Decimal(row["total_cents"]) / 100)
    return sorted((m, len(a), sum(a, Decimal(0)).quantize(Decimal("0.01"))) for m, a in months.items())


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.skipif(not s3server.available(), reason="needs the s3 extra and moto[server]")
def test_one_domains_ci_in_a_fresh_clone_builds_from_the_exchange_alone(
    s3: s3server.Server,
    tmp_path: Path,
) -> None:
    store = Store(s3)
    sales_job = copy_tree(CLEAN_FIXTURE, tmp_path / "sales-job")  # sales' own CI publishes its release
    ok(mesh(store, sales_job, "build", "sales"))
    ci = copy_tree(CLEAN_FIXTURE, tmp_path / "finance-job")  # a fresh clone: every folder, nothing built
    untouched = written_files(ci / "projects/sales")

    built = mesh(store, ci, "build", "finance")
    out = built.stdout + built.stderr
    assert built.returncode == 0, out
    assert "working copy" not in out  # every product it reads has a release: nothing from a draft
    assert written_files(ci / "projects/sales") == untouched  # not built, not parsed: no target/, no .duckdb
    got = rows(ci / "projects/finance/finance.duckdb", "select strftime(month, '%Y-%m-%d'), orders, revenue "
               "from main.monthly_revenue")  # fmt: skip
    assert got == _independent_monthly_revenue()
    descriptor = store.json(
        f"products/sales/orders/unversioned/releases/{store.current('products/sales/orders/unversioned')}/release.json"
    )
    assert stub_columns(ci / "projects/finance", "sales", "orders", None) == released_columns(descriptor)

    # a ref to what sales keeps protected is refused before dbt runs, against what finance reads
    (ci / "projects/finance/models/peek.sql").write_text("select * from {{ ref('sales', 'stg_orders') }}\n")
    refused = mesh(store, ci, "build", "finance")
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1, said
    assert "models/peek.sql:1: ref('sales', 'stg_orders'): project 'sales' has no model 'stg_orders'." in said
    assert "Public models of sales: orders." in said
    assert written_files(ci / "projects/sales") == untouched


# -- what a stitch takes from where, without dbt: hand-written releases in a folder exchange


def _node(name: str, columns: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "unique_id": f"model.shop.{name}", "resource_type": "model", "package_name": "shop", "name": name,
        "version": None, "latest_version": None, "access": "public", "group": "shop_team", "description": name,
        "columns": {c: {"name": c, "data_type": "integer", "description": "", "meta": {}, "constraints": []}
                    for c in columns},
        "contract": {"enforced": True}, "config": {"access": "public", "contract": {"enforced": True}}, **extra,
    }  # fmt: skip


GROUP = {"name": "shop_team", "package_name": "shop", "unique_id": "group.shop.shop_team",
         "owner": {"name": "Shop Team", "email": "shop@example.test"}}  # fmt: skip


def _small_mesh(root: Path, working: list[dict[str, Any]] | None) -> Path:
    """shop and reporting (which declares shop) as files only; shop's working manifest holds ``working``."""
    for name in ("shop", "reporting"):
        (root / name).mkdir(parents=True)
        (root / name / "dbt_project.yml").write_text(
            f"name: {name}\nversion: '1.0'\nconfig-version: 2\nprofile: {name}\n"
        )
        (root / name / "profiles.yml").write_text(
            f"{name}:\n  target: dev\n  outputs:\n    dev: {{type: duckdb, path: {name}.duckdb}}\n"
        )
    (root / "reporting/dependencies.yml").write_text("projects:\n  - name: shop\n")
    if working is not None:
        (root / "shop/target").mkdir()
        nodes = {n["unique_id"]: n for n in working}
        data = {"metadata": {"project_name": "shop"}, "nodes": nodes, "groups": {"group.shop.shop_team": GROUP}}
        (root / "shop/target/manifest.json").write_text(json.dumps(data))
    return root


def _release(root: Path, node: dict[str, Any] | None, model: str = "orders", columns: tuple[str, ...] = ("id",),
             interface: list[str] | None = None) -> str:  # fmt: skip
    """A current release of shop.<model> (no data file: only its node matters here) holding ``node``."""
    from mesh_tools.model.release import Contract, ReleaseDescriptor
    from mesh_tools.store.exchange import new_release_id

    release_id = new_release_id(model)
    contract = Contract.of({"contract": {"enforced": True}, "columns": {c: {"name": c, "data_type": "integer"}
                                                                       for c in columns}})  # fmt: skip
    descriptor = ReleaseDescriptor(
        product=f"shop.{model}", project="shop", model=model, node=f"model.shop.{model}", release_id=release_id,
        produced_at="2026-12-01T00:00:00+00:00", contract=contract, contract_hash=contract.fingerprint(),
        row_count=0, files=[], interface={"node": node, "group": GROUP} if node is not None else None,
    )  # fmt: skip
    product = root / "exchange/products/shop" / model / "unversioned"
    (product / "releases" / release_id).mkdir(parents=True)
    (product / "releases" / release_id / "release.json").write_text(descriptor.model_dump_json())
    (product / "current.json").write_text(json.dumps({"release_id": release_id}))
    if interface is not None:  # what shop's last publish offered
        nodes = {f"model.shop.{m}": _node(m, ["id"]) for m in interface}
        (root / "exchange/interfaces/shop").mkdir(parents=True, exist_ok=True)
        (root / "exchange/interfaces/shop/prod.json").write_text(
            json.dumps({"metadata": {"project_name": "shop"}, "nodes": nodes, "groups": {}})
        )
    return release_id


def _read(root: Path) -> Any:
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.stitch.plan import upstream_manifests

    mesh_ = load_mesh(root)
    return upstream_manifests(mesh_, mesh_.domains["reporting"])["shop"]


def test_the_stub_node_is_the_releases_and_a_product_without_one_is_read_from_the_working_copy_and_said(
    tmp_path: Path,
) -> None:
    private = {"access": "protected", "config": {"access": "protected"}}
    working = [_node("orders", ["id", "renamed"]), _node("fresh", ["id"]), _node("legacy", ["id"], **private),
               _node("secret", ["id"], **private)]  # fmt: skip
    root = _small_mesh(tmp_path, working)
    release_id = _release(tmp_path, _node("orders", ["id", "status"]), columns=("id", "status"),
                          interface=["orders", "legacy"])  # fmt: skip
    legacy = _release(tmp_path, _node("legacy", ["id"]), model="legacy")
    read = _read(root)
    columns = {n.name: sorted(n.columns) for n in read.for_consumer("reporting").public()}
    # orders and legacy from their releases (legacy is protected in the working copy only), fresh from the draft
    assert columns == {"orders": ["id", "status"], "legacy": ["id"], "fresh": ["id"]}
    assert (
        f"makes it protected: reporting reads release {legacy} of shop.legacy until shop publishes, then loses it"
        in (" | ".join(read.notes))
    )

    # a ref is judged against what reporting reads; one that fails there is explained by the working copy
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.stitch.plan import check_domain_refs

    (root / "reporting/models").mkdir()
    (root / "reporting/models/uses.sql").write_text(
        "select * from {{ ref('shop', 'legacy') }} join {{ ref('shop', 'secret') }} using (id)\n"
    )
    mesh_ = load_mesh(root)
    (problem,) = check_domain_refs(mesh_, mesh_.domains["reporting"], {"shop": read})
    assert (
        "reporting/models/uses.sql:1: ref('shop', 'secret'): 'secret' is a protected model of project 'shop'" in problem
    )
    assert read.releases["model.shop.orders"].descriptor.release_id == release_id
    assert "model.shop.fresh" not in read.releases
    notes = " | ".join(read.notes)
    assert "reporting reads shop.fresh from shop's working copy (" in notes
    assert "shop/target/manifest.json): it has no release in prod yet (publish it: `mesh build shop`)" in notes
    assert (
        f"differs from release {release_id} of shop.orders (columns not released: renamed; released columns " in notes
    )
    assert read.groups["shop_team"]["owner"]["email"] == "shop@example.test"


def test_a_withdrawn_product_an_old_release_and_a_restriction_in_the_working_copy(tmp_path: Path) -> None:
    # no working copy here (a fresh clone): shop's interface offers orders only; old_one has a release still
    root = _small_mesh(tmp_path, None)
    _release(tmp_path, None, columns=("id", "amount"), interface=["orders"])  # published before nodes were stored
    _release(tmp_path, _node("old_one", ["id"]), model="old_one")
    read = _read(root)
    (orders,) = read.public()  # old_one was withdrawn by shop's last publish
    assert (orders.name, sorted(orders.columns), orders.contract_enforced) == ("orders", ["amount", "id"], True)
    assert read.notes == []

    # the working copy restricts orders to audit: reporting loses it at once, a release never widens access
    (tmp_path / "shop/target").mkdir()
    restricted = _node("orders", ["id", "amount"], meta={"allowed_consumers": ["audit"]})
    (tmp_path / "shop/target/manifest.json").write_text(json.dumps(
        {"metadata": {"project_name": "shop"}, "nodes": {"model.shop.orders": restricted}}))  # fmt: skip
    assert _read(root).for_consumer("reporting").public() == []


def test_a_stored_node_that_names_another_product_or_is_too_big_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mesh_tools.core.errors import ArtifactError
    from mesh_tools.store import exchange as exchange_module

    root = _small_mesh(tmp_path, None)
    impostor = {**_node("orders", ["id"]), "unique_id": "model.shop.customers_internal", "name": "customers_internal"}
    _release(tmp_path, impostor, interface=["orders"])
    with pytest.raises(ArtifactError) as refused:
        _read(root)
    said = str(refused.value)
    assert "/release.json: the node stored with release r" in said
    assert (
        "is model.shop.customers_internal, not model.shop.orders. The release is not trustworthy (changed since "
        "shop published it): publish shop again (`mesh build shop` where it is built)." in said
    )

    _release(tmp_path, _node("orders", ["id"]))
    monkeypatch.setattr(exchange_module, "INTERFACE_LIMIT", 512)
    with pytest.raises(ArtifactError) as too_big:
        _read(root)
    assert "release descriptor is" in str(too_big.value) and "over the limit of 512" in str(too_big.value)


def _refusal(root: Path) -> str:
    from mesh_tools.core.errors import ArtifactError

    with pytest.raises(ArtifactError) as refused:
        _read(root)
    return str(refused.value)


def _edit(root: Path, release_id: str, edit: Any) -> Path:
    """``edit`` applied to the stored descriptor of a release of shop.orders, as anyone who can write it may."""
    path = root / "exchange/products/shop/orders/unversioned/releases" / release_id / "release.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def test_a_stored_node_that_is_not_its_releases_contract_is_refused_naming_the_release(tmp_path: Path) -> None:
    """The node stored with a release is checked against the descriptor it is stored in: an extra column (dbt's
    'enforced contract that failed' at build time otherwise), a type that is not the release's (SQL, here) or a
    contract that is not its contract_hash is one refusal located at that release.json, before dbt runs."""
    from mesh_tools.model.release import Contract

    root = _small_mesh(tmp_path, [_node("orders", ["id", "status"])])  # the producer's working copy is clean
    release_id = _release(tmp_path, _node("orders", ["id", "status"]), columns=("id", "status"))
    assert sorted(_read(root).nodes["model.shop.orders"].columns) == ["id", "status"]  # as published: read
    where = f"exchange/products/shop/orders/unversioned/releases/{release_id}/release.json: the node stored with "
    fix = ". The release is not trustworthy (changed since shop published it): publish shop again"
    hostile = "integer) as id, (select 1"

    def column(extra: str, data_type: str = "integer") -> Any:
        def edit(d: dict[str, Any]) -> None:
            d["interface"]["node"]["columns"][extra] = {"name": extra, "data_type": data_type, "constraints": []}

        return edit

    _edit(tmp_path, release_id, column("extra"))
    said = _refusal(root)
    assert where + f"release {release_id} is not the release's contract (columns the release does not have: " \
        f"extra){fix}" in said  # fmt: skip
    assert "shop/models" not in said and "schema.yml" not in said  # the producer's YAML is not what is wrong

    _edit(tmp_path, release_id, lambda d: d["interface"]["node"]["columns"].pop("extra"))
    _edit(tmp_path, release_id, column("id", hostile))
    said = _refusal(root)
    assert f"is not the release's contract (column types that are not the release's: id){fix}" in said
    assert hostile not in said

    # the descriptor's contract edited too, its hash not: refused; both with the hash made again: the type is SQL
    def contract(d: dict[str, Any]) -> None:
        d["contract"]["columns"][0]["data_type"] = hostile

    _edit(tmp_path, release_id, contract)
    assert "release.json: its contract does not match its contract_hash (sha256:" in _refusal(root)

    def rehash(d: dict[str, Any]) -> None:
        d["contract_hash"] = Contract.model_validate(d["contract"]).fingerprint()

    _edit(tmp_path, release_id, rehash)
    said = _refusal(root)
    assert where + f"release {release_id}: column 'id': data_type " in said and "is not a data type" in said
    assert fix in said


def test_what_a_stored_node_may_differ_in_from_its_contract() -> None:
    """Text (descriptions, meta, a constraint's name) is the stored node's own; what dbt checks or runs is not."""
    from mesh_tools.model.release import Contract

    def contract(**change: Any) -> Contract:
        column = {"name": "id", "data_type": "INTEGER", "description": "", "meta": {},
                  "constraints": [{"type": "not_null", "name": "nn"}]}  # fmt: skip
        node = {"contract": {"enforced": True}, "columns": {"id": {**column, **change.pop("column", {})}},
                "constraints": [{"type": "primary_key", "columns": ["id"]}], **change}  # fmt: skip
        return Contract.of(node)

    released = contract()
    planted = {"description": "{{ env_var('X') }}", "meta": {"n": 1}, "data_type": "integer",
               "constraints": [{"type": "not_null", "name": "{{ x }}"}]}  # fmt: skip
    assert released.differences(contract(column=planted)) == []
    assert released.differences(contract(column={"data_type": "bigint"})) == [
        "column types that are not the release's: id"
    ]
    assert released.differences(contract(column={"constraints": [{"type": "unique"}]})) == [
        "column constraints that are not the release's: id"
    ]
    assert released.differences(contract(constraints=[])) == ["model constraints that are not the release's"]
    assert released.differences(contract(contract={"enforced": False})) == [
        "contract not enforced, the release's is not"
    ]
    two = Contract.of({"columns": {"a": {"name": "a"}, "b": {"name": "b"}}})
    assert two.differences(Contract.of({"columns": {"b": {"name": "b"}, "a": {"name": "a"}}})) == [
        "its columns are in another order than the release's"
    ]
    assert two.differences(Contract.of({"columns": {"a": {"name": "a"}}})) == ["released columns it lacks: b"]
