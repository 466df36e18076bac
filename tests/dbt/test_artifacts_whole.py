"""dbt's artifacts are written whole when the mesh runs dbt: a reader in another process (a consumer stitching
while its producer's second pipelined stage runs) sees the old manifest or the new one, never half of one.

dbt's own ``write_json`` truncates the file and writes it in place; a reader holding the old file then reads
the new bytes, or none. Written as the mesh writes them, the old file is replaced: a reader that opened it
reads it whole to the end. Real artifacts of a real build, written by dbt's own artifact classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Built


@pytest.mark.parametrize("name", ["manifest.json", "run_results.json"])
def test_dbt_replaces_an_artifact_a_reader_has_open(plain_mesh_built: Built, tmp_path: Path, name: str) -> None:
    from dbt.artifacts.schemas.run import RunResultsArtifact
    from dbt.contracts.graph.manifest import WritableManifest

    import mesh_tools.dbt.runner  # noqa: F401  (every dbt run of the mesh goes through it)

    built = plain_mesh_built.root / "hr/target" / name
    assert plain_mesh_built.result.returncode == 0 and built.is_file()
    kind = WritableManifest if name == "manifest.json" else RunResultsArtifact
    artifact = kind.read_and_check_versions(str(built))
    path = tmp_path / "target" / name
    path.parent.mkdir()
    old = b'{"metadata": {}, "old": true}'
    path.write_bytes(old)
    with open(path, "rb") as reader:  # a consumer in the middle of reading the old file
        reader.read(5)
        artifact.write(str(path))
        assert reader.read() == old[5:]  # in place, it would read the new bytes (or nothing, truncated)
    assert json.loads(path.read_text())["metadata"]["dbt_schema_version"].endswith(
        "manifest/v12.json" if name == "manifest.json" else "run-results/v6.json"
    )
    assert [p.name for p in path.parent.iterdir()] == [name]  # no partial file left behind
    # the content dbt wrote itself
    assert json.loads(path.read_text()).keys() == json.loads(built.read_text()).keys()


def test_a_reader_waits_for_an_artifact_a_dbt_outside_the_mesh_is_writing(tmp_path: Path) -> None:
    """A hand-run dbt still writes in place: a reader that catches half a manifest reads it again once it has
    been written, and a manifest that stays broken is one error naming the file and the place."""
    import threading
    import time

    from mesh_tools.core.errors import ArtifactError
    from mesh_tools.model.manifest import read_json

    path = tmp_path / "manifest.json"
    text = json.dumps({"metadata": {"project_name": "shop"}, "nodes": {f"model.shop.m{n}": {} for n in range(50)}})
    half = threading.Event()

    def dbt_writing() -> None:
        with open(path, "w") as handle:  # as dbt_common's write_json does
            handle.write(text[: len(text) // 2])
            handle.flush()
            half.set()
            time.sleep(0.2)
            handle.write(text[len(text) // 2 :])

    writer = threading.Thread(target=dbt_writing)
    writer.start()
    half.wait()
    assert read_json(path, "manifest", "")["nodes"].keys() == json.loads(text)["nodes"].keys()
    writer.join()

    path.write_text(text[:100])  # broken, and nobody writes it
    with pytest.raises(ArtifactError, match=r"manifest\.json:1:\d+: manifest is corrupt"):
        read_json(path, "manifest", "")
