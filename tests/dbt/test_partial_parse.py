"""The mesh's own dbt invocations for one domain keep dbt's partial parsing: they ask for the target and the
profiles folder as the build did (dbt starts a full parse over when either differs: seconds per domain)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import mesh_env, run_command

FULL_PARSE = "Unable to do partial parsing because config vars, config profile, or config target have changed"


def test_publishing_after_a_build_does_not_parse_the_project_again(plain_mesh_copy: Path, tmp_path: Path) -> None:
    logs = tmp_path / "dbt-logs"
    env = {**mesh_env(), "DBT_LOG_PATH": str(logs), "DBT_LOG_LEVEL_FILE": "debug"}
    built = run_command(["mesh", "build", "--no-state", "-s", "shop"], plain_mesh_copy, env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    assert list((plain_mesh_copy / "exchange/products/shop").rglob("current.json")), "shop published its products"
    text = (logs / "dbt.log").read_text()
    assert text.count("Running with dbt=") >= 2, "the build and the export are two dbt invocations"
    assert FULL_PARSE not in text
