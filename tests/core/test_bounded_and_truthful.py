"""Bounded everywhere, truthful and clear: hostile input that used to hang a command or exhaust the machine is
one located error within seconds, and what status, health and docs say agrees with what consumers find."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, run_command, run_mesh, written_files

# An alias bomb: 10 levels of 9 aliases each expand to 9**11 values in any loader that copies what it read
# (dbt renders every value of a profile and of a schema file).
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(10)
)
SECONDS = 60  # far above what the refusal takes (a few seconds), far below a hang
MEMORY = 3 * 2**30  # address space: the regression is a MemoryError or a timeout, never a swapping machine


def bounded(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`mesh ...` with a memory limit and a time limit: a regression fails in seconds, never after minutes."""
    start = time.monotonic()
    result = run_command(["mesh", *args], cwd, timeout=SECONDS, memory=MEMORY)
    result.seconds = time.monotonic() - start  # type: ignore[attr-defined]
    return result


def one_clear_error(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert message in output, output
    assert "Traceback" not in output and "internal error" not in output, output


def nested(indent: int) -> str:
    """The bomb, indented to sit inside a mapping."""
    return "".join(" " * indent + line + "\n" for line in BOMB.splitlines())


# -- YAML that dbt reads for the mesh: pre-checked by the bounded reader


def test_an_alias_bomb_in_profiles_yml_is_a_located_error_in_doctor_and_build(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    profile = root / "hr/profiles.yml"
    profile.write_text(profile.read_text().replace("    dev:\n", "    dev:\n" + nested(6)))
    message = "hr/profiles.yml:10: aliases (*name) expand to more than 200,000 values"
    doctor = bounded("doctor", cwd=root)
    one_clear_error(doctor, 1, message)
    built = bounded("build", "hr", cwd=root)
    one_clear_error(built, 1, message)
    assert "hr: FAILED" in built.stdout
    # the summary agrees with its counts: the failing domain is counted, not only the (healthy) products
    assert (
        "health: failing (2 products: 2 healthy, 0 warning, 0 stale, 0 failing; 5 domains: 4 healthy, 1 failing)"
        in (built.stdout)
    )


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        (
            "shop/models/bomb.yml",
            "version: 2\nmodels:\n  - name: orders_v2\n    config:\n      meta:\n" + nested(8),
            "shop/models/bomb.yml:11: aliases (*name) expand to more than 200,000 values",
        ),
        ("shop/selectors.yml", "selectors:\n" + nested(2), "shop/selectors.yml:7: aliases (*name) expand"),
        ("shop/models/deep.yml", "version: 2\nx: " + "[" * 100 + "]" * 100 + "\n", "nested more than 64 levels deep"),
    ],
    ids=["schema-yaml", "selectors", "deep"],
)
def test_a_hostile_yaml_file_dbt_reads_is_a_located_error(plain_mesh: Path, file: str, text: str, message: str):
    (plain_mesh / file).write_text(text)
    result = bounded("build", "shop", cwd=plain_mesh)
    one_clear_error(result, 1, message)
    assert "shop: FAILED" in result.stdout


def test_the_bounded_reader_leaves_what_dbt_accepts_to_dbt(tmp_path: Path) -> None:
    from mesh_tools.core.errors import ConfigError
    from mesh_tools.core.yamlfile import check_bounded

    ok = tmp_path / "ok.yml"  # anchors reused a thousand times, a duplicate key, Jinja: dbt's to judge
    ok.write_text(
        "d: &d {a: 1, b: 2}\n" + "".join(f"m{i}:\n  <<: *d\n  c: '{{{{ x }}}}'\n" for i in range(1000)) + "d: 3\n"
    )
    check_bounded(ok)
    check_bounded(tmp_path / "missing.yml")  # dbt says what a missing file means
    broken = tmp_path / "broken.yml"
    broken.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match=r"broken\.yml:2:2: malformed YAML: did not find expected ','"):
        check_bounded(broken)
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"binary\.yml:2: not UTF-8 text"):
        check_bounded(binary)


# -- compressed manifests: decompressed with a cap


def gzip_bomb(path: Path, megabytes: int) -> Path:
    """A valid gzip file of about ``megabytes`` MB of JSON text (1 MB members, each about 1 KB compressed)."""
    member = gzip.compress(b" " * 2**20, compresslevel=9)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(b'{"metadata": {"project_name": "partner"}, "pad": "'))
        for _ in range(megabytes):
            handle.write(member)
        handle.write(gzip.compress(b'"}'))
    return path


def test_a_gzip_bomb_dbt_loom_manifest_is_one_located_error(plain_mesh: Path) -> None:
    root = plain_mesh
    gzip_bomb(root / "partner.json.gz", 3000)  # 3 MB that decompress to 3 GB
    loom = root / "billing/dbt_loom.config.yml"
    loom.write_text(
        loom.read_text() + "  - name: partner\n    type: file\n    config:\n      path: ../partner.json.gz\n"
    )
    result = bounded("doctor", cwd=root)
    one_clear_error(
        result, 1, "billing/dbt_loom.config.yml:7: the manifest partner.json.gz decompresses to more than 512 MB: "
        "a compression bomb? (if the file is a real one, raise the cap with MESH_MAX_ARTIFACT_MB)"
    )  # fmt: skip
    assert result.seconds < 30, result.seconds  # type: ignore[attr-defined]


def test_an_artifact_past_the_cap_is_refused_before_it_is_read(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mesh_tools.core.errors import ArtifactError
    from mesh_tools.model.manifest import Manifest

    monkeypatch.setenv("MESH_MAX_ARTIFACT_MB", "4")
    with pytest.raises(ArtifactError, match=r"bomb\.json\.gz: manifest not read: it decompresses to more than 4 MB"):
        Manifest.read(gzip_bomb(tmp_path / "bomb.json.gz", 8), "partner")
    plain = tmp_path / "big.json"
    plain.write_bytes(b" " * (5 * 2**20) + b"{}")
    with pytest.raises(ArtifactError, match=r"big\.json: manifest not read: it is 5 MB, more than the 4 MB"):
        Manifest.read(plain, "partner")
    small = gzip_bomb(tmp_path / "small.json.gz", 2)  # under the cap: read as before
    assert Manifest.read(small, "partner").project == "partner"


# -- a read-only domain folder: exit 3 naming it


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted read-only onto itself (a read-only share refuses even root), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], check=False).returncode != 0:
        pytest.skip("this machine does not allow bind mounts")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_read_only_domain_folder_is_exit_3_naming_it(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    with read_only(root / "shop"):
        before = written_files(root / "shop")
        for command, name in ((("build", "shop"), "build"), (("build", "shop", "--no-state"), "build"),
                              (("stitch", "shop"), "stitch")):  # fmt: skip
            one_clear_error(
                run_mesh(*command, cwd=root), 3,
                f"error: shop: the folder of domain 'shop' is on a read-only file system, and `mesh {name}` writes "
                "dbt's artifacts (target/), logs and stub packages there. Make the folder writable (remount it "
                "read-write) and run again, or run the command in a writable copy of the project.",
            )  # fmt: skip
        assert written_files(root / "shop") == before
        assert run_mesh("build", "reporting", "--no-publish", cwd=root).returncode == 0  # the others still build


# -- what status says of a folder exchange's releases: checked as consumers check them


def test_a_same_size_tampered_release_in_a_folder_exchange_is_a_problem_in_status(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    report = json.loads(run_mesh("status", "--format", "json", cwd=root).stdout)
    [v2] = [r for d in report["domains"] for r in d["current_releases"] if r["product"] == "shop.orders.v2"]
    assert v2["verified"] is True
    data = root / "exchange/products/shop/orders/v2/releases" / v2["release_id"] / "data.parquet"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes
    data.write_bytes(bytes(raw))
    status = run_mesh("status", cwd=root)
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"PROBLEM   shop.orders.v2: exchange/products/shop/orders/v2/releases/{v2['release_id']}/data.parquet: " \
        "data file of release" in status.stdout, status.stdout  # fmt: skip
    assert "does not match the SHA-256 its descriptor records" in status.stdout


# -- `mesh docs -o`: only a folder it marked, or an empty one


def test_docs_never_replaces_a_folder_that_only_looks_like_a_site(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    dist = root / "www"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<h1>our homepage</h1>\n")  # a Vite dist/, a hand-written homepage
    (dist / "assets/app.css").write_text("body {}\n")
    before = written_files(dist)
    one_clear_error(run_mesh("docs", "-o", "www", cwd=root), 2, "www: the folder exists and was not written by")
    assert written_files(dist) == before and (dist / "index.html").read_text() == "<h1>our homepage</h1>\n"
    (root / "empty").mkdir()
    assert run_mesh("docs", "-o", "empty", cwd=root).returncode == 0  # an empty folder is free to use
    assert (root / "empty/.mesh-output").is_file()


def test_no_fault_switch_ships_in_the_package() -> None:
    """Fault seams live in the tests (tests/selfservice: a test-only interpreter replaces one step)."""
    shipped = [p for p in (REPO / "mesh_tools").rglob("*.py") if "MESH_FAULT" in p.read_text(encoding="utf-8")]
    assert shipped == []
