"""The rules of one check: the built-in ones, the mesh's plugins, and each domain's own.

Nothing is registered process-wide. The built-in rules are collected once, at import, into an
immutable mapping; a ``Registry`` is made per check (``Registry.for_mesh``) from them, the
entry-point plugins, mesh.yml's ``governance.plugins`` and each domain's (mesh_domain.yml). A rule
a domain's plugin declares is attributed to that domain and judges it only; one the mesh (or an
entry point) declares judges every domain. Two different rules with one code are a ConfigError.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

import mesh_tools.governance.rules as _builtin_rules
from mesh_tools.core.errors import ConfigError, display_path
from mesh_tools.core.mesh import Mesh
from mesh_tools.governance.rule import Rule, rules_of

ENTRY_POINT_GROUP = "mesh_tools.rules"


def _collect(rules: Iterable[Rule]) -> Mapping[str, Rule]:
    out: dict[str, Rule] = {}
    for item in rules:
        if item.code in out:
            raise ValueError(f"rule code {item.code} is declared twice ({out[item.code].name} and {item.name})")
        out[item.code] = item
    return MappingProxyType(out)


BUILTIN: Mapping[str, Rule] = _collect(rules_of(_builtin_rules))


class Registry(Mapping[str, Rule]):
    """The rules of one check by code (sorted), with the domains each judges."""

    def __init__(self, rules: Mapping[str, Rule] = BUILTIN):
        self._rules: dict[str, Rule] = dict(rules)
        self._origins: dict[str, str] = {code: "built in" for code in rules}
        self._owners: dict[str, frozenset[str]] = {}  # a code missing here judges every domain

    @classmethod
    def for_mesh(cls, mesh: Mesh) -> Registry:
        """The built-in rules, the entry points', the mesh's plugins' and each domain's plugins'."""
        registry = cls()
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            registry.add_all(_entry_rules(entry), origin=f"entry point '{entry.name}' ({entry.value})")
        loaded: dict[str, list[Rule]] = {}  # a plugin named twice in one check is loaded once
        mesh_file = mesh.config_path or mesh.root / "mesh.yml"
        for plugin in mesh.governance.plugins:
            found = load_plugin(mesh.root, plugin, mesh_file, loaded)
            registry.add_all(found, origin=f"{display_path(mesh_file)}: plugin '{plugin}'")
        for name, domain in mesh.domains.items():
            domain_file = domain.path / "mesh_domain.yml"
            for plugin in domain.governance.plugins:
                found = load_plugin(domain.path, plugin, domain_file, loaded)
                registry.add_all(found, domain=name, origin=f"{display_path(domain_file)}: plugin '{plugin}'")
        return registry

    # -- adding
    def add(self, item: Rule, *, domain: str | None = None, origin: str = "") -> None:
        """Add a rule; ``domain``: the one domain that declared it (None: it judges every domain).

        The same rule added again (one plugin named by several domains) judges each of them.
        """
        known = self._rules.get(item.code)
        if known is not None and known is not item and known.check is not item.check:
            raise ConfigError(
                f"{origin or 'a plugin'}: rule code {item.code} is registered twice: '{known.name}' "
                f"({self._origins[item.code]}) and '{item.name}'. Give one of them another code."
            )
        if known is None:
            self._rules[item.code] = item
            self._origins[item.code] = origin
            if domain is not None:
                self._owners[item.code] = frozenset({domain})
        elif domain is None:
            self._owners.pop(item.code, None)
        elif item.code in self._owners:
            self._owners[item.code] |= {domain}

    def add_all(self, items: Iterable[Rule], *, domain: str | None = None, origin: str = "") -> None:
        for item in items:
            self.add(item, domain=domain, origin=origin)

    # -- reading
    def __getitem__(self, code: str) -> Rule:
        return self._rules[code]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._rules))

    def __len__(self) -> int:
        return len(self._rules)

    def owners(self, code: str) -> frozenset[str] | None:
        """The domains a plugin rule was declared by; None for a rule that judges every domain."""
        return self._owners.get(code)

    def judges(self, code: str, domain: str) -> bool:
        """Whether the rule's findings on ``domain`` count."""
        owners = self._owners.get(code)
        return owners is None or domain in owners

    def origin(self, code: str) -> str:
        return self._origins.get(code, "")


def _entry_rules(entry: metadata.EntryPoint) -> list[Rule]:
    try:
        loaded: Any = entry.load()
    except Exception as exc:  # a broken plugin is a configuration error, named
        raise ConfigError(f"entry point '{entry.name}' ({entry.value}): cannot load rules: {exc}") from None
    if isinstance(loaded, ModuleType):
        return rules_of(loaded)
    if isinstance(loaded, Rule):
        return [loaded]
    if isinstance(loaded, Iterable):
        return [r for r in loaded if isinstance(r, Rule)]
    return []


def load_plugin(base: Path, plugin: str, declared_in: Path, loaded: dict[str, list[Rule]] | None = None) -> list[Rule]:
    """The rules of a plugin: a ``.py`` file (relative to ``base``, read afresh for each check) or a
    module (imported once per process, as Python does). ``loaded``: what this check loaded already."""
    loaded = {} if loaded is None else loaded
    key = str((base / plugin).resolve()) if plugin.endswith(".py") else plugin
    if key in loaded:
        return loaded[key]
    try:
        if plugin.endswith(".py"):
            path = Path(key)
            name = f"mesh_rules_{path.stem}_{hashlib.sha256(key.encode()).hexdigest()[:10]}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise ImportError(f"no file {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            module = importlib.import_module(plugin)
    except Exception as exc:  # a broken plugin is a configuration error, located
        raise ConfigError(f"{display_path(declared_in)}: cannot load rules plugin '{plugin}': {exc}") from None
    loaded[key] = rules_of(module)
    return loaded[key]
