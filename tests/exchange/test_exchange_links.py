"""No write of the exchange, the health folder or ``.mesh/`` passes through a symbolic link planted at a folder.

The exchange is shared by every domain: a link at one of its folders (``receipts -> /outside``) would carry a
write (a receipt, a lease, a pointer, a release, a deletion) out of it. Every such write walks down from the
exchange's root one folder at a time without following a link, and a run refuses a planted link before any dbt
runs (exit 3, naming it); the outside stays untouched. The root itself may be a link (a mounted share), and so
may a domain's folder. The same holds below the mesh root for the health folder and ``.mesh/``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mesh_tools.core import lock
from mesh_tools.core.errors import StorageError
from mesh_tools.core.mesh import load_mesh
from mesh_tools.model.release import ReleaseDescriptor
from mesh_tools.store.backends import Conflict, FolderBackend
from mesh_tools.store.exchange import Exchange
from tests.helpers import copy_fixture, run_mesh, written_files


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the mesh, holding one precious file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "reporting.json").write_text("precious\n")
    return folder


def _plant(link: Path, target: Path) -> Path:
    """Replace the folder at ``link`` (if any) by a symbolic link to ``target``."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir() and not link.is_symlink():
        for child in sorted(link.rglob("*"), reverse=True):
            child.unlink() if not child.is_dir() or child.is_symlink() else child.rmdir()
        link.rmdir()
    link.symlink_to(target, target_is_directory=True)
    return link


def _untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["reporting.json"]
    assert (outside / "reporting.json").read_text() == "precious\n"


def test_no_write_or_delete_of_a_folder_exchange_passes_through_a_linked_folder(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "exchange"
    exchange = FolderBackend(root)
    pointer = "products/shop/orders/v2/current.json"
    cases = {  # the folder a link is planted at -> each write that must refuse it
        "receipts": [lambda: exchange.write("receipts/reporting.json", b"{}"),
                     lambda: exchange.delete(["receipts/reporting.json"])],
        "leases": [lambda: exchange.write("leases/dev/reporting.json", b"{}")],
        "leases/dev": [lambda: exchange.write("leases/dev/reporting.json", b"{}")],
        "log": [lambda: exchange.create("log/reporting.json", b"{}")],
        "products/shop": [lambda: exchange.swap(pointer, b"{}", None),
                          lambda: exchange.create_file(pointer, tmp_path / "outside" / "reporting.json")],
        "products/shop/orders/v2": [lambda: exchange.swap(pointer, b"{}", None)],
    }  # fmt: skip
    for folder, writes in cases.items():
        link = _plant(root / folder, outside)
        for write in writes:
            with pytest.raises(StorageError, match=rf"{link}: is a symbolic link \(to {outside}\); the mesh never "
                               "writes through one, so the folder it points to was left untouched"):  # fmt: skip
                write()
        _untouched(outside)
        link.unlink()
    # the root itself may be a link (a mounted share): writes go where it points
    real = tmp_path / "share"
    real.mkdir()
    shared = FolderBackend(_plant(tmp_path / "mounted", real))
    shared.write("receipts/reporting.json", b"{}")
    shared.create("log/one.json", b"{}")
    with pytest.raises(Conflict):
        shared.create("log/one.json", b"{}")  # written once, never replaced
    shared.delete(["receipts/reporting.json"])
    assert written_files(real) == {"log/one.json"}


def _descriptor(release_id: str) -> ReleaseDescriptor:
    """The fields placing and discarding a release read (a folder exchange names it by them alone)."""
    return ReleaseDescriptor.model_construct(release_id=release_id, product="shop.orders.v2", project="shop",
                                             model="orders", version="2", files=[])  # fmt: skip


def test_releases_are_never_placed_swept_or_discarded_through_a_linked_folder(tmp_path: Path, outside: Path) -> None:
    exchange = Exchange(tmp_path / "exchange", env="prod")
    release = "r20260101T000000000000Z-abcdef"
    releases = exchange.releases_dir("shop", "orders", "2")
    _plant(releases, outside)
    (outside / release).mkdir()
    (outside / release / "keep.txt").write_text("precious\n")
    scratch = tmp_path / "exchange" / ".tmp" / "scratch.1"
    scratch.mkdir(parents=True)
    with pytest.raises(StorageError, match="releases: is a symbolic link"):
        exchange.place(scratch, _descriptor("r20260101T000000000001Z-abcdef"))
    with pytest.raises(StorageError, match="releases: is a symbolic link"):
        exchange.discard(_descriptor(release))  # retention's delete: refused, nothing removed outside
    assert (outside / release / "keep.txt").read_text() == "precious\n"
    releases.unlink()
    _plant(tmp_path / "exchange" / ".tmp", outside)  # where publishers write their scratch releases
    with pytest.raises(StorageError, match=r"\.tmp: is a symbolic link"):
        exchange.tmp_dir.mkdir(exist_ok=True)
    with pytest.raises(StorageError, match=r"\.tmp: is a symbolic link"):
        exchange.refuse_links()
    assert (outside / release / "keep.txt").read_text() == "precious\n"


def test_a_run_refuses_a_linked_exchange_folder_before_dbt_runs(plain_mesh_copy: Path, outside: Path) -> None:
    """The finding: `ln -s /outside exchange/receipts`, then `mesh build --full reporting` overwrote
    /outside/reporting.json (the same for leases/ and the others)."""
    root = plain_mesh_copy
    before = written_files(root / "reporting")
    for folder, command in (("receipts", ("build", "--no-state", "reporting")), ("leases", ("stitch", "reporting")),
                            ("products/shop/orders/v2/releases", ("publish", "shop"))):  # fmt: skip
        moved = root / "exchange" / f"{folder}.saved"
        (root / "exchange" / folder).rename(moved)
        _plant(root / "exchange" / folder, outside)
        refused = run_mesh(*command, cwd=root)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert refused.stderr == (
            f"error: exchange/{folder}: is a symbolic link (to {outside}); the mesh never writes through one, so the "
            f"folder it points to was left untouched. Remove the link (`rm exchange/{folder}`) and run again.\n"
        )
        _untouched(outside)
        (root / "exchange" / folder).unlink()
        moved.rename(root / "exchange" / folder)
    assert written_files(root / "reporting") == before  # refused before dbt ran


def test_the_health_folder_and_dot_mesh_are_never_written_through_a_link(tmp_path: Path, outside: Path) -> None:
    from mesh_tools.health import update_health
    from mesh_tools.health.pending import clear_pending, defer_runs
    from mesh_tools.health.render import write_reports
    from mesh_tools.store.backends import S3Backend

    root = copy_fixture("plain_mesh", tmp_path)
    mesh = load_mesh(root)
    report, _paths = update_health(mesh, "test")  # a report to write again (nothing built: no data)
    health = _plant(mesh.health_path, outside)
    refused = rf"{health}: is a symbolic link \(to {outside}\)"
    for write in (lambda: update_health(mesh, "test"), lambda: defer_runs(mesh, [], datetime.now(UTC)),
                  lambda: write_reports(report, health, below=mesh.anchor(health)), lambda: clear_pending(mesh)):  # fmt: skip
        with pytest.raises(StorageError, match=refused):
            write()
    _untouched(outside)

    dot_mesh = _plant(root / ".mesh", outside)
    with pytest.raises(StorageError, match=rf"{dot_mesh}: is a symbolic link"):
        with lock.hold(root, [lock.domain("hr")], "mesh build hr"):
            pytest.fail("a lock taken through a linked .mesh")
    cache = root / ".mesh" / "exchange-cache"  # an object store's local cache
    exchange = Exchange(cache, backend=S3Backend("s3://bucket/exchange"), env="prod", anchor=mesh.anchor(cache))
    with pytest.raises(StorageError, match=rf"{dot_mesh}: is a symbolic link"):
        exchange.refuse_links(["shop"])
    _untouched(outside)


def test_health_path_is_the_users_own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`~/h` made a literal `~` folder; `.mesh/locks`, `.mesh`, `.git` and a shared macro package were accepted."""
    from mesh_tools.core.errors import ConfigError

    root = copy_fixture("plain_mesh", tmp_path)
    (root / "macros").mkdir()
    (root / "macros" / "dbt_project.yml").write_text("name: shared_macros\nversion: '1'\n")
    (root / "hr" / "packages.yml").write_text("packages:\n  - local: ../macros\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for place, overlaps in ((".mesh/locks", f"the mesh's own folder of locks, parses and caches ({root}/.mesh)"),
                            (".mesh", f"the mesh's own folder of locks, parses and caches ({root}/.mesh)"),
                            (".git/health", f"the git repository ({root}/.git)"),
                            ("macros", f"a local package of domain 'hr' ({root}/macros)")):  # fmt: skip
        (root / "mesh.yml").write_text(f"name: plain\nhealth:\n  path: {place}\n")
        with pytest.raises(ConfigError) as refused:
            load_mesh(root)
        assert str(refused.value).startswith(f"{root}/mesh.yml:3: health.path '{place}' overlaps {overlaps}; ")
    (root / "mesh.yml").write_text("name: plain\nhealth:\n  path: ~/h\n")
    assert load_mesh(root).health_path == tmp_path / "home" / "h"
