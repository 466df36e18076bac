"""The letterbox: what one tick of the exchange sensor sees (no Dagster here).

A tick reads only JSON (each product's current pointer in the channel, each consumer's receipt), never a data
file: on a mesh of 20 domains it answers in well under a second. What is new is what changed since the cursor
(the current release of every product at the last tick); the readers woken are those `mesh sync` would rebuild
for it: a consumer whose receipt says it read an older release of a new one (or, never built, one that reads
the producing domain). One run is requested per tick, keyed by the releases that woke it, so a release wakes its
readers once however often the sensor ticks.
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
    new: dict[str, str] = field(default_factory=dict)  # product -> release id, current now and not at the last tick
    readers: dict[str, list[str]] = field(default_factory=dict)  # consumer -> the new products it reads
    problems: list[str] = field(default_factory=list)

    @property
    def run_key(self) -> str | None:
        """The same for the same releases and readers: Dagster requests a run once per key."""
        if not self.readers:
            return None
        woke = sorted((p, self.new[p]) for products in self.readers.values() for p in products)
        digest = hashlib.sha256(json.dumps([woke, sorted(self.readers)]).encode()).hexdigest()[:24]
        return f"mesh-mail-{digest}"

    def cursor(self) -> str:
        return json.dumps(self.current, sort_keys=True)


def read_cursor(text: str | None) -> tuple[dict[str, str], str | None]:
    """The cursor a previous tick returned: product -> release id. Anything else (edited by hand, another
    sensor's) is read as no cursor, with the reason: every current release is then new once."""
    if not text:
        return {}, None
    if len(text) > CURSOR_LIMIT:
        return {}, f"the sensor's cursor is {len(text):,} characters, over {CURSOR_LIMIT:,}: started afresh"
    try:
        data = json.loads(text)
    except ValueError:
        return {}, "the sensor's cursor is not JSON: started afresh"
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return {}, "the sensor's cursor is not a map of products to release ids: started afresh"
    return data, None


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


def tick(mesh: Mesh, cursor: dict[str, str]) -> Tick:
    exchange = open_exchange(mesh)
    found = Tick()
    found.current, found.problems = current_pointers(mesh, exchange)
    found.new = {p: r for p, r in found.current.items() if cursor.get(p) != r}
    if not found.new:
        return found
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


def describe(mesh: Mesh, product: str) -> dict[str, Any] | None:
    """What a release published outside Dagster is reported with: its descriptor's facts."""
    key = ProductKey.parse(product)
    try:
        release = open_exchange(mesh).current(key.domain, key.model, key.version, verify=False)
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
