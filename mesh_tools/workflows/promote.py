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
from typing import Any

from mesh_tools.core.channels import check_channel
from mesh_tools.core.errors import ConfigError, MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.governance.rules.versions import breaking_changes
from mesh_tools.model.interface import InterfaceShape
from mesh_tools.model.nodes import Node, product_key
from mesh_tools.model.release import ReleaseDescriptor
from mesh_tools.store.exchange import open_exchange


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


def _promote_interface(exchange: Any, domain: str, source: str, dest: str, nodes: list[str]) -> None:
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
    source, dest = check_channel(source, "promote --from"), check_channel(dest, "promote --to")
    if source == dest:
        raise ConfigError(f"--from and --to are both {source!r}: nothing to promote.")
    if domain not in mesh.domains:
        raise ConfigError(f"no domain {domain!r} in this mesh ({', '.join(mesh.domains)}).")
    exchange = open_exchange(mesh, env=dest)
    plans: list[tuple[Promotion, ReleaseDescriptor, str | None]] = []
    for model, version in exchange.products_of(domain):
        release_id = exchange.current_id(domain, model, version, source)
        if release_id is None:
            continue
        previous, tag = exchange.read_pointer(domain, model, version, dest)
        key = product_key(domain, model, version)
        step = Promotion(key, release_id, previous, [])
        try:
            # verified by hash: the store's own bytes, not a copy cached before someone changed them
            d = exchange.load(domain, model, version, release_id, refetch=True).descriptor
        except MeshError as exc:
            step.problems.append(str(exc))
            plans.append((step, None, tag))  # type: ignore[arg-type]
            continue
        if d.tests.failed:
            step.problems.append(f"{d.tests.failed} data test(s) failed in the build of release {release_id}")
        if previous is not None and previous != release_id:
            try:
                before = exchange.load(domain, model, version, previous, verify=False).descriptor
            except MeshError:
                before = None  # an unreadable target release protects nobody
            if before is not None and (mesh.governance.enforce or before.contract.enforced):
                prior = {**before.contract.model_dump(), "release": before.release_id}
                for change, _column in breaking_changes(prior, _as_node(d)):
                    step.problems.append(
                        f"{change} since {dest}'s release {before.release_id}, without a new version (GOV301)"
                    )
        plans.append((step, d, tag))
    if not plans:
        raise ConfigError(
            f"{domain} has no release current in {source!r}: build it there first (`mesh build {domain} --env "
            f"{source}`)."
        )
    if dry_run or any(step.problems for step, _, _ in plans):
        return [step for step, _, _ in plans]
    for step, descriptor, tag in plans:
        if step.previous == step.release_id:
            continue
        exchange.switch_current(descriptor, channel=dest, expected=tag)
        exchange.append_log({"event": "promote", "product": step.product, "release_id": step.release_id,
                             "from": source, "to": dest, "previous": step.previous, "env": dest})  # fmt: skip
        step.done = True
    if not exchange.local:
        _promote_interface(exchange, domain, source, dest, [d.node for step, d, _ in plans if step.done])
    return [step for step, _, _ in plans]
