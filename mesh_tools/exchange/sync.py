"""Who is behind: compare each consumer's receipt with what it would read now (`mesh sync`, `mesh status`).

Only JSON files are read here (pointers, descriptors, receipts), never dbt, so an up-to-date
mesh answers in a fraction of a second; each current release's bytes are checked as consumers check them
(``store.verify``: hashed in a folder, downloaded once per stored version in an object store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mesh_tools.core.errors import ArtifactError, MeshError
from mesh_tools.core.graph import closure, invert
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.model.manifest import RunResults
from mesh_tools.model.nodes import ProductKey, product_key, split_product_key
from mesh_tools.store.exchange import Exchange, open_exchange, wanted_release
from mesh_tools.store.receipts import read_receipt
from mesh_tools.store.verify import Verifier


def split_key(key: str) -> tuple[str, str, str | None]:
    """``sales.fct_orders.v2`` -> (sales, fct_orders, "2"); ``customers.dim_customers`` -> (..., None)."""
    return split_product_key(key)


@dataclass
class DomainState:
    """One domain as the exchange sees it."""

    name: str
    last_build: dict[str, Any] | None = None
    releases: list[dict[str, Any]] = field(default_factory=list)  # its own current releases
    consumed: dict[str, str] = field(default_factory=dict)  # product -> release id it last read
    used: list[str] = field(default_factory=list)  # of those, the products its own nodes read (the rest: stubs only)
    channels: dict[str, str] = field(default_factory=dict)  # product -> the channel (or "pin") it came through
    behind: dict[str, str] = field(default_factory=dict)  # product -> the release it would read now
    never_built: bool = False

    @property
    def is_behind(self) -> bool:
        return bool(self.behind) or self.never_built

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.name,
            "last_build": self.last_build,
            "current_releases": self.releases,
            "consumed": self.consumed,
            "used": self.used,
            "channels": self.channels,
            "behind": self.behind,
            "never_built": self.never_built,
            "is_behind": self.is_behind,
        }


def _wanted(exchange: Exchange, domain: Domain, key: ProductKey) -> str | None:
    """The release ``domain`` would read of ``key`` now: its pin, else the first of its channels' current."""
    return wanted_release(exchange, domain, key.domain, key.model, key.version)


def _own_releases(verifier: Verifier, domain: str) -> list[dict[str, Any]]:
    """The domain's current releases in this run's channel, checked as consumers check them (size and SHA-256;
    "verified": false with the reason where the bytes were not checked); a dangling pointer or a broken or
    altered release is listed with its problem."""
    exchange = verifier.exchange
    out: list[dict[str, Any]] = []
    for model, number in exchange.products_of(domain):
        label = product_key(domain, model, number)
        try:
            checked = verifier.current(domain, model, number)
        except (MeshError, OSError) as exc:
            shown = exchange.backend.display(exchange.pointer_key(domain, model, number))
            problem = str(exc) if isinstance(exc, MeshError) else f"{shown}: unreadable ({exc})"
            out.append({"product": label, "release_id": None, "problem": problem})
            continue
        if checked is None:
            continue
        descriptor = checked.release.descriptor
        confirmed = exchange.confirmation(descriptor)  # a later rebuild with the same rows, when one confirmed it
        out.append(
            {
                "product": descriptor.product,
                "release_id": descriptor.release_id,
                "rows": descriptor.row_count,
                "produced_at": descriptor.produced_at,
                "contract_hash": descriptor.contract_hash,
                "channel": exchange.env,
                "verified": checked.verified,
                **({"confirmed_at": confirmed.confirmed_at} if confirmed else {}),
                **({"unverified": checked.unverified} if checked.unverified else {}),
            }
        )
    return out


def _last_build(domain: Domain) -> dict[str, Any] | None:
    """The domain's last dbt invocation; None when it never ran; a ``problem`` when its results are corrupt."""
    try:
        results = RunResults.read(domain.run_results_path, missing_ok=True)
    except ArtifactError as exc:
        return {"command": None, "finished_at": None, "ok": False, "seconds": 0.0, "problem": str(exc)}
    if results is None:
        return None
    return {
        "command": results.command,
        "finished_at": results.generated_at,
        "ok": not any(r.status in ("error", "fail") for r in results.results),
        "seconds": round(results.elapsed_time or 0.0, 1),
    }


def domain_states(mesh: Mesh) -> list[DomainState]:
    exchange = open_exchange(mesh)
    verifier = Verifier(exchange)
    states = []
    for name, domain in mesh.domains.items():
        state = DomainState(name, last_build=_last_build(domain), releases=_own_releases(verifier, name))
        reading(mesh, exchange, domain, state)
        states.append(state)
    return states


def reading(mesh: Mesh, exchange: Exchange, domain: Domain, state: DomainState) -> DomainState:
    """Fill in what ``domain`` last read (its receipt) and the releases it would read now where they differ:
    JSON files only (its receipt, pointers), no data file read."""
    mesh_upstreams = [u.name for u in domain.upstreams if u.name in mesh.domains or u.remote]
    if not mesh_upstreams:
        return state
    receipt = read_receipt(exchange, domain.name)
    if receipt is None:
        state.never_built = True
        return state
    state.consumed = {str(k): v for k, v in receipt.releases.items()}
    state.channels = {str(k): v for k, v in receipt.channels.items()}
    state.used = sorted(str(k) for k in receipt.used)
    for key in receipt.used:
        wanted = _wanted(exchange, domain, key)
        if wanted is not None and wanted != receipt.releases.get(key):
            state.behind[str(key)] = wanted
    return state


def sync_plan(mesh: Mesh, selected: list[str]) -> tuple[list[str], dict[str, str]]:
    """Domains to rebuild (the behind ones and everything downstream of them), with why."""
    states = {s.name: s for s in domain_states(mesh)}
    reasons: dict[str, str] = {}
    for name in selected:
        state = states[name]
        if state.never_built:
            reasons[name] = "never built against published releases"
        elif state.behind:
            reasons[name] = "newer release of " + ", ".join(sorted(state.behind))
    downstream = invert(mesh.upstream_graph())
    for name in list(reasons):
        for child in closure([name], downstream):
            reasons.setdefault(child, f"downstream of {name}")
    return [n for n in mesh.order if n in reasons], reasons
