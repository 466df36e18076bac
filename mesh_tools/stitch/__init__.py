"""Stitching: make ``ref('<project>', '<model>')`` resolve in plain dbt-core.

For each upstream a consumer declares, a read-only dbt package named after the upstream is
generated into the consumer's packages folder. It holds the upstream's public models with
their whole YAML definition, each materialized in the consumer as a contract-checked view over
the upstream's data. See docs/explanation/stitching.md.
"""
