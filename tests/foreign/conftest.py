"""The corpus of foreign meshes (tests/fixtures/foreign_meshes), each built once per session.

Every mesh is copied as it is and built with plain `mesh build` (no mesh.yml, no edits); the
only things a mesh gets are what its README says its team would have: an environment variable
(loom_chain), a `--profiles-dir` (jaffle_cloud), raw databases loaded by an EL tool
(attached_raw). The builds run three at a time in separate processes; tests/foreign/corpus.py says
how each mesh is run and what it must produce.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.foreign.corpus import CORPUS, MESHES, BuiltForeign, Foreign, run_foreign
from tests.helpers import copy_tree


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltForeign]:
    """Every corpus mesh, copied and built with `mesh build` (three builds at a time)."""
    base = tmp_path_factory.mktemp("corpus")

    def build(mesh: Foreign) -> BuiltForeign:
        folder = copy_tree(CORPUS / mesh.name, base / mesh.name)
        if mesh.prepare:
            mesh.prepare(folder)
        root = folder / mesh.subdir if mesh.subdir else folder
        return BuiltForeign(mesh, root, run_foreign(mesh, root, "build"))

    workers = max(2, min(3, (os.cpu_count() or 2) + 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        built = list(pool.map(build, MESHES.values()))
    return {b.mesh.name: b for b in built}
