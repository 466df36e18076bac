"""Warm dbt's per-process caches once in the `mesh` process, before it forks its domain workers.

dbt builds a JSON schema the first time it validates each of its config and node classes (project,
profile, model, test, seed, source, ... configs: about 0.8 s of CPU per process on the demo) and asks
``inspect`` which module each adapter behaviour flag came from (the first call indexes every loaded
module). Both are caches held per process; every forked worker that starts cold pays them again.
Filled here, before the fork, every worker inherits them (copy on write) and each domain starts warm.
A class a dbt version does not have is skipped: this only moves work, it never changes a result.

It also turns on dbt's own content-keyed Jinja caches (``dbt_common.tests.enable_test_caching``: what dbt's
functional test suite runs thousands of in-process invocations with). Every project parses the same few hundred
macros of dbt's global project and of its adapter: without them, each domain a worker parses pays that again
(about two thirds of a cold `dbt parse` of a 5-model domain). Each cache is keyed by the source text itself (a
parsed template, the macro calls found in it, its top-level blocks), so a changed file is parsed anew; only
dbt's discovery of ``dbt_*`` plugin modules is not keyed by its input (``sys.path`` and the working directory),
so ``fresh_invocation`` forgets it before every dbt command.
"""

from __future__ import annotations

import importlib
import inspect
import sys

# The classes dbt 1.11 validates while it parses and builds a project (found by logging
# dbt_common.dataclass_schema.build_json_schema during `mesh build` of the demo and the corpus).
_VALIDATED = {
    "dbt.contracts.project": ("Project", "ProjectFlags", "PackageConfig", "Configuration", "ProfileConfig"),
    "dbt.contracts.selection": ("SelectorFile",),
    "dbt.contracts.graph.unparsed": (
        "UnparsedSourceDefinition", "UnparsedModelUpdate", "UnparsedNodeUpdate", "UnparsedGroup", "UnparsedUnitTest",
    ),
    "dbt.contracts.graph.nodes": ("ModelNode", "SeedNode", "SingularTestNode", "GenericTestNode", "HookNode"),
    "dbt.artifacts.resources.v1.config": ("NodeConfig", "TestConfig", "Hook"),
    "dbt.artifacts.resources.v1.model": ("ModelConfig",),
    "dbt.artifacts.resources.v1.seed": ("SeedConfig",),
    "dbt.artifacts.resources.v1.source_definition": ("SourceConfig",),
    "dbt.artifacts.resources.v1.unit_test_definition": ("UnitTestConfig",),
    "dbt.artifacts.resources.v1.components": ("Contract",),
    "dbt_common.contracts.constraints": ("ModelLevelConstraint", "ColumnLevelConstraint"),
    "dbt.task.test": ("TestResultData",),
}  # fmt: skip

_warmed: set[str] = set()


def share_parses() -> bool:
    """Let every dbt invocation of this process (and of the workers it forks) reuse the Jinja parses of the ones
    before it, keyed by source text; False when this dbt version has no such switch (each parse then starts cold)."""
    try:
        from dbt_common.tests import enable_test_caching
    except ImportError:
        return False
    enable_test_caching()
    return True


def fresh_invocation() -> None:
    """Before each dbt command: forget dbt's list of discovered plugin modules (the one cache ``share_parses``
    turns on that is not keyed by its input), so each project finds its plugins as a fresh process would."""
    manager = sys.modules.get("dbt.plugins.manager")
    if manager is not None and getattr(manager, "_MODULES_CACHE", None) is not None:
        manager._MODULES_CACHE = None  # type: ignore[attr-defined]


def warm_dbt() -> None:
    """Fill dbt's per-process caches (idempotent; the profile's credentials are warm already: the
    `mesh` process read the profiles before it plans)."""
    for module, name in ((m, n) for m, names in _VALIDATED.items() for n in names):
        if f"{module}:{name}" in _warmed:
            continue
        _warmed.add(f"{module}:{name}")
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if cls is not None and hasattr(cls, "json_schema"):
            cls.json_schema()
    # the index inspect.getmodule builds on its first call (dbt's behaviour flags call it per adapter)
    inspect.getmodule(inspect.currentframe())
    share_parses()
