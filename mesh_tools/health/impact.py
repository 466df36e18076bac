"""Impact on consumers: which domains read each product, and every product downstream of a failing
or stale one, across domains, is at risk (with its owner named)."""

from __future__ import annotations

from collections import deque

from mesh_tools.health.report import RANK, Impacted, Problem, ProductHealth, worst
from mesh_tools.model.nodes import package_of, resource_type_of


def consumers(products: dict[str, ProductHealth], children: dict[str, set[str]]) -> None:
    """Each product's consumers: the other domains whose nodes read it."""
    for product in products.values():
        product.consumers = sorted(
            {p for kid in children.get(product.node, ()) if (p := package_of(kid)) not in (None, product.domain)}
        )


def downstream_of(
    root: ProductHealth, products: dict[str, ProductHealth], children: dict[str, set[str]]
) -> list[Impacted]:
    """The products downstream of ``root`` through models of any domain, nearest first."""
    seen, queue = {root.node: 0}, deque([root.node])
    impacted: list[Impacted] = []
    while queue:
        uid = queue.popleft()
        for kid in sorted(children.get(uid, ())):
            if kid in seen or resource_type_of(kid) != "model":
                continue
            seen[kid] = seen[uid] + 1
            queue.append(kid)
            if kid in products:
                downstream = products[kid]
                impacted.append(Impacted(product=downstream.product, domain=downstream.domain,
                                         owner=downstream.owner, distance=seen[kid]))  # fmt: skip
    return impacted


def impact(products: dict[str, ProductHealth], children: dict[str, set[str]]) -> None:
    """Name the consumers of every product, and put every product downstream of a failing or stale one at risk."""
    roots = [p for p in products.values() if RANK[worst([x.status for x in p.problems])] >= RANK["stale"]]
    consumers(products, children)
    for root in roots:
        status = worst([x.status for x in root.problems])
        impacted = downstream_of(root, products, children)
        for problem in root.problems:
            if problem.status in ("failing", "stale"):
                problem.impact = impacted
        for hit in impacted:
            downstream = next(p for p in products.values() if p.product == hit.product)
            if root.product in downstream.at_risk_from:
                continue
            downstream.at_risk_from.append(root.product)
            downstream.problems.append(
                Problem(
                    kind="upstream",
                    status="warning",
                    domain=downstream.domain,
                    product=downstream.product,
                    owner=downstream.owner,
                    message=f"at risk: upstream {root.product} is {status} (owner {root.owner or 'unknown'})",
                )
            )
