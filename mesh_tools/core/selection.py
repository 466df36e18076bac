"""dbt's selection grammar (`-s/--select`, `--exclude`), parsed and applied to a graph given as ``node -> upstreams``.

The grammar is dbt's: words (arguments, or separated by spaces inside one) are a union; a comma inside a word
is an intersection (``sales+,tag:nightly``); ``+`` before a criterion adds its ancestors, after it its
descendants, each with an optional depth (``2+sales``, ``sales+1``); ``@sales`` adds its descendants and
every ancestor of those. A criterion is ``method:value`` or a bare value. Which methods exist, and what a
value names, is the caller's (``resolve``): the domains of a mesh, or the models across its domains.
Pure Python: no dbt, no files.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from mesh_tools.core.errors import ConfigError
from mesh_tools.core.graph import invert

# Methods that name models (a bare value with a dot, ``sales.fct_orders``, too); the others name domains.
MODEL_METHODS = ("model", "tag", "group")
DOMAIN_METHODS = ("domain", "owner")
METHODS = DOMAIN_METHODS + MODEL_METHODS

_CRITERION = re.compile(
    r"^(?P<at>@)?(?:(?P<up_depth>\d*)(?P<up>\+))?(?P<body>[^+@,\s]+?)(?:(?P<down>\+)(?P<down_depth>\d*))?$"
)


class SelectionError(ConfigError):
    """A selection that cannot be parsed or names nothing known (exit 2, as every usage error)."""


@dataclass(frozen=True)
class Criterion:
    """One criterion of a selector: ``[@][N+]method:value[+N]``."""

    text: str  # as typed
    method: str  # "" for a bare value
    value: str
    parents: bool = False
    parents_depth: int | None = None  # None: every ancestor
    children: bool = False
    children_depth: int | None = None
    at: bool = False

    @property
    def model_level(self) -> bool:
        """Whether it names models (across domains) rather than whole domains."""
        return self.method in MODEL_METHODS or (self.method == "" and "." in self.value)

    @property
    def pattern(self) -> bool:
        """Whether the value is a shell-style pattern (``sales_*``), matched as dbt matches one."""
        return any(c in self.value for c in "*?[")

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.value) if self.pattern else name == self.value


@dataclass(frozen=True)
class Selector:
    """One word of a selection: its comma-joined criteria, all of which a node must meet (an intersection)."""

    text: str
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class Selection:
    """What `--select` and `--exclude` say: the union of ``select`` (everything when empty), minus the union of
    ``exclude``."""

    select: tuple[Selector, ...] = ()
    exclude: tuple[Selector, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.select and not self.exclude

    @property
    def model_level(self) -> bool:
        """Whether any criterion names models: then the whole selection is evaluated over models."""
        return any(c.model_level for s in self.select + self.exclude for c in s.criteria)

    def criteria(self) -> Iterable[Criterion]:
        for selector in self.select + self.exclude:
            yield from selector.criteria

    def __str__(self) -> str:
        text = " ".join(s.text for s in self.select)
        return text + (f" --exclude {' '.join(s.text for s in self.exclude)}" if self.exclude else "")


def parse_criterion(text: str) -> Criterion:
    """One criterion, or SelectionError saying what is wrong with it."""
    found = _CRITERION.match(text)
    if found is None:
        raise SelectionError(
            f"cannot read the selector '{text}': expected [@][N+]NAME[+N] or METHOD:VALUE (dbt's grammar, e.g. "
            "'sales+', '2+sales', '@sales', 'sales.fct_orders+', 'domain:sales')."
        )
    body = found["body"]
    method, _, value = body.partition(":") if ":" in body else ("", "", body)
    if ":" in body and method not in METHODS:
        from mesh_tools.core.suggestions import did_you_mean

        raise SelectionError(
            f"unknown selector method '{method}:' in '{text}'.{did_you_mean(method, METHODS)} "
            f"Methods: {', '.join(m + ':' for m in METHODS)} (or a bare domain or domain.model name)."
        )
    if not value:
        raise SelectionError(f"the selector '{text}' names nothing after '{method}:'.")
    if found["at"] and found["up"]:
        raise SelectionError(f"the selector '{text}' has both '@' and a leading '+': '@' already adds the ancestors.")
    return Criterion(
        text=text,
        method=method,
        value=value,
        parents=bool(found["up"]),
        parents_depth=int(found["up_depth"]) if found["up_depth"] else None,
        children=bool(found["down"]),
        children_depth=int(found["down_depth"]) if found["down_depth"] else None,
        at=bool(found["at"]),
    )


def _selectors(words: Iterable[str]) -> tuple[Selector, ...]:
    out: list[Selector] = []
    for raw in words:
        for word in raw.split():  # `-s "a b"` is two words, as in dbt
            parts = [p for p in word.split(",")]
            if any(not p for p in parts):
                raise SelectionError(f"the selector '{word}' has an empty part between commas.")
            out.append(Selector(word, tuple(parse_criterion(p) for p in parts)))
    return tuple(out)


def parse_selection(select: Iterable[str] = (), exclude: Iterable[str] = ()) -> Selection:
    """`--select` and `--exclude` words as typed (each may hold several, separated by spaces)."""
    return Selection(_selectors(select), _selectors(exclude))


def _reach(start: set[str], edges: Mapping[str, Iterable[str]], depth: int | None) -> set[str]:
    """Every node reachable from ``start`` along ``edges`` in at most ``depth`` steps (None: any), start excluded
    unless reached."""
    seen: set[str] = set()
    frontier = set(start)
    step = 0
    while frontier and (depth is None or step < depth):
        step += 1
        nxt = {n for node in frontier for n in edges.get(node, ())} - seen
        seen |= nxt
        frontier = nxt
    return seen


def expand(criterion: Criterion, base: set[str], upstreams: Mapping[str, Iterable[str]],
           downstreams: Mapping[str, Iterable[str]]) -> set[str]:  # fmt: skip
    """``base`` with what the criterion's ``+`` and ``@`` add."""
    out = set(base)
    if criterion.at:
        below = base | _reach(base, downstreams, None)
        return below | _reach(below, upstreams, None)
    if criterion.parents:
        out |= _reach(base, upstreams, criterion.parents_depth)
    if criterion.children:
        out |= _reach(base, downstreams, criterion.children_depth)
    return out


Resolve = Callable[[Criterion], set[str]]


def evaluate(selection: Selection, upstreams: Mapping[str, Iterable[str]], resolve: Resolve) -> set[str]:
    """The nodes of ``upstreams`` (``node -> its upstreams``) the selection names. ``resolve`` gives the nodes a
    criterion's method and value name, before ``+``/``@`` (and raises SelectionError for a name it does not
    know)."""
    downstreams = invert(upstreams)

    def nodes(selector: Selector) -> set[str]:
        found: set[str] | None = None
        for criterion in selector.criteria:
            reached = expand(criterion, resolve(criterion), upstreams, downstreams)
            found = reached if found is None else found & reached
        return found or set()

    chosen = set(upstreams) if not selection.select else set().union(*(nodes(s) for s in selection.select))
    for selector in selection.exclude:
        chosen -= nodes(selector)
    return chosen & set(upstreams)


def nothing_selected(selection: Selection, what: str) -> SelectionError:
    """The error for a selection that names nothing, with the likely slip: a comma meant as 'and also'."""
    hint = ""
    if any(len(s.criteria) > 1 for s in selection.select):
        hint = (
            " A comma intersects (dbt's grammar: 'a,b' is what both select); to select both, separate them with a "
            "space: -s 'a b', or give -s twice."
        )
    return SelectionError(f"the selection '{selection}' selects no {what}.{hint}")
