"""Privacy: personal data leaves a domain only to the domains its policy names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.rule import Finding, rule
from mesh_tools.model.nodes import Node


def _malformed(node: Node, key: str) -> str | None:
    """How ``meta.<key>`` is written when it is present and not a list of domain names (or None)."""
    if key not in node.meta:
        return None
    value: Any = node.meta[key]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return None
    if value is None:
        return "written with no value"
    if isinstance(value, list):
        return "a list with something else than domain names in it"
    return f"a {type(value).__name__} ({str(value)[:40]!r}), not a list"


@rule("GOV401", "pii-policy")
def pii(ctx: CheckContext) -> Iterator[Finding]:
    """PII columns (`meta: {pii: true}`) reach only the domains a public model's policy allows.

    Rationale:
        Personal data must not spread through the mesh by default; who may read it is a decision
        the owning domain writes down (`meta: {pii_allowed_consumers: [marketing]}`).
    Example:
        dim_customers exposes `email` (pii) and finance refs it, but only marketing is allowed.
    Fix:
        Mask the column (mesh_macros.mask_pii / mask_email) or add the consumer to
        `pii_allowed_consumers` after the privacy review.
    """
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
            columns = node.pii_columns
            if not columns:
                continue
            shape = _malformed(node, "pii_allowed_consumers")
            if shape:
                yield ctx.finding(
                    domain,
                    node,
                    f"public model '{node.name}': meta.pii_allowed_consumers is {shape}, so no domain reads its "
                    f"PII ({', '.join(columns)}) in clear. Write a list of domain names: [marketing] (or [] for none)",
                )
            allowed = node.pii_readers
            if allowed is None:
                yield ctx.finding(
                    domain,
                    node,
                    f"public model '{node.name}' exposes PII ({', '.join(columns)}) with no policy: set "
                    "meta.pii_allowed_consumers (an empty list allows no other domain)",
                )
                allowed = []
            for ref in ctx.consumers_of(node.unique_id):
                if ref.consumer not in allowed:
                    yield ctx.finding(
                        ref.consumer,
                        ref.node,
                        f"'{ref.node.name}' reads PII ({', '.join(columns)}) of {node.unique_id}, "
                        f"whose policy does not allow {ref.consumer}",
                    )


@rule("GOV402", "restricted-consumers")
def restricted(ctx: CheckContext) -> Iterator[Finding]:
    """A product restricted to named consumers (`meta: {allowed_consumers: [...]}`) has no others.

    Rationale:
        A producer may share a product with chosen domains only (contracts, licences, load). A value that
        is not a list of names (a string, the key with no value) allows no one: it fails closed, and says so.
        `mesh stitch` also refuses such a ref, before dbt runs.
    Example:
        `allowed_consumers: [finance]` on a product that marketing refs.
    Fix:
        Ask the producer to add your domain, or use another product.
    """
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
            shape = _malformed(node, "allowed_consumers")
            if shape:
                yield ctx.finding(
                    domain,
                    node,
                    f"public model '{node.name}': meta.allowed_consumers is {shape}, so no other domain may read "
                    "it (it fails closed). Write a list of domain names: [finance, marketing]",
                )
            allowed = node.allowed_consumers
            if allowed is None:
                continue
            for ref in ctx.consumers_of(node.unique_id):
                if ref.consumer not in allowed:
                    yield ctx.finding(
                        ref.consumer,
                        ref.node,
                        f"'{ref.node.name}' reads {node.unique_id}, which {domain} restricts to: "
                        + (", ".join(allowed) or "no one"),
                    )
