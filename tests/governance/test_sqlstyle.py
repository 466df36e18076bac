"""GOV502's sqlfluff runner: one pass over the mesh's files, a file's violations kept by what the lint depends on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh_tools.governance import sqlstyle
from mesh_tools.governance.sqlstyle import CACHE_FILE, SqlFile, lint_files

OVERRIDES = {
    "dialect": "duckdb",
    "templater": "jinja",
    "rules": "CP01,LT05",
    "exclude_rules": "",
    "max_line_length": 40,
}
CONFIGS = {"templater": {"jinja": {"apply_dbt_builtins": True}}}
MIXED = "select a, b FROM {{ ref('x') }} where a_rather_long_column_name > 1\n"
CLEAN = "select a from t\n"


def _files(root: Path) -> list[SqlFile]:
    models = root / "projects" / "crm" / "models"
    models.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in (("mixed.sql", MIXED), ("clean.sql", CLEAN)):
        (models / name).write_text(text, encoding="utf-8")
        out.append(SqlFile(models / name, text))
    return out


def _lint(root: Path, files: list[SqlFile], **overrides: object) -> list[list[tuple[str, str, int | None]]]:
    return lint_files(root, files, {**OVERRIDES, **overrides}, CONFIGS, processes=1)


def _plant(root: Path, violation: list[object]) -> None:
    """Replace every cached result with one made-up violation: what the next run returns where it uses the cache."""
    cache = json.loads((root / CACHE_FILE).read_text(encoding="utf-8"))
    cache["files"] = {key: [violation] for key in cache["files"]}
    (root / CACHE_FILE).write_text(json.dumps(cache), encoding="utf-8")


def test_a_cached_file_gives_what_a_fresh_lint_gives(tmp_path: Path):
    files = _files(tmp_path)
    fresh = _lint(tmp_path, files)
    assert {v[0] for v in fresh[0]} == {"CP01", "LT05"} and fresh[1] == []
    assert _lint(tmp_path, files) == fresh
    _plant(tmp_path, ["CP01", "planted", 1])
    assert _lint(tmp_path, files) == [[("CP01", "planted", 1)]] * 2  # the second run did read the cache


def test_what_the_lint_depends_on_invalidates_the_cache(tmp_path: Path):
    files = _files(tmp_path)
    fresh = _lint(tmp_path, files)
    _plant(tmp_path, ["CP01", "planted", 1])
    wider = _lint(tmp_path, files, max_line_length=200)  # another option: linted again, LT05 gone
    assert wider == [[v for v in fresh[0] if v[0] == "CP01"], []]
    _plant(tmp_path, ["CP01", "planted", 1])
    (tmp_path / "projects" / ".sqlfluff").write_text("[sqlfluff]\n", encoding="utf-8")  # a config file above
    assert _lint(tmp_path, files) == fresh
    _plant(tmp_path, ["CP01", "planted", 1])
    changed = [SqlFile(files[0].path, MIXED.replace("FROM", "from")), files[1]]
    assert [v[0] for v in _lint(tmp_path, changed)[0]] == ["LT05"]  # the changed file linted, not the other
    assert _lint(tmp_path, changed)[1] == [("CP01", "planted", 1)]


def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path: Path):
    files = _files(tmp_path)
    fresh = _lint(tmp_path, files)
    for garbage in ("{not json", json.dumps({"format": 1, "files": {"k": 1}}), json.dumps([1, 2])):
        (tmp_path / CACHE_FILE).write_text(garbage, encoding="utf-8")
        assert _lint(tmp_path, files) == fresh
    cache = json.loads((tmp_path / CACHE_FILE).read_text(encoding="utf-8"))
    key = next(iter(cache["files"]))
    for bad in ([["CP01", "x"]], [["CP01", "x", "one"]], "text"):
        cache["files"] = {k: bad if k == key else v for k, v in cache["files"].items()}
        (tmp_path / CACHE_FILE).write_text(json.dumps(cache), encoding="utf-8")
        assert _lint(tmp_path, files) == fresh  # a malformed entry: that file is linted again


def test_parallel_lint_equals_the_sequential_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sqlstyle, "PARALLEL_FROM", 2)  # two files are enough for the worker processes
    files = _files(tmp_path)
    sequential = _lint(tmp_path, files)
    (tmp_path / CACHE_FILE).unlink()
    assert lint_files(tmp_path, files, OVERRIDES, CONFIGS, processes=2) == sequential
