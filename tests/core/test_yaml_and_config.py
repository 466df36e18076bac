from pathlib import Path

import pytest

from mesh_tools.core.config import load_mesh_config
from mesh_tools.core.errors import ConfigError
from mesh_tools.core.yamlfile import load_yaml


def test_malformed_yaml_is_located(tmp_path: Path):
    path = tmp_path / "x.yml"
    path.write_text("name: a\ndomains:\n  sales: [\n")
    with pytest.raises(ConfigError, match=r"x\.yml:\d+:\d+: malformed YAML"):
        load_yaml(path)


def test_duplicate_keys_are_refused(tmp_path: Path):
    path = tmp_path / "x.yml"
    path.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(ConfigError, match=r"x\.yml:3: duplicate key 'a' \(first written on line 1\)"):
        load_yaml(path)


def test_lines_are_remembered(tmp_path: Path):
    path = tmp_path / "x.yml"
    path.write_text("a:\n  b:\n    - c\n    - d\n")
    doc = load_yaml(path)
    assert doc.line_of(("a", "b", 1)) == 4
    assert doc.line_of(("a", "b", 1, "missing")) == 4


def test_unknown_key_gets_a_close_match(tmp_path: Path):
    path = tmp_path / "mesh.yml"
    path.write_text("name: m\ndomains:\n  sales:\n    path: p\n    ownr: {name: x}\n")
    with pytest.raises(ConfigError) as info:
        load_mesh_config(path)
    assert "mesh.yml:5: unknown key 'ownr' at domains.sales.ownr. Did you mean 'owner'?" in str(info.value)


def test_wrong_type_is_located(tmp_path: Path):
    path = tmp_path / "mesh.yml"
    path.write_text("name: m\ndefaults:\n  jobs: many\n")
    with pytest.raises(ConfigError, match=r"mesh\.yml:3: defaults\.jobs: Input should be a valid integer"):
        load_mesh_config(path)


def test_several_errors_are_numbered(tmp_path: Path):
    path = tmp_path / "mesh.yml"
    path.write_text("nam: m\ndefaults:\n  jobz: 2\n")
    with pytest.raises(ConfigError) as info:
        load_mesh_config(path)
    text = str(info.value)
    assert "(1)" in text and "(2)" in text and "(3)" in text
    assert "missing required key 'name'" in text


@pytest.mark.parametrize(
    ("written", "meant"),
    [("warn", "warning"), ("error", "failing"), ("stale", "stale"), ("never", "never"), ("warning", "warning")],
)
def test_health_fail_on_takes_the_words_of_the_command_line(tmp_path: Path, written: str, meant: str):
    # `mesh health --fail-on` takes dbt's words (warn, error); mesh.yml took only the report's (warning, failing)
    path = tmp_path / "mesh.yml"
    path.write_text(f"name: m\nhealth:\n  fail_on: {written}\n")
    config, _doc = load_mesh_config(path)
    assert config.health.fail_on == meant


def test_health_fail_on_refuses_other_words_naming_both_vocabularies(tmp_path: Path):
    path = tmp_path / "mesh.yml"
    path.write_text("name: m\nhealth:\n  fail_on: bad\n")
    with pytest.raises(ConfigError, match=r"mesh\.yml:3: health\.fail_on: .*'warn'.*'failing'"):
        load_mesh_config(path)
