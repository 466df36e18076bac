"""Quiescence (mesh_tools/state/quiescence.py) on a tiny mesh written in Python: no dbt run, milliseconds.

Each check of ``CHECKS`` has one case below: the domain is quiescent as recorded, one thing it depends on
changes, and that check's reason is the answer. Removing a check makes its case fail (a later check gives
another reason, or none does), and a check added without a case fails ``test_every_check_has_a_case``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh_tools.core.mesh import Domain, Mesh, load_mesh
from mesh_tools.dbt.staleness import code_fingerprint
from mesh_tools.model.manifest import Manifest
from mesh_tools.state.file import STATE_VERSION, StateFile, read_default_target, read_state, update_state, write_state
from mesh_tools.state.inputs import (
    env_digests,
    fingerprint_reads,
    landing_fingerprint,
    run_footprint,
    storage_fingerprint,
)
from mesh_tools.state.quiescence import CHECKS, first_reason, quiescent, quiet_facts, record_quiet

_PROFILE = "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: shop.duckdb\n"
_VARIABLE = "MESH_TEST_QUIESCENCE"


@dataclass
class Case:
    """A quiescent domain ``shop`` (reading ``sales``), as its last build left it."""

    root: Path
    mesh: Mesh

    @property
    def shop(self) -> Domain:
        return self.mesh.domains["shop"]

    def reload(self) -> None:
        self.mesh = load_mesh(self.root)

    def record(self, **changes: object) -> None:
        assert update_state(self.shop, "dev", **changes)

    def reason(self, publish: bool = False) -> str | None:
        return quiescent(self.mesh, self.shop, "dev", publish)[0]


def _project(folder: Path, name: str, files: dict[str, str]) -> None:
    for path, text in {"dbt_project.yml": f"name: {name}\nprofile: {name}\nversion: '1'\n", **files}.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)


def _manifest(domain: Domain) -> Manifest:
    source = {"resource_type": "source", "package_name": "shop", "name": "orders", "source_name": "raw",
              "database": "shop", "schema": "raw", "identifier": "orders", "config": {},
              "meta": {"external_location": "landing/orders.csv"}}  # fmt: skip
    model = {"resource_type": "model", "package_name": "shop", "name": "a", "fqn": ["shop", "a"],
             "raw_code": "select 1", "config": {"materialized": "table"}, "access": "public"}  # fmt: skip
    data = {"metadata": {"project_name": "shop", "adapter_type": "duckdb"}, "nodes": {"model.shop.a": model},
            "sources": {"source.shop.raw.orders": source}, "macros": {}}  # fmt: skip
    domain.target_dir.mkdir(parents=True, exist_ok=True)
    domain.manifest_path.write_text(json.dumps(data))
    return Manifest.of(data, "shop")


@pytest.fixture
def case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    monkeypatch.delenv(_VARIABLE, raising=False)
    for name in ("DBT_TARGET", "DBT_PROFILE", "DBT_PROFILES_DIR", "DBT_TARGET_PATH", "DBT_PROJECT_DIR"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "mesh"
    _project(root / "sales", "sales", {"models/orders.sql": "select 1 as id\n", "target/manifest.json": "{}"})
    _project(root / "shop", "shop", {
        "models/a.sql": "select 1\n", "profiles.yml": _PROFILE, "landing/orders.csv": "id\n1\n",
        "data/rates.csv": "rate\n2\n", "shop.duckdb": "not a database, a file with a size and a time",
        "dependencies.yml": "projects:\n  - name: sales\n",
    })  # fmt: skip
    case = Case(root, load_mesh(root))
    shop = case.shop
    manifest = _manifest(shop)
    reads = {"model.shop.a": {"files": ["data/rates.csv"], "opaque": None}}
    write_state(shop, "dev", StateFile.model_validate({
        "version": STATE_VERSION,
        "code": code_fingerprint(shop),
        "landing": {"source.shop.raw.orders": landing_fingerprint(shop, "landing/orders.csv")},
        "storage": storage_fingerprint([shop.path / "shop.duckdb"], []),
        "env": env_digests([_VARIABLE]),
        "reads": reads,
        "read_prints": fingerprint_reads(shop, reads),
        "footprint": run_footprint(shop),
        "built": {"model.shop.a": "inv-1"},
    }))  # fmt: skip
    record_quiet(shop, "dev", False, quiet_facts(case.mesh, shop, {}, manifest), _sha(shop.path / "profiles.yml"))
    assert case.reason() is None, "the recorded domain is quiescent before anything changes"
    return case


def _sha(path: Path) -> str:
    from mesh_tools.core.files import file_sha256

    return file_sha256(path)


def _touch(path: Path, text: str = "changed\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(text)


def _packages(case: Case) -> None:
    _project(case.root / "lib", "lib", {})
    (case.shop.path / "packages.yml").write_text("packages:\n  - local: ../lib\n")
    case.reload()


# check name -> (what changes, the reason quiescence gives, whether the build publishes)
CASES: dict[str, tuple[Callable[[Case, pytest.MonkeyPatch], None], str, bool]] = {
    "owed": (lambda c, m: c.record(owed=["model.shop.a"]), "a node is owed a good run", False),
    "profiles_changed": (lambda c, m: _touch(c.shop.path / "profiles.yml", "# edited\n"),
                         "its profiles.yml changed", False),
    "profile_env_changed": (lambda c, m: m.setenv("DBT_TARGET", "prod"),
                            "an environment variable its profile reads changed", False),
    "mesh_yml_changed": (lambda c, m: _touch(c.root / "mesh.yml", "name: m\n"), "mesh.yml changed", False),
    "env_name_computed": (lambda c, m: c.record(env_computed="macros/x.sql:3"),
                          "its code reads an environment variable whose name is computed", False),
    "hooks_write": (lambda c, m: c.record(hooks=["create table fx as select 1"]),
                    "its on-run-start hooks write what its models may read", False),
    "opaque_reads": (lambda c, m: c.record(reads={"model.shop.a": {"files": [], "opaque": "it is a Python model"}}),
                     "a: it is a Python model", False),
    "change_detection_declared": (lambda c, m: c.record(quiet={**_quiet(c), "detect": ["source.shop.raw.orders"]}),
                                  "a source declares meta.change_detection (dbt counts or runs it)", False),
    "env_changed": (lambda c, m: m.setenv(_VARIABLE, "2"), f"environment variable {_VARIABLE} changed", False),
    "artifacts_replaced": (lambda c, m: _touch(c.shop.run_results_path, "{}"),
                           "its manifest.json or run_results.json changed since its last build", False),
    "ran_outside": (lambda c, m: _touch(c.shop.target_dir / "run/shop/models/a.sql"),
                    "dbt wrote its relations outside the mesh since its last build", False),
    "read_files_changed": (lambda c, m: _touch(c.shop.path / "data/rates.csv", "3\n"),
                           "a file its SQL reads changed", False),
    "upstreams_changed": (lambda c, m: c.record(quiet={**_quiet(c), "upstreams": {}}), "its upstreams changed", False),
    "upstream_rebuilt": (lambda c, m: _touch(c.root / "sales/target/manifest.json", " "),
                         "upstream sales was parsed or built", False),
    "release_changed": (lambda c, m: c.record(quiet={**_quiet(c), "consumed": {"sales.orders": "r1"}}),
                        "sales.orders", False),
    "source_changed": (lambda c, m: _touch(c.shop.path / "landing/orders.csv", "2\n"),
                       "source source.shop.raw.orders may have new data", False),
    "packages_missing": (lambda c, m: _packages(c), "its packages are not installed", False),
    "code_changed": (lambda c, m: _touch(c.shop.path / "models/a.sql", "-- edited\n"), "its code changed", False),
    "storage_changed": (lambda c, m: _touch(c.shop.path / "shop.duckdb"), "its storage changed", False),
    "unpublished": (lambda c, m: None, "a is not published from its last build", True),
}  # fmt: skip


def _quiet(case: Case) -> dict[str, object]:
    state = read_state(case.shop, "dev")
    assert not isinstance(state, str) and state.quiet is not None
    return state.quiet.model_dump()


def test_every_check_has_a_case() -> None:
    assert [check.__name__ for check in CHECKS] == list(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_each_check_gives_its_reason(name: str, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    change, reason, publish = CASES[name]
    change(case, monkeypatch)
    found = case.reason(publish)
    assert found is not None and found.startswith(reason), (name, found)


def test_the_first_reason_wins(case: Case) -> None:
    """Two things changed: the reason is the earlier check's, whatever the later one would say."""
    _touch(case.shop.path / "models/a.sql", "-- edited\n")
    case.record(owed=["model.shop.a"])
    assert case.reason() == "a node is owed a good run"
    from mesh_tools.state import quiescence

    later = tuple(c for c in CHECKS if c is not quiescence.owed)
    state = read_state(case.shop, "dev")
    assert not isinstance(state, str) and state.quiet is not None
    quiet = quiescence.Quiet(case.mesh, case.shop, state, state.quiet, False, _sha(case.shop.path / "profiles.yml"),
                             state.quiet.profile_env or "")  # fmt: skip
    assert first_reason(quiet, later) == "its code changed"


def test_a_build_without_target_follows_the_recorded_default(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    pointer = read_default_target(case.shop)
    assert pointer is not None and pointer.target == "dev"
    assert quiescent(case.mesh, case.shop, None, False)[0] is None
    _touch(case.shop.path / "profiles.yml", "# edited\n")
    assert quiescent(case.mesh, case.shop, None, False)[0] == "its profiles.yml changed"


def test_a_foreign_or_damaged_state_is_no_recorded_build(case: Case) -> None:
    path = case.shop.target_dir / "mesh-state" / "dev" / "state.json"
    path.write_text('{"version": 3, "code": 7}')
    assert case.reason() == "no usable recorded build"
    (case.shop.target_dir / "mesh-state" / "default-target.json").write_text("[1, 2]")
    assert quiescent(case.mesh, case.shop, None, False)[0] == "no recorded build"
