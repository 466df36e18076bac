"""The letterbox: what one tick of the exchange sensor sees (no Dagster here).

A tick reads only JSON (each product's current pointer in the channel, each consumer's receipt), never a data
file: on a mesh of 20 domains it answers in well under a second. What is new is what changed since the cursor
(the current release of every product at the last tick); the readers woken are those `mesh sync` would rebuild
for it: a consumer whose receipt says it read an older release of a new one (or, never built, one that reads
the producing domain). One run is requested per tick, keyed by the releases that woke it, so a release wakes its
readers once however often the sensor ticks; a tick that finds something new numbers the cursor anew, so the same
release current again later (a promotion reverted) wakes its readers again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.exchange.sync import DomainState, reading
from mesh_tools.model.nodes import ProductKey, product_key
from mesh_tools.store.exchange import Exchange, open_exchange

CURSOR_LIMIT = 4 * 1024 * 1024  # bytes of a cursor read back (Dagster stores what the last tick returned)


@dataclass
class Tick:
    """One look into the exchange."""

    current: dict[str, str] = field(default_factory=dict)  # product -> its current release id: the next cursor
    sequence: int = 0  # the cursor's number: one more than the last one's when something is new
    new: dict[str, str] = field(default_factory=dict)  # product -> release id, current now and not at the last tick
    readers: dict[str, list[str]] = field(default_factory=dict)  # consumer -> the new products it reads
    problems: list[str] = field(default_factory=list)

    @property
    def run_key(self) -> str | None:
        """The same for the same releases and readers: Dagster requests a run once per key."""
        if not self.readers:
            return None
        woke = sorted((p, self.new[p]) for products in self.readers.values() for p in products)
        digest = hashlib.sha256(json.dumps([self.sequence, woke, sorted(self.readers)]).encode()).hexdigest()[:24]
        return f"mesh-mail-{digest}"

    def cursor(self) -> str:
        return json.dumps({"version": 1, "sequence": self.sequence, "current": self.current}, sort_keys=True)


@dataclass(frozen=True)
class Cursor:
    """What the last tick saw: each product's current release, and the cursor's number."""

    current: dict[str, str] = field(default_factory=dict)
    sequence: int = 0


def read_cursor(text: str | None) -> tuple[Cursor, str | None]:
    """The cursor a previous tick returned. Anything else (edited by hand, another sensor's) is read as no cursor,
    with the reason: every current release is then new once."""
    if not text:
        return Cursor(), None
    if len(text) > CURSOR_LIMIT:
        return Cursor(), f"the sensor's cursor is {len(text):,} characters, over {CURSOR_LIMIT:,}: started afresh"
    try:
        data = json.loads(text)
    except ValueError:
        return Cursor(), "the sensor's cursor is not JSON: started afresh"
    current = data.get("current") if isinstance(data, dict) else None
    sequence = data.get("sequence") if isinstance(data, dict) else None
    if (not isinstance(current, dict) or not isinstance(sequence, int) or isinstance(sequence, bool)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in current.items())):  # fmt: skip
        return Cursor(), "the sensor's cursor is not one this sensor wrote: started afresh"
    return Cursor(current, sequence), None


def current_pointers(mesh: Mesh, exchange: Exchange) -> tuple[dict[str, str], list[str]]:
    """Every mesh domain's products' current release in the exchange's channel."""
    out: dict[str, str] = {}
    problems: list[str] = []
    for name in mesh.order:
        try:
            for model, version in exchange.products_of(name):
                release = exchange.current_id(name, model, version)
                if release is not None:
                    out[product_key(name, model, version)] = release
        except (MeshError, OSError) as exc:
            problems.append(f"{name}: its releases could not be read ({exc})")
    return out, problems


def tick(mesh: Mesh, last: Cursor, busy: frozenset[str] = frozenset(), env: str | None = None) -> Tick:
    """What is new since ``cursor`` and who reads it. ``busy``: products a run in progress is building: a new
    release of one is left for a later tick (it stays at the cursor's value), so a release that run publishes
    is never taken for one published elsewhere, and its readers the run builds are not woken twice. ``env``: the
    channel (default ``MESH_ENV``, else prod)."""
    exchange = open_exchange(mesh, env)
    cursor = last.current
    found = Tick(sequence=last.sequence)
    found.current, found.problems = current_pointers(mesh, exchange)
    for product in busy:
        if product in cursor:
            found.current[product] = cursor[product]
        else:
            found.current.pop(product, None)
    found.new = {p: r for p, r in found.current.items() if cursor.get(p) != r}
    if not found.new:
        return found
    found.sequence += 1
    new_domains = {ProductKey.parse(p).domain for p in found.new}
    for name in mesh.order:
        domain = mesh.domains[name]
        if not set(domain.upstream_names) & new_domains:
            continue
        try:
            state = reading(mesh, exchange, domain, DomainState(name))
        except (MeshError, OSError) as exc:
            found.problems.append(f"{name}: its receipt could not be read ({exc})")
            continue
        woke = sorted(p for p in state.behind if p in found.new)
        if state.never_built:
            woke = sorted(p for p in found.new if ProductKey.parse(p).domain in domain.upstream_names)
        if woke:
            found.readers[name] = woke
    return found


def describe(mesh: Mesh, product: str, env: str | None = None) -> dict[str, Any] | None:
    """What a release published outside Dagster is reported with: its descriptor's facts."""
    key = ProductKey.parse(product)
    try:
        release = open_exchange(mesh, env).current(key.domain, key.model, key.version, verify=False)
    except (MeshError, OSError):
        return None
    if release is None:
        return None
    d = release.descriptor
    return {
        "release_id": d.release_id,
        "rows": d.row_count,
        "produced_at": d.produced_at,
        "sha256": [f.sha256 for f in d.files],
        "contract_hash": d.contract_hash,
    }
