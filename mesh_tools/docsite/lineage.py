"""The model-level lineage graph across projects, and its drawing as inline SVG (no script, no CDN).

Node ids are dbt unique_ids. A consumer's stub of an upstream product carries the producer's own
unique_id (``model.sales.fct_orders.v2``), so the union of every domain's manifest is one graph
whose cross-project edges are exactly the two-argument refs (a shared seed's or snapshot's stub is a
model of its name: its edges are the seed's or snapshot's).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape

from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node, NodeId, package_of, resource_type_of, stub_id

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 26, 70, 16, 12


@dataclass
class Graph:
    """Models, seeds, snapshots and sources of every domain, and the edges between them."""

    project: dict[str, str] = field(default_factory=dict)  # uid -> owning project
    label: dict[str, str] = field(default_factory=dict)
    href: dict[str, str] = field(default_factory=dict)  # uid -> page (relative to the site root)
    parents: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    children: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    stubs: dict[str, str] = field(default_factory=dict)  # a stub's model id -> the shared seed or snapshot

    def add_manifest(self, project: str, manifest: Manifest) -> None:
        for node in [*manifest.nodes.values(), *manifest.sources.values()]:
            if node.resource_type not in ("model", "seed", "snapshot", "source"):
                continue
            if node.package != project:
                continue  # stubs and packages: their owner adds them
            uid = node.unique_id
            self.project[uid] = project
            self.label[uid] = _label(node)
            if stub_id(uid) != uid:
                self._shared(stub_id(uid), uid)
            for parent in node.depends_on:
                if resource_type_of(parent) in ("model", "seed", "snapshot", "source"):
                    parent = self.stubs.get(parent, parent)
                    self.parents[uid].add(parent)
                    self.children[parent].add(uid)

    def _shared(self, stub: str, real: str) -> None:
        """Consumers read a shared seed or snapshot through a stub model of its name: one node in the graph."""
        self.stubs[stub] = real
        for child in self.children.pop(stub, set()):
            self.parents[child].discard(stub)
            self.parents[child].add(real)
            self.children[real].add(child)

    def upstream(self, uid: str) -> set[str]:
        return _walk(uid, self.parents)

    def downstream(self, uid: str) -> set[str]:
        return _walk(uid, self.children)

    def is_cross(self, parent: str, child: str) -> bool:
        return self.project_of(parent) != self.project_of(child)

    def project_of(self, uid: str) -> str:
        return self.project.get(uid) or package_of(uid) or uid


def _label_of_id(uid: str) -> str:
    """The label of a node the graph has no manifest node of, from its id alone."""
    read = NodeId.read(uid)
    return read.label if read is not None else uid


def _label(node: Node) -> str:
    if node.resource_type == "source":
        return f"{node.source_name}.{node.name}"
    return node.label


def _walk(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    queue = deque([start])
    while queue:
        for nxt in edges.get(queue.popleft(), ()):
            if nxt not in seen and nxt != start:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _layers(nodes: set[str], graph: Graph) -> dict[str, int]:
    """Longest-path layering: each node one column right of its furthest parent in the set."""
    layer: dict[str, int] = {}
    indegree = {n: len(graph.parents.get(n, set()) & nodes) for n in nodes}
    queue = deque(sorted(n for n, d in indegree.items() if d == 0))
    while queue:
        uid = queue.popleft()
        parents = graph.parents.get(uid, set()) & nodes
        layer[uid] = max((layer[p] + 1 for p in parents if p in layer), default=0)
        for kid in sorted(graph.children.get(uid, set()) & nodes):
            indegree[kid] -= 1
            if indegree[kid] == 0:
                queue.append(kid)
    for uid in nodes - set(layer):  # a cycle (dbt refuses them; be safe)
        layer[uid] = 0
    return layer


def draw(
    graph: Graph,
    nodes: Iterable[str],
    focus: str | None = None,
    link_prefix: str = "",
    colors: dict[str, str] | None = None,
) -> str:
    """An SVG of ``nodes`` and the edges among them, left to right; cross-project edges are marked."""
    chosen = set(nodes)
    if not chosen:
        return ""
    layer = _layers(chosen, graph)
    columns: dict[int, list[str]] = defaultdict(list)
    for uid in chosen:
        columns[layer[uid]].append(uid)
    position: dict[str, tuple[float, float]] = {}
    order: dict[str, float] = {}
    for col in sorted(columns):
        members = columns[col]

        def key(uid: str) -> tuple[float, str, str]:
            parents = [order[p] for p in graph.parents.get(uid, set()) if p in order]
            centre = sum(parents) / len(parents) if parents else 0.0
            return (centre, graph.project_of(uid), graph.label.get(uid, uid))

        members.sort(key=key)
        for index, uid in enumerate(members):
            order[uid] = index
            position[uid] = (PAD + col * (NODE_W + GAP_X), PAD + index * (NODE_H + GAP_Y))
    width = PAD * 2 + (max(columns) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(len(m) for m in columns.values()) * (NODE_H + GAP_Y) - GAP_Y
    colors = colors or {}
    parts = [
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage of {len(chosen)} nodes">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8c959f"/></marker></defs>',
    ]
    for child in sorted(chosen):
        for parent in sorted(graph.parents.get(child, set()) & chosen):
            x1, y1 = position[parent]
            x2, y2 = position[child]
            x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
            cross = graph.is_cross(parent, child)
            dash = ' stroke-dasharray="5 3"' if cross else ""
            parts.append(
                f'<path class="edge{" cross" if cross else ""}" data-from="{escape(parent)}" data-to="{escape(child)}" '
                f'd="{_route(x1, y1, x2, y2)}" '
                f'fill="none" stroke="{"#cf222e" if cross else "#8c959f"}" stroke-width="{2 if cross else 1.2}"'
                f'{dash} marker-end="url(#arrow)"/>'
            )
    for uid in sorted(chosen):
        x, y = position[uid]
        project = graph.project_of(uid)
        fill = colors.get(project, "#f6f8fa")
        text = f"{project} · {graph.label.get(uid) or _label_of_id(uid)}"
        short = text if len(text) <= 27 else text[:26] + "…"  # the full name is the node's tooltip
        stroke = "#0969da" if uid == focus else "#57606a"
        box = (
            f'<rect x="{x:.0f}" y="{y:.0f}" rx="5" width="{NODE_W}" height="{NODE_H}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{2.5 if uid == focus else 1}"/>'
            f'<text x="{x + 8:.0f}" y="{y + 17:.0f}" font-size="12">{escape(short)}</text>'
        )
        title = f"<title>{escape(uid)}</title>"
        href = graph.href.get(uid)
        attrs = (
            f'class="node{" focus" if uid == focus else ""}" data-uid="{escape(uid)}" data-project="{escape(project)}"'
        )
        if href:
            parts.append(f'<a href="{escape(link_prefix + href)}"><g {attrs}>{title}{box}</g></a>')
        else:
            parts.append(f"<g {attrs}>{title}{box}</g>")
    parts.append("</svg>")
    return "".join(parts)


def _route(x1: float, y1: float, x2: float, y2: float) -> str:
    """An edge's path: a curve to the next column, or, across columns, along the gap under a row of
    boxes, so a long edge never runs through the boxes it passes."""
    if x2 - x1 <= GAP_X + 1:
        mid = (x1 + x2) / 2
        return f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
    lane = y1 + NODE_H / 2 + GAP_Y / 2  # the gap under the parent's row
    a, b = x1 + GAP_X / 2, x2 - GAP_X / 2
    return (
        f"M{x1:.0f},{y1:.0f} C{a:.0f},{y1:.0f} {x1:.0f},{lane:.0f} {a:.0f},{lane:.0f} "
        f"L{b:.0f},{lane:.0f} C{x2:.0f},{lane:.0f} {b:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
    )


PALETTE = ["#ddf4ff", "#fff8c5", "#dafbe1", "#ffebe9", "#fbefff", "#fff1e5", "#e7f3ff", "#eaeef2"]


def project_colors(projects: Iterable[str]) -> dict[str, str]:
    return {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(projects)}
