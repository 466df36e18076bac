"""Privacy: personal data leaves a domain only to the domains its policy names."""

from __future__ import annotations

from collections.abc import Iterator

from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.rule import Finding, rule


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
        A producer may share a product with chosen domains only (contracts, licences, load).
    Example:
        `allowed_consumers: [finance]` on a product that marketing refs.
    Fix:
        Ask the producer to add your domain, or use another product.
    """
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
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
