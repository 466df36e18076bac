"""Data products: what every public model promises its consumers."""

from __future__ import annotations

from collections.abc import Iterator

from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.rule import Finding, rule


@rule("GOV101", "product-contract-enforced")
def contract_enforced(ctx: CheckContext) -> Iterator[Finding]:
    """Every public model has an enforced contract.

    Rationale:
        A data product's columns and types are a promise; without an enforced contract dbt does
        not check it, and a consumer learns of a change when its own build breaks.
    Example:
        `access: public` on a model without `config: {contract: {enforced: true}}`.
    Fix:
        Add `contract: {enforced: true}` to the model's config and a `data_type` to every column.
    """
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
            if not node.contract_enforced:
                yield ctx.finding(domain, node, f"public model '{node.name}' has no enforced contract")


@rule("GOV102", "product-column-types")
def column_types(ctx: CheckContext) -> Iterator[Finding]:
    """Every column of a public model has a data type.

    Rationale:
        Consumers (and the stubs that let them ref the product) read types from the contract.
    Example:
        A public model's YAML lists `- name: amount` without `data_type`.
    Fix:
        Give every column a `data_type`; list every column the model returns.
    """
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
            columns = node.columns
            if not columns:
                yield ctx.finding(domain, node, f"public model '{node.name}' declares no columns")
            untyped = [name for name, column in columns.items() if not column.data_type]
            if untyped:
                yield ctx.finding(domain, node, f"public model '{node.name}': columns without data_type: "
                               + ", ".join(untyped))  # fmt: skip


@rule("GOV103", "product-description")
def description(ctx: CheckContext) -> Iterator[Finding]:
    """Every public model has a description.

    Rationale:
        A product nobody can understand is not a product; the docs site and catalog show it.
    Example:
        A public model with no `description:`.
    Fix:
        Describe what one row is and what the product is for.
    """
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
            if not node.description.strip():
                yield ctx.finding(domain, node, f"public model '{node.name}' has no description")


@rule("GOV104", "product-owner")
def owner(ctx: CheckContext) -> Iterator[Finding]:
    """Every public model belongs to a group with an owner.

    Rationale:
        Consumers need someone to ask, and problems need someone to page.
    Example:
        A public model without `group:`, or a group without `owner: {name, email}`.
    Fix:
        Put the model in a group whose owner has a name or an e-mail address.
    """
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
            if not node.group:
                yield ctx.finding(domain, node, f"public model '{node.name}' belongs to no group")
            elif not any(ctx.owner(domain, node).get(k) for k in ("name", "email")):
                yield ctx.finding(domain, node, f"group '{node.group}' of '{node.name}' has no owner")


@rule("GOV105", "product-primary-key-tests")
def primary_key_tests(ctx: CheckContext) -> Iterator[Finding]:
    """Every public model tests its primary key with unique and not_null.

    Rationale:
        Consumers join on the key; duplicates or nulls silently multiply or drop their rows.
    Example:
        `order_id` has `not_null` but no `unique` test.
    Fix:
        Add `data_tests: [unique, not_null]` to the key column (the primary_key constraint's column, if any).
    """
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
            tests: dict[str, set[str]] = {}
            for test in ctx.tests_on(node.unique_id):
                column = test.column_name or test.test_kwargs.get("column_name")
                if column:
                    tests.setdefault(str(column), set()).add(test.test_name or "")
            keys = [col for c in node.constraints if c.get("type") == "primary_key" for col in c.get("columns") or []]
            candidates = keys or list(tests)
            if not any({"unique", "not_null"} <= tests.get(col, set()) for col in candidates):
                where = f" on its key {', '.join(keys)}" if keys else ""
                yield ctx.finding(domain, node, f"public model '{node.name}' has no unique + not_null tests{where}")


@rule("GOV106", "product-column-descriptions", severity="warn")
def column_descriptions(ctx: CheckContext) -> Iterator[Finding]:
    """Every column of a public model has a description.

    Rationale:
        Column meaning (units, time zones, null semantics) is what consumers get wrong most.
    Example:
        `- name: amount` with no `description:`.
    Fix:
        Describe each column, including its unit.
    """
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
            bare = [name for name, column in node.columns.items() if not column.description.strip()]
            if bare:
                yield ctx.finding(domain, node, f"public model '{node.name}': columns without description: "
                               + ", ".join(bare))  # fmt: skip


@rule("GOV107", "product-data-contract")
def data_contract(ctx: CheckContext) -> Iterator[Finding]:
    """A product's current release passes its ODCS data contract, checked by datacontract-cli.

    Rationale:
        The contract (ODCS v3, beside each release) is what catalogs and consumers' tools read. The
        mesh's own gate checks the build; `datacontract test` checks the released file itself
        against the contract as others will, with a tool other than the one that wrote both.
        Checked by `mesh check --datacontract`, which needs datacontract-cli (its own environment:
        `MESH_DATACONTRACT`, or `datacontract` on the PATH); without it there is nothing to check.
    Example:
        A release whose `order_id` has duplicates while its contract says `unique: true`.
    Fix:
        Fix the data or the model's tests and constraints, build and publish again; `datacontract
        test <file>` on the contract `mesh contracts export` writes shows every check.
    """
    for domain, problems in ctx.contract_tests.items():
        for product, problem in problems:
            nodes = ctx.public_models(domain) if domain in ctx.manifests else iter(())
            node = next((n for n in nodes if n.key == product), None)
            if node is not None:
                yield ctx.finding(domain, node, f"{product}: {problem}")
            else:
                yield Finding(domain, f"{product}: {problem}", file=ctx.root_relative(ctx.domain(domain).path))
