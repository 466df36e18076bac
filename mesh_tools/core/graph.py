"""Order, cycles and selection over the graph of domains (upstream -> consumer)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


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


def topological_order(upstreams: Mapping[str, Iterable[str]]) -> list[str]:
    """Upstreams first; ties broken by name so the order is stable. Assumes no cycle."""
    remaining = {node: {u for u in ups if u in upstreams} for node, ups in upstreams.items()}
    order: list[str] = []
    while remaining:
        ready = sorted(node for node, ups in remaining.items() if not ups)
        if not ready:
            raise ValueError("cycle")  # callers check find_cycle first
        for node in ready:
            order.append(node)
            del remaining[node]
        for ups in remaining.values():
            ups.difference_update(ready)
    return order


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
