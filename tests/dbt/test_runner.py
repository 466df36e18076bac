"""The dbt door: dbt runs in-process, and lets go of the domain's storage when it is done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import mesh_env

SCRIPT = """
import os, sys, duckdb, subprocess
from pathlib import Path
from mesh_tools.dbt.runner import invoke
project = Path(sys.argv[1])
os.chdir(project)
outcome = invoke(project, ["build"])
assert outcome.success, outcome
# while this process lives on, another process must be able to open the file for writing
check = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
result = subprocess.run([sys.executable, "-c", check, str(project / "hr.duckdb")], capture_output=True, text=True)
print("OTHER PROCESS:", result.returncode, result.stderr[-300:])
"""


def test_storage_is_released_after_an_in_process_build(plain_mesh: Path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(plain_mesh / "hr")], env=mesh_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "OTHER PROCESS: 0" in result.stdout, result.stdout
