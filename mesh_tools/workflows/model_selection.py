"""Model-level selection across domains: the models a selection names over the mesh's model graph, as one slice
(a dbt selection) per domain.

``mesh build -s sales.fct_orders+`` builds that model and everything downstream of it in every domain: the
models of other domains that read it (through its products) and their downstream, and only those. The graph
is the one staged builds use (workflows/stages.py ``model_graph``), over every domain's manifest; each domain's
share is a ``StageSlice`` whose `dbt build` selects exactly its nodes. What a slice leaves out of its domain is
owed a run (the state-aware build builds it next time it runs in full), and the publish gate releases only
the products the slice rebuilt, with their tests: the others keep their current release.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mesh_tools.core.errors import ConfigError
from mesh_tools.core.graph import cycles
from mesh_tools.core.mesh import Mesh
from mesh_tools.core.selection import Criterion, Selection, SelectionError, evaluate, nothing_selected
from mesh_tools.core.suggestions import did_you_mean
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node, package_of, resource_type_of
from mesh_tools.workflows.domain_run import StageSlice
from mesh_tools.workflows.stages import (
    BUILT,
    UnknownProduct,
    _selector,
    model_graph,
    own_built,
    unknown_product_message,
)


def node_label(domain: str, node: Node) -> str:
    """How a user names a node across domains: ``domain.name``, ``domain.name.vN`` for a version."""
    return f"{domain}.{node.name}" + (f".v{node.version}" if node.version is not None else "")


@dataclass(frozen=True)
class Listed:
    """One model, seed or snapshot of a domain, as `mesh ls --models` shows it and -s names it."""

    label: str  # domain.name[.vN]
    unique_id: str
    resource_type: str
    access: str


def mesh_models(mesh: Mesh, names: list[str]) -> dict[str, list[Listed]]:
    """The models, seeds and snapshots of each of ``names`` that has a manifest (the others are left out)."""
    out: dict[str, list[Listed]] = {}
    for name in names:
        path = mesh.domains[name].manifest_path
        if not path.is_file():
            continue
        manifest = Manifest.load(path, name, f"Run `mesh stitch {name}`.")
        out[name] = [Listed(node_label(name, n), n.unique_id, n.resource_type, n.access)
                     for n in sorted(own_built(manifest), key=lambda n: n.unique_id)]  # fmt: skip
    return out


def _manifests(mesh: Mesh) -> dict[str, Manifest]:
    missing = [n for n in mesh.order if not mesh.domains[n].manifest_path.is_file()]
    if missing:
        raise ConfigError(
            f"a model-level selection reads every domain's manifest, and {', '.join(missing)} has none yet: run "
            f"`mesh stitch` (it parses, builds nothing) or `mesh build` first."
        )
    return {n: Manifest.load(mesh.domains[n].manifest_path, n, f"Run `mesh stitch {n}`.") for n in mesh.order}


def select_models(
    mesh: Mesh, selection: Selection, manifests: dict[str, Manifest] | None = None
) -> dict[str, StageSlice]:
    """Per domain with a selected node, in dependency order: the slice its `dbt build` runs (``manifests``: each
    domain's, read from its target/ when not given). SelectionError for a name no domain or model has (with the
    closest), or a selection that names nothing; ConfigError when it reaches into a cycle of domains (those
    are built whole, in stages)."""
    manifests = manifests if manifests is not None else _manifests(mesh)
    try:
        graph = model_graph(list(mesh.order), manifests)
    except UnknownProduct as unknown:
        raise ConfigError(unknown_product_message(mesh, unknown)) from None
    nodes = {u: manifests[d].nodes[u] for u, d in graph.owner.items() if resource_type_of(u) in BUILT}
    ups = {u: {p for p in graph.parents.get(u, ()) if p in nodes} for u in nodes}
    chosen = evaluate(selection, ups, lambda c: _named(mesh, c, nodes, graph.owner))
    if not chosen:
        raise nothing_selected(selection, "model, seed or snapshot")
    touched = {graph.owner[u] for u in chosen}
    domain_ups = {n: {u for u in mesh.domains[n].upstream_names if u in mesh.domains} for n in mesh.domains}
    for group in cycles(domain_ups):
        if touched & set(group):
            raise ConfigError(
                f"the selection '{selection}' reaches {', '.join(sorted(touched & set(group)))}, of the cycle of "
                f"domains {', '.join(group)}, which is built whole, in stages: select those domains by name "
                f"(`mesh build -s {group[0]}`)."
            )
    out: dict[str, StageSlice] = {}
    for name in mesh.order:
        mine = sorted(u for u in chosen if graph.owner[u] == name)
        if not mine:
            continue
        rest = sorted(u for u, d in graph.owner.items() if d == name and u in nodes and u not in chosen)
        # with the stubs they read: a stub's relation points at the release it was stitched from, so one left
        # out would keep the selected consumer reading the release before this build's
        stubs = sorted({p for u in mine for p in nodes[u].depends_on if resource_type_of(p) == "model"
                        and package_of(p) != name and p in manifests[name].nodes})  # fmt: skip
        select = tuple(_selector(nodes[u]) for u in mine) + tuple(_selector(manifests[name].nodes[p]) for p in stubs)
        out[name] = StageSlice(1, 1, tuple(mine), (), tuple(rest), True, select)
    return out


def _named(mesh: Mesh, criterion: Criterion, nodes: Mapping[str, Node], owner: Mapping[str, str]) -> set[str]:
    """The nodes a criterion's method and value name (before its + and @)."""
    if criterion.method in ("tag", "group"):
        found = {u for u, n in nodes.items() if any(criterion.matches(v) for v in _values(n, criterion.method))}
        if not found:
            known = sorted({v for n in nodes.values() for v in _values(n, criterion.method)})
            raise SelectionError(
                f"no model has {criterion.method} '{criterion.value}' (selection '{criterion.text}')."
                f"{did_you_mean(criterion.value, known)}"
                + (f" Known: {', '.join(known[:20])}." if known else f" No model has a {criterion.method}.")
            )
        return found
    if not criterion.model_level or criterion.method == "domain" or "." not in criterion.value:
        domains = mesh.domains_named(criterion)  # a whole domain: each of its nodes
        return {u for u in nodes if owner[u] in domains}
    domain_part, _, model_part = criterion.value.partition(".")
    domains = mesh.domains_named(Criterion(criterion.text, "domain", domain_part))
    found = set()
    for uid, node in nodes.items():
        if owner[uid] not in domains:
            continue
        names = (node.name, f"{node.name}.v{node.version}" if node.version is not None else node.name)
        pattern = Criterion(criterion.text, "model", model_part)
        if any(pattern.matches(n) for n in names):
            found.add(uid)
    if not found:
        labels = sorted({node_label(owner[u], n) for u, n in nodes.items()} | {f"{owner[u]}.{n.name}" for u, n in
                                                                                nodes.items()})  # fmt: skip
        raise SelectionError(
            f"no model, seed or snapshot '{criterion.value}' in the mesh (selection '{criterion.text}')."
            f"{did_you_mean(criterion.value, labels)} Name one as DOMAIN.MODEL or DOMAIN.MODEL.vN "
            "(`mesh ls --models` lists them)."
        )
    return found


def _values(node: Node, method: str) -> list[str]:
    if method == "group":
        return [node.group] if node.group else []
    tags = node.get("tags") or (node.config.get("tags") if isinstance(node.config, Mapping) else None) or []
    return [str(t) for t in tags] if isinstance(tags, list) else [str(tags)]


def plan_selection(
    mesh: Mesh, selection: Selection, command: str, models: bool
) -> tuple[list[str], dict[str, StageSlice]]:
    """The domains a command runs, in order, and (``models``: a command that builds models, given a model-level
    selection) each one's slice. Everything when the selection is empty."""
    if selection.empty:
        return mesh.order, {}
    if models and selection.model_level:
        slices = select_models(mesh, selection)
        return list(slices), slices
    return mesh.select_parsed(selection, command), {}
