"""dbt-loom configs are read as dbt-loom reads them, less their comments; a producer defining UDFs crosses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mesh_tools.core.mesh import load_mesh
from mesh_tools.core.yamlfile import comment_spans


def comments(text: str) -> list[str]:
    spans = comment_spans(text)
    assert spans is not None
    return [text[start:end] for start, end in spans]


def test_comment_spans_are_what_yaml_drops() -> None:
    text = (
        "# head $A\n"
        "manifests:  # after a key ${B}\n"
        "  - name: a#b  # c\n"  # a#b is a value: '#' not after a space
        '    path: "x # y"\n'  # quoted: a value
        "    note: | # header $C\n"
        "      # a line of the block: a value\n"
        "      $D\n"
        "    flow: [1, # in flow\n"
        "      2]\n"
        "# tail\n"
    )
    assert comments(text) == [
        "# head $A",
        "# after a key ${B}",
        "# c",
        "# header $C",
        "# in flow",
        "# tail",
    ]
    # removing every span leaves the same document: they are exactly the comments
    stripped, done = "", 0
    for start, end in comment_spans(text) or []:
        stripped, done = stripped + text[done:start], end
    assert yaml.safe_load(stripped + text[done:]) == yaml.safe_load(text)


def test_a_text_that_does_not_scan_has_no_spans() -> None:
    assert comment_spans("a: 'unclosed\n") is None


def _project(root: Path, name: str, loom: str | None = None) -> None:
    folder = root / name
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(f"name: {name}\nprofile: {name}\n")
    if loom is not None:
        (folder / "dbt_loom.config.yml").write_text(loom)


LOOM = """\
# dbt-loom reads the producer's manifest. In CI set $MANIFEST_BUCKET; locally ${PRODUCER_DIR}
# defaults to the sibling folder.
manifests:
  - name: producer_manifest  # was $OLD_LABEL
    type: file
    config:
      # path: ${UNUSED_ROOT}/producer/target/manifest.json
      path: ${LOOM_ROOT}/producer/target/manifest.json
"""


def test_variables_in_comments_are_neither_substituted_nor_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("MANIFEST_BUCKET", "PRODUCER_DIR", "OLD_LABEL", "UNUSED_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOM_ROOT", str(tmp_path))
    _project(tmp_path, "producer")
    _project(tmp_path, "consumer", LOOM)
    mesh = load_mesh(tmp_path)
    assert not [n for n in mesh.notes if "is not set" in n], mesh.notes
    (edge,) = mesh.domains["consumer"].upstreams
    assert (edge.name, edge.label) == ("producer", "producer_manifest")
    assert edge.declared_in.endswith("consumer/dbt_loom.config.yml:4")


def test_a_brace_in_one_comment_never_swallows_the_config_up_to_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt-loom's pattern ${...} runs across lines: '${' in one note and '}' in a later one took the
    text between them, 'manifests:' included, for a variable name (dbt-loom itself then reads no manifests)."""
    monkeypatch.setenv("LOOM_ROOT", str(tmp_path))
    _project(tmp_path, "producer")
    loom = LOOM.replace("sibling folder.", "sibling folder (${ opens a variable").replace(
        "/manifest.json\n", "/manifest.json  # and } closes it\n"
    )
    assert "${ opens" in loom and "# and } closes" in loom
    _project(tmp_path, "consumer", loom)
    (edge,) = load_mesh(tmp_path).domains["consumer"].upstreams
    assert edge.name == "producer"


def test_an_unset_variable_in_a_value_is_still_named_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOM_ROOT", raising=False)
    _project(tmp_path, "producer")
    _project(tmp_path, "consumer", LOOM)
    notes = [n for n in load_mesh(tmp_path).notes if "is not set" in n]
    assert len(notes) == 1, notes
    assert notes[0].endswith(
        "consumer/dbt_loom.config.yml:8: $LOOM_ROOT is not set; dbt-loom reads it as an empty string"
    )
