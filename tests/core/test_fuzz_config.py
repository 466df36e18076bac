"""Fuzz the files a domain team writes for the mesh: any content ends in a loaded mesh or one MeshError.

mesh.yml, a consumer's dependencies.yml and its mesh_domain.yml get random YAML documents (and
random byte-level damage to them); loading the mesh must return or raise a MeshError (what the
CLI prints as one `error:` line with exit 2 or 3) within hypothesis' deadline: never another
exception (a traceback), never a hang.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mesh_tools.core.config import load_domain_file  # noqa: E402
from mesh_tools.core.errors import MeshError  # noqa: E402
from mesh_tools.core.mesh import load_mesh  # noqa: E402
from tests.helpers import FIXTURES  # noqa: E402

KEYS = [
    "name", "domains", "path", "owner", "exchange", "retention", "governance", "enforce", "rules", "docs",
    "health", "projects", "packages", "pins", "shop.orders.v2", "local", "version", "exclude", "defaults",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["shop", "../..", "/etc", "r20200101T000000000000Z-abcdef", "2020-01-01", "~", "*a", "&a"]),
)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), inner, max_size=6),
    ),
    max_leaves=30,
)
DAMAGE = st.sampled_from(["", "\t", "&a ", "*a", "<<: *a\n", "[", "{", "\x00", "\xff", "---\n", "? ", ": :", "\ufeff"])
FILES = ["mesh.yml", "reporting/dependencies.yml", "reporting/mesh_domain.yml"]


@pytest.fixture(scope="module")
def mesh_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "plain_mesh"
    shutil.copytree(FIXTURES / "plain_mesh", root)
    return root


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    file=st.sampled_from(FILES),
    doc=DOCS,
    damage=DAMAGE,
    at=st.integers(min_value=0, max_value=400),
    raw=st.booleans(),
)
def test_any_config_file_loads_or_is_one_mesh_error(
    mesh_root: Path, file: str, doc: object, damage: str, at: int, raw: bool
) -> None:
    original = {f: (mesh_root / f).read_bytes() if (mesh_root / f).exists() else None for f in FILES}
    text = yaml.safe_dump(doc, allow_unicode=True) if not raw else str(doc)
    text = text[:at] + damage + text[at:]
    try:
        (mesh_root / file).write_bytes(text.encode("utf-8", errors="surrogateescape"))
        try:
            mesh = load_mesh(mesh_root)
            for domain in mesh.domains.values():
                load_domain_file(domain.path)
        except MeshError as exc:
            assert str(exc).strip(), "a MeshError always says what is wrong"
    finally:
        for f, content in original.items():
            if content is None:
                (mesh_root / f).unlink(missing_ok=True)
            else:
                (mesh_root / f).write_bytes(content)
