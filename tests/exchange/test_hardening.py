"""Hostile and broken input: each attack or fault ends in one clear error, and nothing is lost or replaced."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_command, run_dbt, run_mesh, written_files

PRODUCT = Path("exchange/products/shop/orders/v2")


def current_id(root: Path, product: Path = PRODUCT) -> str:
    return json.loads((root / product / "current.json").read_text())["release_id"]


def clear_error(result, code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert message in output, output
    assert "Traceback" not in output and "internal error" not in output, output


def test_docs_never_replaces_a_folder_it_did_not_write(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    shop_before = written_files(root / "shop")
    clear_error(run_mesh("docs", "-o", "shop", cwd=root), 2, "would write over domain 'shop'")
    clear_error(run_mesh("docs", "-o", "exchange", cwd=root), 2, "would write over the exchange")
    clear_error(run_mesh("docs", "-o", ".", cwd=root), 2, "would replace the folder holding the mesh")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("mine")
    clear_error(run_mesh("docs", "-o", "mine", cwd=root), 2, "was not written by `mesh docs`")
    assert (root / "mine" / "notes.txt").read_text() == "mine"
    assert written_files(root / "shop") == shop_before
    # its own folder, marked, is replaced run after run
    for _ in range(2):
        assert run_mesh("docs", "-o", "site2", cwd=root).returncode == 0
    assert (root / "site2" / ".mesh-output").is_file() and (root / "site2" / "index.html").is_file()
    # the same guard for the folder mesh.yml names
    (root / "mesh.yml").write_text("name: plain\ndocs:\n  path: .\n")
    clear_error(run_mesh("docs", cwd=root), 2, "would replace the folder holding the mesh")
    assert written_files(root / "shop") == shop_before and (root / ".git").exists() is False


def test_the_exchange_cannot_be_the_mesh_root_or_a_domain(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    for path, message in ((".", "is the mesh root or holds it"), ("shop/exchange", "overlaps domain 'shop'")):
        (root / "mesh.yml").write_text(f"name: plain\nexchange:\n  path: {path}\n")
        clear_error(run_mesh("build", cwd=root), 2, message)


def test_a_model_version_that_is_a_path_publishes_nothing(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    schema = root / "shop/models/schema.yml"
    odd = "      - v: '2/../../../billing/x/v2'\n        defined_in: orders_v2\n"
    text = schema.read_text().replace("      - v: 2\n", odd)
    schema.write_text(text.replace("latest_version: 2", "latest_version: '2/../../../billing/x/v2'"))
    before = written_files(root / "exchange")
    result = run_mesh("build", "shop", cwd=root)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "publish refused" in output and "cannot name a folder" in output, output
    assert "Traceback" not in output
    assert written_files(root / "exchange") - before <= {"log.jsonl"}, written_files(root / "exchange") - before


def test_a_forged_data_file_is_never_served(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    data = root / PRODUCT / "releases" / current_id(root) / "data.parquet"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes
    data.write_bytes(bytes(raw))
    clear_error(run_mesh("stitch", "reporting", cwd=root), 3, "does not match the SHA-256 its descriptor records")


def test_a_release_read_from_another_folder_is_refused(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    v1 = Path("exchange/products/shop/orders/v1")
    planted = "r20990101T000000000000Z-abcdef"
    shutil.copytree(root / v1 / "releases" / current_id(root, v1), root / PRODUCT / "releases" / planted)
    (root / PRODUCT / "current.json").write_text(json.dumps({"release_id": planted}))
    clear_error(run_mesh("stitch", "reporting", cwd=root), 3, "A release is read only from its own folder")
    (root / PRODUCT / "current.json").write_text(json.dumps({"release_id": "../../v1/releases/x"}))
    clear_error(run_mesh("stitch", "reporting", cwd=root), 3, "current-release pointer is corrupt")


def test_a_pin_that_is_a_path_is_refused(plain_mesh_copy: Path) -> None:
    (plain_mesh_copy / "reporting/mesh_domain.yml").write_text("pins:\n  shop.orders.v2: ../../v1/releases/x\n")
    result = run_mesh("build", "reporting", cwd=plain_mesh_copy)
    clear_error(result, 2, "reporting/mesh_domain.yml:2")
    assert "is not a release id" in result.stderr


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(10)
)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("reporting/dependencies.yml", BOMB, "reporting/dependencies.yml:"),
        ("reporting/dependencies.yml", "projects: " + "[" * 600 + "]" * 600 + "\n", "nested more than 64 levels"),
        ("reporting/dependencies.yml", b"projects:\n  - name: sh\xffop\n", "reporting/dependencies.yml:2: not UTF-8"),
        ("mesh.yml", "name: x\n" + "".join(f"key_{i}: {i}\n" for i in range(3000)), "and 2990 more problems"),
        ("reporting/dbt_project.yml", "name: '../../etc'\nprofile: reporting\n", "cannot name a folder"),
    ],
    ids=["alias-bomb", "deep", "binary", "many-unknown-keys", "name-is-a-path"],
)
def test_hostile_yaml_is_one_clear_error(plain_mesh: Path, file: str, content: str | bytes, message: str) -> None:
    path = plain_mesh / file
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = written_files(plain_mesh)
    # bounded in time and memory: a regression (a bomb expanded, a hang) fails in seconds, not after minutes
    result = run_command(["mesh", "ls"], plain_mesh, timeout=60, memory=3 * 2**30)
    clear_error(result, 2, message)
    assert written_files(plain_mesh) == before


def test_a_dangling_pointer_is_a_problem_in_status_and_health(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    assert run_mesh("status", cwd=root).returncode == 0
    (root / PRODUCT / "current.json").write_text(json.dumps({"release_id": "r20990101T000000000000Z-abcdef"}))
    status = run_mesh("status", cwd=root)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "PROBLEM   shop.orders.v2: " in status.stdout and "release descriptor missing" in status.stdout
    assert "@ None" not in status.stdout
    health = run_mesh("health", "--format", "json", "--fail-on", "never", cwd=root)
    report = json.loads(health.stdout)
    [orders] = [p for p in report["products"] if p["product"] == "shop.orders.v2"]
    assert orders["status"] == "failing"
    assert [p["kind"] for p in orders["problems"] if p["kind"] == "release_broken"] == ["release_broken"]
    assert run_mesh("docs", cwd=root).returncode == 0
    page = (root / "site/products/shop.orders.v2.html").read_text()
    assert "cannot be read: consumers cannot build on it" in page and "release descriptor missing" in page


@pytest.mark.parametrize(
    ("dbt_args", "message"),
    [
        (("run",), "was `run`, not `build`"),
        (("test",), "was `test`, not `build`"),
        (("build", "--empty"), "ran with --empty"),
        (("build", "--exclude", "resource_type:test"), "did not run in its last build (excluded or not selected)"),
    ],
    ids=["run", "test-alone", "empty", "exclude-tests"],
)
def test_the_gate_publishes_only_after_a_complete_build(plain_mesh_copy: Path, dbt_args: tuple, message: str) -> None:
    root = plain_mesh_copy
    before = current_id(root)
    built = run_dbt(*dbt_args, cwd=root / "shop")
    assert built.returncode == 0, built.stdout[-2000:]
    result = run_mesh("publish", "shop", cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout + result.stderr, result.stdout + result.stderr
    assert current_id(root) == before


def test_a_selective_build_publishes_only_the_products_it_built_and_tested(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    v1 = Path("exchange/products/shop/orders/v1")
    before_v1, before_v2 = current_id(root, v1), current_id(root)
    built = run_dbt("build", "--select", "orders", "--exclude", "orders.v1", cwd=root / "shop")
    assert built.returncode == 0, built.stdout[-2000:]
    result = run_mesh("publish", "shop", "--new-release", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "published shop.orders.v2 " in result.stdout and "shop.orders.v1" not in result.stdout, result.stdout
    assert current_id(root, v1) == before_v1  # not rebuilt: its release stays current
    assert current_id(root) != before_v2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"metadata": {}, "nodes": []}', "'nodes' is a list, not an object"),
        ('{"metadata": {}, "nodes": {"model.shop.x": 3}}', "'nodes.model.shop.x' is not an object"),
        ("[1, 2]", "the file holds a list, not an object"),
    ],
    ids=["nodes-list", "node-number", "top-level-list"],
)
def test_a_malformed_manifest_is_one_clear_error(plain_mesh_copy: Path, text: str, problem: str) -> None:
    (plain_mesh_copy / "shop/target/manifest.json").write_text(text)
    # a reader does not need it: `mesh check` judges a parse of shop's files, and says why
    checked = run_mesh("check", "--no-sqlfluff", "shop", cwd=plain_mesh_copy)
    assert checked.returncode in (0, 1), checked.stdout + checked.stderr
    assert "shop's manifest (shop/target/manifest.json) is not one dbt wrote" in checked.stderr
    result = run_mesh("stitch", "reporting", cwd=plain_mesh_copy)
    output = result.stdout + result.stderr
    assert result.returncode in (1, 3), output
    assert f"shop/target/manifest.json: not a dbt manifest: {problem}" in output, output
    assert "Traceback" not in output and "internal error" not in output, output


def test_a_model_file_that_is_not_utf8_is_named(plain_mesh_copy: Path) -> None:
    model = plain_mesh_copy / "shop/models/orders_v1.sql"
    model.write_bytes(model.read_bytes() + b"\n-- caf\xe9\n")
    before = current_id(plain_mesh_copy)
    result = run_mesh("build", "shop", cwd=plain_mesh_copy)
    clear_error(result, 1, "shop/models/orders_v1.sql:")
    assert "not UTF-8 text (byte 0xe9)" in result.stdout
    assert current_id(plain_mesh_copy) == before


# -- access and privacy, enforced where the data is written


def _count(db: Path, sql: str) -> tuple:
    import duckdb

    con = duckdb.connect(str(db), read_only=str(db) != ":memory:")
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def test_pii_reaches_in_clear_only_the_consumers_the_policy_names(plain_mesh_built) -> None:  # type: ignore[no-untyped-def]
    """shop.orders marks customer_id PII and allows audit: reporting and billing read it NULL, audit in clear."""
    from mesh_tools.store.exchange import Exchange

    root = plain_mesh_built.root
    assert plain_mesh_built.result.returncode == 0, plain_mesh_built.result.stdout
    for version in ("1", "2"):
        release = Exchange(root / "exchange").current("shop", "orders", version)  # every file's SHA-256 checked
        assert release is not None
        d = release.descriptor
        assert d.pii_columns == ["customer_id"]
        assert [(f.path, f.readers) for f in d.files] == [("data.parquet", None), ("data.pii.parquet", ["audit"])]
        shared, clear = (release.folder / f.path for f in d.files)
        rows = d.row_count
        assert rows > 0
        read = "select count(*), count(customer_id) from read_parquet('{}')"
        assert _count(Path(":memory:"), read.format(shared)) == (rows, 0)
        assert _count(Path(":memory:"), read.format(clear)) == (rows, rows)
        assert release.data_path_for("reporting") == shared and release.data_path_for("audit") == clear
    # through each consumer's own storage: its stub view reads the file the policy gives it
    view = "select count(*), count(customer_id) from upstream_shop.orders_v2"
    assert _count(root / "audit/audit.duckdb", view) == (rows, rows)
    assert _count(root / "reporting/reporting.duckdb", view) == (rows, 0)
    assert "data.pii.parquet" not in (root / "reporting/dbt_packages/shop/models/orders_v2.sql").read_text()


def test_pii_with_no_reader_never_reaches_the_release(tmp_path: Path) -> None:
    """No policy, or one naming nobody: the column is NULL and no clear copy is kept."""
    import duckdb

    from mesh_tools.exchange.publish import mask_pii, pii_policy
    from mesh_tools.model.release import ReleaseColumn

    node = {
        "config": {"meta": {"pii_allowed_consumers": "marketing"}},  # not a list: allows no one
        "columns": {"email": {"name": "email", "meta": {"pii": True}}, "id": {"name": "id", "meta": {}}},
    }
    pii, readers = pii_policy(node)
    assert (pii, readers) == (["email"], [])
    # a flag written any truthy way is PII (fails closed); only false-like values are not
    flags = {"a": "true", "b": 1, "c": "True", "d": "yes", "e": {"x": 1}, "f": False, "g": "no", "h": 0, "i": "false"}
    columns = {k: {"name": k, "meta": {"pii": v}} for k, v in flags.items()}
    columns["j"] = {"name": "j", "config": {"meta": {"pii": True}}}
    assert pii_policy({"columns": columns})[0] == ["a", "b", "c", "d", "e", "j"]
    data = tmp_path / "data.parquet"
    duckdb.sql(f"copy (select 1 as id, 'a@b.test' as email) to '{data}' (format parquet)")
    columns = [ReleaseColumn(name="id", type="INTEGER", parquet_type="INTEGER"),
               ReleaseColumn(name="EMAIL", type="VARCHAR", parquet_type="VARCHAR")]  # fmt: skip
    assert mask_pii(data, columns, pii, readers) == ["EMAIL"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.parquet"]
    assert duckdb.sql(f"select id, email from read_parquet('{data}')").fetchall() == [(1, None)]
    assert duckdb.sql(f"select column_type from (describe select * from read_parquet('{data}'))").fetchall() == [
        ("INTEGER",),
        ("VARCHAR",),
    ]


def test_a_consumer_the_policy_excludes_cannot_stitch_the_product(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    schema = root / "shop/models/schema.yml"
    schema.write_text(schema.read_text().replace("pii_allowed_consumers: [audit]}", "pii_allowed_consumers: [audit], "
                                                 "allowed_consumers: [audit]}"))  # fmt: skip
    stub = root / "reporting/dbt_packages/shop"
    before = {p: p.read_bytes() for p in stub.rglob("*") if p.is_file()}
    database = (root / "reporting/reporting.duckdb").read_bytes()
    result = run_mesh("stitch", "shop", "reporting", cwd=root)
    clear_error(
        result,
        1,
        "reporting/models/legacy_orders.sql:1: ref('shop', 'orders', v=1): shop shares 'orders v1' only with audit "
        "(meta.allowed_consumers), so reporting may not read it",
    )
    # revoked though the stitch stops: no stub offers the product, so a hand `dbt build` cannot make its view
    # again, and the views are dropped from its database (tests/stitch/test_revocation.py)
    assert before and not stub.exists()
    assert (root / "reporting/reporting.duckdb").read_bytes() != database
    # a consumer that declares shop but reads none of its restricted products gets no view of them
    for model in (root / "reporting/models").glob("*.sql"):
        model.write_text("select 1 as n\n")
    (root / "reporting/models/schema.yml").unlink()  # its unit test reads shop.orders too
    assert run_mesh("stitch", "reporting", cwd=root).returncode == 0
    assert sorted(p.name for p in (stub / "models").glob("*.sql")) == []
    lease = json.loads((root / "exchange/leases/reporting.json").read_text())
    assert not any(key.startswith("shop.orders") for key in json.dumps(lease).split('"'))


# -- a read-only or full exchange (a real small file system: tmpfs, mounted as root)


@contextlib.contextmanager
def exchange_on_tmpfs(root: Path, size: str = "1m") -> Iterator[Path]:
    """The mesh's exchange moved onto a file system of ``size`` of its own, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    exchange = root / "exchange"
    saved = root / "exchange.saved"
    shutil.copytree(exchange, saved, symlinks=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(exchange)], check=False)
    if mounted.returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        shutil.copytree(saved, exchange, symlinks=True, dirs_exist_ok=True)
        yield exchange
    finally:
        subprocess.run(["umount", "-l", str(exchange)], check=True)


def fill(folder: Path) -> Path:
    """Fill ``folder``'s file system to the last byte; the file that does it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (2**16, 2**12, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def test_a_consumer_builds_from_a_read_only_exchange_and_publishing_is_refused(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    with exchange_on_tmpfs(root) as exchange:
        subprocess.run(["mount", "-o", "remount,ro", str(exchange)], check=True)
        before = written_files(exchange)
        built = run_mesh("build", "reporting", "--no-publish", "--no-state", cwd=root)
        assert built.returncode == 0, built.stdout + built.stderr
        assert "exchange) is read-only here: no lease recorded" in built.stdout
        assert "read-only here: no consumption receipt recorded" in built.stdout
        for command in (("build", "reporting"), ("publish", "shop")):
            clear_error(run_mesh(*command, cwd=root), 3, "exchange: the exchange is read-only here")
        assert written_files(exchange) == before


def test_a_full_exchange_leaves_no_orphan_release_and_the_next_try_works(plain_mesh_copy: Path) -> None:
    """The disk fills at each step of a publish in turn (data, masking, descriptor, log, pointer): every
    failure is one clear error, leaves the releases and pointers as they were, and the next try works."""
    root = plain_mesh_copy
    with exchange_on_tmpfs(root) as exchange:
        before = {v: current_id(root, Path(f"exchange/products/shop/orders/{v}")) for v in ("v1", "v2")}
        kept = written_files(exchange / "products")
        filler = fill(exchange)
        full = filler.stat().st_size
        for pages in range(2, 14):  # free one more 4 KiB page each time, until the publish fits
            os.truncate(filler, full - pages * 4096)
            result = run_mesh("publish", "shop", cwd=root)
            if result.returncode == 0:
                break
            clear_error(result, 3, "no space left on the device")
            assert "(no path)" not in result.stderr, result.stderr
            assert written_files(exchange / "products") == kept, f"{pages} pages free"
            assert list((exchange / ".tmp").iterdir()) == [], f"{pages} pages free"
        else:
            pytest.fail("publishing never fitted")
        assert pages > 2, "the disk was never full enough to fail past the data export"
        after = {v: current_id(root, Path(f"exchange/products/shop/orders/{v}")) for v in ("v1", "v2")}
        assert all(after[v] != before[v] for v in after)


def test_a_pointer_write_on_a_full_disk_keeps_the_old_pointer_whole(plain_mesh_copy: Path) -> None:
    from mesh_tools.core.files import write_atomic

    with exchange_on_tmpfs(plain_mesh_copy) as exchange:
        pointer = exchange / "products/shop/orders/v2/current.json"
        old = pointer.read_text()
        fill(exchange)
        with pytest.raises(OSError):
            write_atomic(pointer, old.replace("r", "x") * 2000)
        assert pointer.read_text() == old
        assert sorted(p.name for p in pointer.parent.iterdir()) == ["current.json", "releases"]


def test_sql_computed_in_jinja_is_found_in_the_compiled_model_and_blocks_publishing(plain_mesh_copy: Path) -> None:
    """The path is assembled by Jinja, so only the compiled SQL shows it: the build runs, GOV205 finds the
    read in the compiled model, and the release is refused though plain_mesh's governance is advisory."""
    root = plain_mesh_copy
    glob = '{{ "../exch" ~ "ange/products/shop/orders/v1/releases/*/data.parquet" }}'
    (root / "shop/models/leak.sql").write_text(f"select count(*) as n from read_parquet('{glob}')\n")
    before = current_id(root)
    result = run_mesh("build", "shop", cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "publish refused: findings that block a release even where governance is advisory" in result.stdout
    assert (
        "GOV205 'leak' reads the exchange directly: '../exchange/products/shop/orders/v1/releases/*/data.parquet'"
        in (result.stdout)
    ), result.stdout
    assert current_id(root) == before


# -- reaching past the stubs: found by parsing the SQL, refused before dbt runs


@pytest.fixture
def territory(tmp_path: Path):  # type: ignore[no-untyped-def]
    from mesh_tools.dbt.engines.sqlscan import Territory

    for folder in ("reporting", "shop", "exchange/products/shop"):
        (tmp_path / folder).mkdir(parents=True)
    return Territory(tmp_path / "reporting", tmp_path / "exchange", {"shop": tmp_path / "shop"}, {"shop": "shop"})


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        (
            "attach /* ; */ '../shop/shop.duckdb' as p1; create table p1.main.evil as select 1 as x",
            ["attaches shop's storage: '../shop/shop.duckdb'", "writes shop's storage: CREATE TABLE p1.main.evil"],
        ),
        (
            "attach -- ;\n '../shop/shop.duckdb' as p8; insert into p8.t select 1",
            ["attaches shop's storage", "writes shop's storage: INSERT INTO p8.t SELECT 1"],
        ),
        (
            "attach 'duckdb:../shop/shop.duckdb' as p2; create table p2.evil2 as select 2 as x",
            ["attaches shop's storage: 'duckdb:../shop/shop.duckdb'", "writes shop's storage: CREATE TABLE p2.evil2"],
        ),
        (
            "attach '../shop/shop.duckdb' as s; use s; insert into orders_v2 select 1",
            ["attaches shop's storage", "writes shop's storage: INSERT INTO orders_v2 SELECT 1"],
        ),
        ("{% do run_query(\"attach '../shop/shop.duckdb' as p6\") %} select 1", ["attaches shop's storage"]),
        (
            "export database reporting to '../exchange/products/shop/orders/v2/releases/evil7'",
            ["writes the exchange: '../exchange/products/shop/orders/v2/releases/evil7'"],
        ),
        (
            "attach '../shop/shop.duckdb' as p1; copy from database reporting to p1",
            ["attaches shop's storage", "writes shop's storage: copy from database reporting to p1"],
        ),
        (
            "select * from read_parquet('../exchange/products/s*p/orders/v2/releases/*/data.pii.parquet')",
            ["reads the exchange directly: '../exchange/products/s*p/orders/v2/releases/*/data.pii.parquet'"],
        ),
        ("insert into SHOP.main.orders select 1", ["writes shop's storage: INSERT INTO SHOP.main.orders"]),
        # what a domain may do: its own storage, columns named like verbs, comments and strings about others
        ("-- history: removed the old hack; attach '../shop/shop.duckdb' is no longer used\nselect 1", []),
        ("create table reporting.main.own_copy as select 1; copy (select 1) to 'own_out.csv'", []),
        ('select "update", "insert" from t where note = \'delete from shop.main.x\'', []),
        ("select * from read_parquet('landing/orders.parquet')", []),
    ],
    ids=[
        "comment-semicolon",
        "line-comment",
        "type-prefix",
        "use",
        "run-query",
        "export",
        "copy-database",
        "glob-read",
        "upper-catalog",
        "comment-fp",
        "own-storage",
        "verbs-fp",
        "own-landing",
    ],  # fmt: skip
)
def test_sql_reaching_other_domains_or_the_exchange_is_found_however_written(territory, sql: str, found: list[str]):  # type: ignore[no-untyped-def]
    from mesh_tools.dbt.engines.sqlscan import Scanner

    described = [r.describe() for r in Scanner(territory).scan(sql)]
    assert len(described) == len(found), described
    for text, expected in zip(described, found, strict=True):
        assert text.startswith(expected), (text, expected)


def test_a_domain_reaching_past_its_stubs_is_refused_before_dbt_runs(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    project = root / "reporting/dbt_project.yml"
    project.write_text(
        project.read_text()
        + "on-run-start:\n  - \"attach /* ; */ '../shop/shop.duckdb' as p1; create table p1.main.evil as select 1\"\n"
    )
    (root / "reporting/models/grab.sql").write_text(
        "select customer_id from read_parquet('../exchange/products/s*p/orders/v2/releases/*/data.pii.parquet')\n"
    )
    shop_db = (root / "shop/shop.duckdb").read_bytes()
    reporting_db = (root / "reporting/reporting.duckdb").read_bytes()
    result = run_mesh("build", "reporting", "--no-publish", cwd=root)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "reporting/dbt_project.yml:9: reporting attaches shop's storage: '../shop/shop.duckdb'" in output
    assert "reporting writes shop's storage: CREATE TABLE p1.main.evil AS SELECT 1" in output
    assert "reporting/models/grab.sql:1: reporting reads the exchange directly:" in output
    assert (root / "shop/shop.duckdb").read_bytes() == shop_db  # nothing ran
    assert (root / "reporting/reporting.duckdb").read_bytes() == reporting_db


def test_an_outside_manifest_naming_sql_instead_of_a_relation_is_refused(plain_mesh_copy: Path) -> None:
    """A dbt-loom manifest is another team's file: its relation_name cannot smuggle a read into a stub."""
    root = plain_mesh_copy
    manifest = json.loads((root / "shop/target/manifest.json").read_text())
    manifest["metadata"]["project_name"] = "partner"
    for node in manifest["nodes"].values():
        node["package_name"] = "partner"
        node["relation_name"] = "read_parquet('../exchange/products/shop/orders/v2/releases/*/data.pii.parquet')"
        (node.get("config") or {}).pop("meta", None)
    manifest["nodes"] = {k.replace("model.shop.", "model.partner."): v for k, v in manifest["nodes"].items()}
    (root / "partner.json").write_text(json.dumps(manifest))
    loom = root / "billing/dbt_loom.config.yml"
    loom.write_text(loom.read_text() + "  - name: partner\n    type: file\n    config:\n      path: ../partner.json\n")
    result = run_mesh("stitch", "billing", cwd=root)
    clear_error(result, 1, 'partner.json: model.partner.orders.v1: relation_name "read_parquet(')
    assert "is not a relation name" in result.stdout
    assert not (root / "billing/dbt_packages/partner").exists()
