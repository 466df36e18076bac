"""Order, cycles, stages and selection over a graph given as ``node -> its upstreams``: the domains, or the models
across the domains of a cycle."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


def find_cycle(upstreams: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one cycle as a path ``[a, b, ..., a]`` (a consumes b ...), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for up in sorted(upstreams.get(node, ())):
            if up not in upstreams:
                continue
            if state.get(up) == 1:
                return stack[stack.index(up) :] + [up]
            if up not in state:
                found = visit(up)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(upstreams):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def components(upstreams: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components (nodes that reach each other), upstream ones first, each sorted by
    name: a component of more than one node is a cycle. Upstreams outside ``upstreams`` are ignored."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(upstreams):
        if root in index:
            continue
        # Tarjan's algorithm, iterative: a deep chain of models must not exhaust Python's recursion limit
        work: list[tuple[str, list[str]]] = []
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work.append((root, sorted(u for u in upstreams.get(root, ()) if u in upstreams)))
        while work:
            node, todo = work[-1]
            if todo:
                up = todo.pop(0)
                if up not in index:
                    index[up] = low[up] = len(index)
                    stack.append(up)
                    on_stack.add(up)
                    work.append((up, sorted(u for u in upstreams.get(up, ()) if u in upstreams)))
                elif up in on_stack:
                    low[node] = min(low[node], index[up])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                member = ""
                component = []
                while member != node:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                found.append(sorted(component))
    # Tarjan emits a component after every component it reaches (its upstreams): already upstream-first;
    # among independent components, keep a stable order by name
    return _stable(found, upstreams)


def _stable(found: list[list[str]], upstreams: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Components upstream first, ties broken by their first name (as ``topological_order`` breaks them)."""
    home = {node: i for i, component in enumerate(found) for node in component}
    ups = {i: {home[u] for n in c for u in upstreams.get(n, ()) if u in home} - {i} for i, c in enumerate(found)}
    order: list[list[str]] = []
    while ups:
        ready = sorted((i for i, u in ups.items() if not u), key=lambda i: found[i][0])
        for i in ready:
            order.append(found[i])
            del ups[i]
        for u in ups.values():
            u.difference_update(ready)
    return order


def cycles(upstreams: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The groups of nodes that depend on each other (components of more than one node), upstream ones first."""
    return [c for c in components(upstreams) if len(c) > 1]


def topological_order(upstreams: Mapping[str, Iterable[str]]) -> list[str]:
    """Upstreams first; ties broken by name so the order is stable. The nodes of a cycle come together, by name
    (a cycle of domains is built in stages: workflows/stages.py)."""
    return [node for component in components(upstreams) for node in component]


def closure(start: Iterable[str], edges: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node reachable from ``start`` along ``edges`` (start excluded unless reached)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def invert(upstreams: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """From ``consumer -> upstreams`` to ``upstream -> consumers``."""
    downstream: dict[str, set[str]] = {node: set() for node in upstreams}
    for node, ups in upstreams.items():
        for up in ups:
            downstream.setdefault(up, set()).add(node)
    return downstream


@dataclass(frozen=True)
class Stage:
    """One step of a staged build: the nodes of one domain whose upstreams are built by earlier stages (or by
    this one, in the same domain). ``final``: the domain's last stage."""

    number: int  # 1-based, in build order
    domain: str
    nodes: tuple[str, ...]
    final: bool


class ModelCycle(ValueError):
    """The nodes, across domains, that depend on each other: ``path`` is ``[a, b, ..., a]``."""

    def __init__(self, path: list[str]):
        super().__init__(" -> ".join(path))
        self.path = path


def stages(owner: Mapping[str, str], parents: Mapping[str, Iterable[str]], order: Sequence[str]) -> list[Stage]:
    """Split nodes spread over domains (``owner``: node -> domain) into stages, each one domain's slice.

    A node's level counts the domain boundaries on its longest path of ``parents`` (a parent in another
    domain must be built, and published, one stage earlier; one in its own domain may be built with it).
    Stages go by level, then by the domain's place in ``order``. ModelCycle when the nodes form a cycle.
    """
    ups = {n: {p for p in parents.get(n, ()) if p in owner} for n in owner}
    found = find_cycle(ups)
    if found:
        raise ModelCycle(found)
    level: dict[str, int] = {}
    for node in topological_order(ups):
        level[node] = max((level[p] + (owner[p] != owner[node]) for p in ups[node]), default=0)
    rank = {name: i for i, name in enumerate(order)}
    slices: dict[tuple[int, str], list[str]] = {}
    for node, at in level.items():
        slices.setdefault((at, owner[node]), []).append(node)
    merged: list[tuple[str, list[str]]] = []
    for at, domain in sorted(slices, key=lambda k: (k[0], rank.get(k[1], len(rank)), k[1])):
        if merged and merged[-1][0] == domain:  # nothing of another domain in between: one dbt run
            merged[-1][1].extend(slices[(at, domain)])
        else:
            merged.append((domain, list(slices[(at, domain)])))
    last = {domain: i for i, (domain, _) in enumerate(merged)}
    return [Stage(i + 1, domain, tuple(sorted(nodes)), last[domain] == i) for i, (domain, nodes) in enumerate(merged)]
