"""Engines: one module per warehouse engine, answering every engine question the mesh asks.

``duckdb`` (the embedded default) and ``spark`` (dbt-spark): how a stub reads a release, how a
product is written to a release and measured, which types cross a release exactly. The domain's
engine is dbt's own answer: the ``adapter_type`` of its manifest, or of its profile's target.
"""
