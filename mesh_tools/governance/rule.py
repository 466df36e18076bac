"""What a governance rule is, the ``@rule`` decorator that declares one, and what it finds."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

from mesh_tools.model.nodes import NodeId

if TYPE_CHECKING:
    from mesh_tools.governance.context import CheckContext


class Severity(enum.IntEnum):
    INFO = 0
    WARN = 1
    ERROR = 2

    @classmethod
    def parse(cls, value: str) -> Severity:
        return cls[value.strip().upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    """What a rule returns: one problem, on one domain (and model), with the fix."""

    domain: str
    message: str
    node: str | None = None  # dbt unique_id, or a model name
    file: str | None = None  # relative to the mesh root
    line: int | None = None

    @property
    def model(self) -> str | None:
        """The model's name, as waivers name it (``fct_orders``, or ``fct_orders.v1``)."""
        if self.node is None:
            return None
        node = NodeId.read(self.node)
        if node is not None and node.resource_type in ("model", "source", "seed", "snapshot"):
            return node.local
        return self.node

    @property
    def model_name(self) -> str | None:
        """The name a waiver may give for every version of it (``fct_orders``; a source's: its source, ``raw``)."""
        node = NodeId.read(self.node) if self.node is not None else None
        if node is not None and node.resource_type in ("model", "seed", "snapshot"):
            return node.name
        if node is not None and node.resource_type == "source":
            return node.scope or node.name
        return self.model.partition(".")[0] if self.model is not None else None  # a model's name, as written


@dataclass(frozen=True)
class Violation:
    """A finding with its rule, its effective severity and, when waived, the waiver."""

    code: str
    rule: str
    severity: Severity
    finding: Finding
    fix: str
    waived_by: str | None = None

    @property
    def fingerprint(self) -> str:
        """Stable across runs (no line numbers): what a baseline remembers."""
        return f"{self.code}|{self.finding.domain}|{self.finding.node or ''}|{self.finding.message}"


@dataclass(frozen=True)
class Rule:
    """A governance rule: a function from the whole mesh to findings."""

    code: str
    name: str
    severity: Severity
    family: str
    check: Callable[[CheckContext], Iterable[Finding]]
    doc: str = field(repr=False, default="")

    @property
    def description(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else self.name

    def section(self, title: str) -> str:
        """A section of the docstring ("Rationale", "Example", "Fix")."""
        lines = inspect.cleandoc(self.doc).splitlines()
        out: list[str] = []
        inside = False
        for line in lines:
            if line.rstrip(":").strip().lower() == title.lower():
                inside = True
                continue
            if inside and line.rstrip(":").strip().lower() in ("rationale", "example", "fix"):
                break
            if inside:
                out.append(line)
        return "\n".join(out).strip()


def rule(code: str, name: str, severity: str = "error") -> Callable[[Callable[..., Iterable[Finding]]], Rule]:
    """Declare a rule. Its docstring: first line = description, then Rationale, Example and Fix sections.

    Declaring registers nothing: a check's ``Registry`` collects the rules of the built-in modules
    and of the plugins the mesh and its domains name (``rules_of``).
    """

    def declare(func: Callable[..., Iterable[Finding]]) -> Rule:
        module = func.__module__.rsplit(".", 1)[-1]
        return Rule(code, name, Severity.parse(severity), module, func, func.__doc__ or "")

    return declare


def rules_of(module: ModuleType) -> list[Rule]:
    """The rules a module declares (by code): its ``@rule`` functions, and its submodules' for a package.

    Rules it only imports from elsewhere are left out: they belong to the module that declares them.
    """
    prefix = module.__name__
    found: dict[int, Rule] = {}
    todo, seen = [module], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for value in list(vars(current).values()):
            if isinstance(value, Rule) and _within(getattr(value.check, "__module__", None), prefix):
                found.setdefault(id(value), value)
            elif isinstance(value, ModuleType) and _within(value.__name__, prefix) and value.__name__ != prefix:
                todo.append(value)
    return sorted(found.values(), key=lambda r: r.code)


def _within(name: str | None, prefix: str) -> bool:
    return bool(name) and (name == prefix or str(name).startswith(prefix + "."))
