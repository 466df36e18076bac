"""Promotion: make a domain's releases of one channel current in another (``mesh promote``), data untouched.

A promotion moves pointers, never data: the release a dev build published becomes the one prod's
consumers read. It passes a gate first, product by product, and nothing moves unless every
product passes:

- the release is whole: its descriptor readable and its files' SHA-256 as recorded (fetched and
  verified from an object store);
- its build's data tests passed (as recorded in the descriptor when it was published), whether governance
  is enforced or advisory (advisory lets a domain publish with findings, never promote failed tests);
- its contract breaks nothing the target channel's consumers read: a breaking change against the
  target's current release (removed column, changed type, dropped constraint) is refused as
  `mesh publish` refuses it (GOV301) — always when governance is enforced, else when the target's
  contract is enforced.

Each pointer is switched with compare-and-swap: a publish or promotion that moved it meanwhile
wins, and this one reports the conflict.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh_tools.core.channels import check_channel
from mesh_tools.core.errors import ConfigError, MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.governance.rules.versions import breaking_changes
from mesh_tools.model.interface import InterfaceShape
from mesh_tools.model.nodes import Node, product_key
from mesh_tools.model.release import ReleaseDescriptor
from mesh_tools.store.exchange import Exchange, open_exchange


@dataclass
class Promotion:
    product: str
    release_id: str
    previous: str | None  # the target channel's release before
    problems: list[str]
    done: bool = False


def _as_node(d: ReleaseDescriptor) -> Node:
    """The released contract as the model node the breaking-change rule compares with."""
    columns = {c.name: c.model_dump() for c in d.contract.columns}
    raw = {"columns": columns, "constraints": d.contract.constraints, "access": "public",
           "contract": {"enforced": d.contract.enforced}}  # fmt: skip
    return Node(d.node, raw)


def _promote_interface(exchange: Exchange, domain: str, source: str, dest: str, nodes: list[str]) -> None:
    """Consumers elsewhere stitch against the interface of the releases they read: the target's interface
    takes the source's nodes of the promoted products and keeps its own for every other product (a version
    the source dropped stays readable where its pointer still is)."""

    def interface(channel: str) -> InterfaceShape | None:
        key = exchange.interface_key(domain, channel)
        raw = exchange.backend.read(key)
        if raw is None:
            return None
        fix = f"Publish {domain} to {channel} again (`mesh build {domain} --env {channel}`)."
        return InterfaceShape.parse(raw, domain, exchange.backend.display(key), fix)

    promoted = interface(source)
    if promoted is None:
        return
    merged = promoted.promoted(interface(dest), nodes)
    exchange.backend.write(exchange.interface_key(domain, dest), merged.to_bytes())


def promote(mesh: Mesh, domain: str, source: str, dest: str, *, dry_run: bool = False) -> list[Promotion]:
    """Promote every product of ``domain`` current in ``source`` to ``dest`` (all, or none when one fails)."""
    source, dest = _checked_request(mesh, domain, source, dest)
    exchange = open_exchange(mesh, env=dest)
    plans = _plans(mesh, exchange, domain, source, dest)
    if not plans:
        raise ConfigError(
            f"{domain} has no release current in {source!r}: build it there first (`mesh build {domain} --env "
            f"{source}`)."
        )
    if dry_run or any(plan.step.problems for plan in plans):
        return [plan.step for plan in plans]
    moved = _switch_pointers(exchange, plans, source, dest)
    if not exchange.local:
        _promote_interface(exchange, domain, source, dest, moved)
    return [plan.step for plan in plans]


@dataclass
class _Plan:
    """One product's promotion as the gate left it: its step, the release to make current (None: unreadable, the
    step says why), and the target pointer's tag for compare-and-swap."""

    step: Promotion
    descriptor: ReleaseDescriptor | None
    tag: str | None


def _checked_request(mesh: Mesh, domain: str, source: str, dest: str) -> tuple[str, str]:
    """The two channels, checked, once the request makes sense (ConfigError otherwise)."""
    source, dest = check_channel(source, "promote --from"), check_channel(dest, "promote --to")
    if source == dest:
        raise ConfigError(f"--from and --to are both {source!r}: nothing to promote.")
    if domain not in mesh.domains:
        raise ConfigError(f"no domain {domain!r} in this mesh ({', '.join(mesh.domains)}).")
    return source, dest


def _plans(mesh: Mesh, exchange: Exchange, domain: str, source: str, dest: str) -> list[_Plan]:
    """A gated plan for every product of ``domain`` with a release current in ``source``."""
    plans: list[_Plan] = []
    for model, version in exchange.products_of(domain):
        release_id = exchange.current_id(domain, model, version, source)
        if release_id is not None:
            plans.append(_plan(mesh, exchange, domain, model, version, release_id, dest))
    return plans


def _plan(
    mesh: Mesh, exchange: Exchange, domain: str, model: str, version: str | None, release_id: str, dest: str
) -> _Plan:
    """One product's release through the gate: whole (verified by hash), its data tests passed, and breaking
    nothing of ``dest``'s current release."""
    previous, tag = exchange.read_pointer(domain, model, version, dest)
    step = Promotion(product_key(domain, model, version), release_id, previous, [])
    try:
        # verified by hash: the store's own bytes, not a copy cached before someone changed them
        d = exchange.load(domain, model, version, release_id, refetch=True).descriptor
    except MeshError as exc:
        step.problems.append(str(exc))
        return _Plan(step, None, tag)
    if d.tests.failed:
        step.problems.append(f"{d.tests.failed} data test(s) failed in the build of release {release_id}")
    if previous is not None and previous != release_id:
        before = _target_release(exchange, domain, model, version, previous)
        step.problems += _breaking(mesh, d, before, dest)
    return _Plan(step, d, tag)


def _target_release(
    exchange: Exchange, domain: str, model: str, version: str | None, release_id: str
) -> ReleaseDescriptor | None:
    """The target channel's current release, or None when it is unreadable (it then protects nobody)."""
    try:
        return exchange.load(domain, model, version, release_id, verify=False).descriptor
    except MeshError:
        return None


def _breaking(mesh: Mesh, d: ReleaseDescriptor, before: ReleaseDescriptor | None, dest: str) -> list[str]:
    """What the release breaks of the target's release without a new version (GOV301), when governance is
    enforced or the target's contract is."""
    if before is None or not (mesh.governance.enforce or before.contract.enforced):
        return []
    prior = {**before.contract.model_dump(), "release": before.release_id}
    return [
        f"{change} since {dest}'s release {before.release_id}, without a new version (GOV301)"
        for change, _column in breaking_changes(prior, _as_node(d))
    ]


def _switch_pointers(exchange: Exchange, plans: list[_Plan], source: str, dest: str) -> list[str]:
    """Make each planned release current in ``dest`` (compare-and-swap on its pointer, logged); the nodes of the
    products it moved."""
    moved: list[str] = []
    for plan in plans:
        step, descriptor = plan.step, plan.descriptor
        assert descriptor is not None  # an unreadable release is a problem, and a problem moves nothing
        if step.previous == step.release_id:
            continue
        exchange.switch_current(descriptor, channel=dest, expected=plan.tag)
        exchange.append_log({"event": "promote", "product": step.product, "release_id": step.release_id,
                             "from": source, "to": dest, "previous": step.previous, "env": dest})  # fmt: skip
        step.done = True
        moved.append(descriptor.node)
    return moved
