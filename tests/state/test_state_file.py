"""The state file (mesh_tools/state/file.py): one reader, one writer, validated; what cannot serve is a reason.

No dbt: a domain folder written in Python, milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh_tools.core.mesh import Domain, load_mesh
from mesh_tools.state.file import (
    STATE_VERSION,
    DefaultTarget,
    StateFile,
    load_state,
    read_default_target,
    read_state,
    state_dir,
    update_state,
    write_default_target,
    write_state,
)


@pytest.fixture
def shop(tmp_path: Path) -> Domain:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop/dbt_project.yml").write_text("name: shop\nprofile: shop\nversion: '1'\n")
    return load_mesh(tmp_path).domains["shop"]


def _path(shop: Domain, target: str = "dev") -> Path:
    return state_dir(shop, target) / "state.json"


def test_what_is_written_is_what_is_read(shop: Domain) -> None:
    state = StateFile.model_validate({"version": STATE_VERSION, "code": "c", "owed": ["model.shop.a"],
                                      "reads": {"model.shop.a": {"files": ["x.csv"]}}, "footprint": {"a": [1, 2]}})  # fmt: skip
    write_state(shop, "dev", state)
    assert read_state(shop, "dev") == state
    assert json.loads(_path(shop).read_text())["owed"] == ["model.shop.a"]


def test_a_target_name_is_a_safe_folder_name(shop: Domain) -> None:
    assert state_dir(shop, "../../etc").name == ".._.._etc"
    assert state_dir(shop, "../../etc").parent == shop.target_dir / "mesh-state"
    assert state_dir(shop, "").name == "default"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{", "its recorded build state cannot be read (JSONDecodeError)"),
        ("[1]", "its recorded build state is not a JSON object"),
        ('{"version": 2, "code": "c"}', "its recorded build state is from another version of mesh_tools"),
        ('{"version": 3, "code": 7}', "its recorded build state has an unexpected shape (code: Input should be a valid string)"),
        ('{"version": 3, "code": "c", "storage": [["x"]]}', "its recorded build state has an unexpected shape (storage.0: "),
        ("[" * 100_000 + "]" * 100_000, "its recorded build state "),
    ],
)  # fmt: skip
def test_a_foreign_or_damaged_state_file_is_a_reason_never_a_crash(shop: Domain, content: str, reason: str) -> None:
    _path(shop).parent.mkdir(parents=True)
    _path(shop).write_text(content)
    found = read_state(shop, "dev")
    assert isinstance(found, str) and found.startswith(reason), found
    assert load_state(shop, "dev") == "no earlier mesh build of this target is recorded"  # no manifest beside it
    (state_dir(shop, "dev") / "manifest.json").write_text('{"metadata": {}, "nodes": {}}')
    assert load_state(shop, "dev") == found
    assert not update_state(shop, "dev", owed=[])  # nothing to update: the file is left as it was
    assert _path(shop).read_text() == content


def test_an_oversized_state_file_is_not_read(shop: Domain) -> None:
    _path(shop).parent.mkdir(parents=True)
    with _path(shop).open("wb") as handle:
        handle.truncate(65 * 2**20)  # sparse: larger than any state the mesh writes
    assert read_state(shop, "dev") == "its recorded build state is larger than any the mesh writes"


def test_no_state_is_a_reason(shop: Domain) -> None:
    assert read_state(shop, "dev") == "its recorded build state cannot be read (FileNotFoundError)"
    assert load_state(shop, "dev") == "no earlier mesh build of this target is recorded"


def test_update_replaces_fields_and_validates(shop: Domain) -> None:
    write_state(shop, "dev", StateFile(version=STATE_VERSION, code="c"))
    assert update_state(shop, "dev", storage=[["shop.duckdb", 1, 2]])
    found = read_state(shop, "dev")
    assert not isinstance(found, str) and found.storage == [["shop.duckdb", 1, 2]] and found.code == "c"
    with pytest.raises(ValueError):  # a bug in the mesh, never a file the next build refuses
        update_state(shop, "dev", storage="no")
    assert read_state(shop, "dev") == found


def test_the_default_target_pointer(shop: Domain) -> None:
    assert read_default_target(shop) is None
    shop.target_dir.mkdir(parents=True)
    write_default_target(shop, DefaultTarget(target="dev", profiles="p", profile_env="e"))
    assert read_default_target(shop) == DefaultTarget(target="dev", profiles="p", profile_env="e")
    for foreign in ('{"profiles": "p"}', '{"target": 1}', "[]", "{"):
        (shop.target_dir / "mesh-state" / "default-target.json").write_text(foreign)
        assert read_default_target(shop) is None, foreign
