"""mesh_tools/dbt/warm.py shares dbt's Jinja parses between the invocations of one worker: the second project a
worker parses does not parse dbt's global macros again, a changed macro is parsed anew (the sharing is keyed by
content), and a dbt plugin module that appears between two invocations is found (plugin discovery is not shared)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from tests.helpers import FIXTURES

_PROBE = "dbt_meshtest_probe"


def _parses_in_a_worker(hr: Path, shop: Path, plugins: Path, record: Path) -> int:
    """In a forked child (a mesh worker): warm dbt, parse shop, then hr twice (its macro changed in between, and a
    dbt plugin module appeared on the path); writes what each hr parse did to ``record``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            import dbt_common.clients.jinja as jinja

            from mesh_tools.dbt.runner import invoke
            from mesh_tools.dbt.warm import warm_dbt

            warm_dbt()
            parsed: list[str] = []
            original = jinja.MacroFuzzEnvironment._parse

            def counted(self, source, name, filename):  # type: ignore[no-untyped-def]
                parsed.append(source)
                return original(self, source, name, filename)

            jinja.MacroFuzzEnvironment._parse = counted  # type: ignore[method-assign]
            sys.path.insert(0, str(plugins))
            seen = []
            for project, macro in ((shop, None), (hr, "two"), (hr, "three")):
                if macro is not None:
                    (hr / "macros" / "answer.sql").write_text(
                        f"{{% macro answer() %}}{{{{ return({macro}()) }}}}{{% endmacro %}}\n"
                        f"{{% macro {macro}() %}}{{{{ return(2) }}}}{{% endmacro %}}\n"
                    )
                if macro == "three":  # a plugin module on the path now, as in a fresh process
                    (plugins / f"{_PROBE}.py").write_text("plugins = []\n")
                os.chdir(project)
                parsed.clear()
                done = invoke(project, ["parse", "--no-partial-parse"], profiles_dir=project)
                manifest = json.loads((project / "target" / "manifest.json").read_text())
                seen.append({
                    "ok": done.success,
                    "parsed": len(parsed),
                    "depends_on": manifest["macros"]["macro.hr.answer"]["depends_on"]["macros"] if macro else [],
                    "probe": _PROBE in sys.modules,
                })  # fmt: skip
            record.write_text(json.dumps(seen))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_worker_shares_parses_between_projects_by_content(tmp_path: Path) -> None:
    shop = shutil.copytree(FIXTURES / "plain_mesh" / "shop", tmp_path / "shop")
    hr = shutil.copytree(FIXTURES / "plain_mesh" / "hr", tmp_path / "hr")
    (hr / "macros").mkdir()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    record = tmp_path / "seen.json"
    assert _parses_in_a_worker(hr, shop, plugins, record) == 0
    first_shop, hr_two, hr_three = json.loads(record.read_text())
    assert first_shop["ok"] and hr_two["ok"] and hr_three["ok"]
    # shop parsed dbt's and the adapter's macros (hundreds of templates); hr reuses them: only its own files
    assert first_shop["parsed"] > 300
    assert hr_two["parsed"] < 30, hr_two
    # the macro changed between the two parses of hr: its new body is what the manifest says it calls
    assert hr_two["depends_on"] == ["macro.hr.two"]
    assert hr_three["depends_on"] == ["macro.hr.three"]
    # a plugin module that appeared between two invocations is discovered (and imported) by dbt, as in a fresh
    # process: the list of discovered plugin modules is not shared between invocations
    assert not hr_two["probe"] and hr_three["probe"]
