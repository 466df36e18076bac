"""mesh_tools/dbt/warm.py: a domain worker forked after warm_dbt() builds a project without building any
JSON schema of its own (what the parent warmed is what dbt validates), and the build's result is unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import FIXTURES


def _dbt_in_a_fork(project: Path, record: Path, command: str, *, warm: bool) -> int:
    """`dbt <command>` of ``project`` in a forked child (as a mesh worker runs it); the classes whose JSON schema
    the child built are written to ``record``. Returns the child's exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            import dbt_common.dataclass_schema as schemas
            from dbt.cli.main import dbtRunner

            from mesh_tools.dbt.profiles import load_profile
            from mesh_tools.dbt.warm import warm_dbt

            if warm:  # as the `mesh` process does before it forks: it reads the profiles, then warms dbt
                load_profile(project)
                warm_dbt()
            built: list[str] = []
            original = schemas.build_json_schema

            def recorded(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
                built.append(f"{cls.__module__}.{cls.__qualname__}")
                return original(cls, *args, **kwargs)

            schemas.build_json_schema = recorded
            os.chdir(project)
            result = dbtRunner().invoke([command, "--project-dir", ".", "--profiles-dir", ".", "--quiet"])
            record.write_text(json.dumps(built))
            code = 0 if result.success else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


_COLD = """
import json, os, sys
import dbt_common.dataclass_schema as schemas
from dbt.cli.main import dbtRunner
built = []
original = schemas.build_json_schema
def recorded(cls, *args, **kwargs):
    built.append(f"{cls.__module__}.{cls.__qualname__}")
    return original(cls, *args, **kwargs)
schemas.build_json_schema = recorded
os.chdir(sys.argv[1])
result = dbtRunner().invoke(["parse", "--project-dir", ".", "--profiles-dir", ".", "--quiet"])
open(sys.argv[2], "w").write(json.dumps(built))
sys.exit(0 if result.success else 3)
"""


def _dbt_cold(project: Path, record: Path) -> int:
    """`dbt parse` in a new interpreter: a fork of this test process would inherit whatever dbt an earlier test
    of the same pytest worker warmed in-process (the schemas are per process)."""
    done = subprocess.run([sys.executable, "-c", _COLD, str(project), str(record)], capture_output=True, text=True)
    return done.returncode


def test_a_worker_forked_after_the_warm_up_builds_no_schema_of_its_own(tmp_path: Path) -> None:
    project = shutil.copytree(FIXTURES / "plain_mesh" / "shop", tmp_path / "shop")
    assert _dbt_in_a_fork(project, tmp_path / "warm.json", "build", warm=True) == 0
    assert json.loads((tmp_path / "warm.json").read_text()) == []
    # without the warm-up dbt does build them (a parse is enough): the recording sees what dbt validates
    shutil.rmtree(project / "target")
    assert _dbt_cold(project, tmp_path / "cold.json") == 0
    cold = json.loads((tmp_path / "cold.json").read_text())
    assert "dbt.contracts.project.Project" in cold and "dbt.contracts.graph.nodes.ModelNode" in cold
